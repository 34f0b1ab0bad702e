"""`?` in a replay: the replay's keys first, then the live viewer's (space plays and pauses here)."""

from __future__ import annotations

from dspy_top.sources.replay_timeline import GOTO_HELP
from dspy_top.viewer.screens.help import KEYS, HelpScreen

REPLAY_KEYS = (
    "Replay",
    [
        ("space", "play / pause the replay (the screen follows it; at the end, space plays from the start)"),
        ("] [", "faster / slower: 1×, 2×, 5×, 10×, 20×, 50×, 100× the recorded pace"),
        ("e", "jump to the end (a recording still being written: its newest, followed as it grows)"),
        (". ,", "step to the next / back to the previous message or LM call (pauses)"),
        ("g", f"go to: {GOTO_HELP}"),
        ("0 … 9", "go to 0%, 10%, … 90% of the recording"),
        ("enter (history)", "the call in full: its payload is read from the recording"),
        ("k", "not in a replay: a recording cannot stop anything"),
    ],
)


class ReplayHelpScreen(HelpScreen):
    """The key reference of a replay."""

    GROUPS = [
        REPLAY_KEYS,
        *[(group, [(key, meaning) for key, meaning in keys if key != "space"]) for group, keys in KEYS],
    ]
