"""Run-before steps for SVG snapshots: keys pressed once the screen is up, the picture taken once it is steady.

pytest-textual-snapshot presses its `press` keys after one `pilot.pause()`, which waits until the
process's CPU time stops advancing as fast as the wall clock. On a loaded machine (CI, two cores,
other jobs) a starved process looks idle that way: the pause returned before the main screen was
mounted (it composes while the app starts), the key was dropped, and the snapshot showed another
screen. Here every step waits for a condition instead: the live screen mounted with its first
snapshot, then after the keys, the screen they lead to, and the same picture twice in a row.

The looks are the picture the snapshot takes (`export_screenshot`). Rendering only the screen in
front (its compositor's strips, as tests/helpers/screen.py does) draws a question's translucent
background outside Textual's render pass, where the screen beneath is not known: it was drawn
blank, that drawing was kept, and the snapshot of the stop question showed it over nothing (a
full run's failure of test_stop_question_over_the_screen).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

DEADLINE = 30.0  # seconds: generous, for a loaded machine; a steady screen comes in well under one


async def steady(pilot, ready: Callable[[object], bool] | None = None) -> None:
    """Wait until the live screen shows a snapshot, `ready(app)` holds, and two looks at the screen agree."""
    app = pilot.app
    deadline = time.monotonic() + DEADLINE
    seen = None
    while True:
        view = app.view
        if view is not None and view.snapshot is not None and (ready is None or ready(app)):
            text = _picture(app)
            if text == seen:
                return
            seen = text
        else:
            seen = None
        assert time.monotonic() < deadline, "the screen never became steady"
        await pilot.pause(0.05)


def _picture(app) -> str:
    """What a snapshot of the app would hold now, text and styles (its SVG's ids vary from call to call)."""
    return re.sub(r"terminal-\d+", "terminal", app.export_screenshot())


def keys(*pressed: str, ready: Callable[[object], bool] | None = None):
    """A `run_before` for `snap_compare`: once the screen is steady, press `pressed`, then wait for `ready`."""

    async def run_before(pilot) -> None:
        await steady(pilot)
        if pressed:
            await pilot.press(*pressed)
        await steady(pilot, ready)

    return run_before
