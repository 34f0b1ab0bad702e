"""Waiting for a condition in a test: poll it with a generous deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], what: str = "the condition", timeout: float = 20.0, every: float = 0.01
) -> T:
    """Poll `condition` (every `every` seconds: more for one that asks a server) until it is true; its value.
    Fails the test, naming `what`, at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} ({timeout:g}s)")


async def pilot_wait(pilot, condition: Callable[[], T], what: str = "the condition", timeout: float = 20.0) -> T:
    """`wait_until` in a Pilot script: the app runs (pilot.pause) between looks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what} ({timeout:g}s)")
