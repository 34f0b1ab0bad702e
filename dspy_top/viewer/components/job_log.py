"""The log pane of `dspy-top run`: the tail of the job's output, then how it exited."""

from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Log

from dspy_top.viewer.job import JobTranscript
from dspy_top.viewer.terminal import inert

MAX_LINES = 2000  # scrollback kept in the pane (the whole output stays in the job's log file)


class JobLog(Log):
    """Appends what the job wrote since the last refresh; bounded like a terminal's scrollback."""

    def __init__(self, **kwargs) -> None:
        # Bounded here, not with Log(max_lines=...): Log sets its virtual size before pruning,
        # so a big write scrolls past the end and shows a blank pane.
        super().__init__(auto_scroll=True, **kwargs)
        self.border_title = "Job output"
        self._read = 0  # how far into the transcript this pane is
        self._ended = False

    def sync(self, transcript: JobTranscript) -> None:
        """Show what the transcript gained since this pane last looked, then the exit status once."""
        if self._read != transcript.end:
            text, afresh = transcript.since(self._read)
            if afresh:
                self.clear()
            self.add_output(text)
            self._read = transcript.end
        if transcript.exit_code is not None and not self._ended:
            self._ended = True
            self.job_ended(transcript.exit_code)

    def render_line(self, y: int) -> Strip:
        """A line longer than the pane ends in `…` at its edge: cut silently, `Trial 8 / 20` would read
        `Trial 8 / 2` (the log file holds every line whole)."""
        strip = super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width  # what shows: the scrollbar's gutter is not drawn over
        index = scroll_y + y
        lines = self.lines
        if width > 1 and index < len(lines) and cell_len(lines[index]) > scroll_x + width:
            strip = Strip.join([strip.crop(0, width - 1), Strip([Segment("…", self.rich_style)], 1)])
        return strip

    def add_output(self, text: str) -> None:
        if not text:
            return
        text = inert(text, multiline=True)  # the job's own output: no escape sequence reaches the terminal
        if self.line_count + text.count("\n") <= MAX_LINES:
            self.write(text)
            return
        tail = ("\n".join(self.lines) + text).split("\n")[-(MAX_LINES // 2) :]
        self.clear()
        self.write("\n".join(tail))

    def job_ended(self, returncode: int) -> None:
        self.write_line("")
        self.write_line(f"── the job exited with code {returncode} ──")
        self.border_title = f"Job output (exited {returncode})"
