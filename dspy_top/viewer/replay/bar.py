"""The replay bar, under the header: that this is a replay and of what, where in it the screen is, how fast it moves.

`PLAYING 10×  12:05 / 1:02:03  ━━━━━━──────── 19%  14:05:33  complete recording of optimize.py (pid 4242, …)`
(the optimizer's trial at that moment is in the header's progress line, as in the live viewer)
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from dspy_top.sources.replay import RecordingSource
from dspy_top.sources.replay_clock import Playback
from dspy_top.sources.replay_timeline import clock
from dspy_top.viewer.terminal import inert


class ReplayBar(Static):
    """Re-drawn from the replay's clock a few times a second (`show`); its state is a class."""

    def __init__(self, title: str, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.what = title  # what is replayed (`replay_title`)
        self._drawn = ""

    def show(self, playback: Playback, seeking: bool, title: str | None = None) -> None:
        if title is not None:
            self.what = title
        state = (
            "-seeking"
            if seeking
            else "-following"
            if playback.following
            else "-playing"
            if playback.playing
            else "-end"
            if playback.at_end
            else "-paused"
        )
        for name in ("-seeking", "-following", "-playing", "-end", "-paused"):
            self.set_class(name == state, name)
        text = self.render_text(playback, seeking, self.what, max(40, self.size.width or 80))
        if text.plain != self._drawn:
            self._drawn = text.plain
            self.update(text, layout=False)  # always one line

    @staticmethod
    def render_text(playback: Playback, seeking: bool, title: str, width: int) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if seeking:
            text.append(" SEEKING ", style="bold reverse yellow")
        elif playback.following:
            text.append(" LIVE ", style="bold reverse cyan")
        elif playback.playing:
            text.append(f" PLAYING {_speed(playback.speed)} ", style="bold reverse green")
        elif playback.at_end:
            text.append(" END ", style="bold reverse")
        else:
            text.append(" PAUSED ", style="bold reverse yellow")
            text.append(f" {_speed(playback.speed)}", style="dim")
        elapsed = clock(playback.position - playback.start)
        text.append(f"  {elapsed} / {clock(playback.end - playback.start)}", style="bold")
        span = 24 if width >= 140 else 16 if width >= 100 else 10
        filled = round(playback.fraction * span)
        text.append("  ")
        text.append("━" * filled, style="bold magenta")
        text.append("─" * (span - filled), style="dim")
        text.append(f" {100 * playback.fraction:.0f}%")
        if width >= 140:
            text.append(f"  {time.strftime('%H:%M:%S', time.localtime(playback.position))}", style="dim")
        text.append(f"  {inert(title)}", style="italic")
        text.truncate(width, overflow="ellipsis")  # a title cut at the edge says so (not `2027-01-15` for a time)
        return text


def _speed(speed: float) -> str:
    return f"{speed:g}×"


def replay_title(source: RecordingSource) -> str:
    """What is replayed: `complete recording of optimize.py --trials 3 (pid 4242, 2026-03-04 05:06)`."""
    tracks = source.tracks
    argv = tracks[0].recording.hello.get("argv")
    command = " ".join(str(word) for word in argv) if isinstance(argv, list) and argv else "python"
    states = {track.state for track in tracks}
    state = next((name for name in ("live", "cut off", "damaged") if name in states), "complete")
    who = f"pid {tracks[0].pid}" if len(tracks) == 1 else f"{len(tracks)} processes"
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(source.timeline.start))
    return f"{state} recording of {command} ({who}, {started})"
