"""The one line that says what an attach found: `dspy-top attach` prints it and the viewer's `A` shows it.

A leaf: the command and the viewer both import it (the command imports the viewer for `--watch`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dspy_top.attach.session import Outcome


def describe_attached(outcome: Outcome) -> str:
    """`attached to pid 41822 (job.py) in 0.4s; 412 calls before attach, from DSPy's history; …`: one line,
    as `dspy-top attach` and the viewer's `A` say it."""
    result = outcome.result
    parts = [f"attached to pid {outcome.pid} ({outcome.command or '?'}) in {outcome.timings['total']:.1f}s"]
    before = result.get("before_attach")
    if isinstance(before, dict):
        parts.append(describe_before_attach(before))
    for run in result.get("joined") or ():
        parts.append(describe_joined(run))
    return "; ".join(parts)


def describe_before_attach(before: dict) -> str:
    """`412 calls before attach, from DSPy's history`, with what may be missing."""
    from dspy_top.model.before_attach import BeforeAttach

    return BeforeAttach.from_wire(before).describe()


def describe_joined(run: dict) -> str:
    name = run.get("class") or (f"Evaluate ({run['program']})" if run.get("program") else "Evaluate")
    joined = run.get("joined") or {}
    text = f"joined {name} under way"
    if joined.get("trial") is not None:
        text += f" (at trial {joined['trial']})"
    missed = joined.get("missed")
    if run.get("kind") == "compile":
        text += (
            ", earlier evaluations not seen"
            if missed is None
            else f", {missed} earlier evaluation{'s' if missed != 1 else ''} not seen"
        )
    return text
