"""Enter on a history row: the call in full, fetched from the process when the viewer lacks it.

It opens on the response (DSPy's system message is long); tab and shift+tab jump between the
sections, `i` shows the call exactly as `dspy.inspect_history()` prints it, `/` finds text in
it (enter again: the next match), ←/→ step through the calls the history pane showed.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from dspy_top.model import CallSummary
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.call_view import body, facts, inspect_history_text, is_section
from dspy_top.viewer.terminal import inert

MATCH_STYLE = "black on yellow"
CURRENT_MATCH_STYLE = "black on bright_green"


class InspectScreen(Screen):
    """One call; ←/→ step through the calls the history pane showed."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
        Binding("question_mark,h,f1", "app.help", "Help", key_display="?"),
        Binding("left,p", "step(-1)", "Previous call"),
        Binding("right,n", "step(1)", "Next call"),
        Binding("tab", "section(1)", "Next section", key_display="tab"),
        Binding("shift+tab", "section(-1)", "Previous section", show=False),
        Binding("i", "exact", "inspect_history"),
        Binding("slash", "find", "Find"),
        Binding("c", "copy", "Copy JSON"),
        Binding("r", "refetch", "Fetch again", show=False),
        Binding("space", "app.pause", "Pause", show=False),
    ]

    def __init__(self, calls: list[CallSummary], index: int, chains: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.calls = calls
        self.index = index
        self.chains = chains
        self.answer: PayloadAnswer | None = None
        self.exact = False  # showing the `dspy.inspect_history` text
        self._blocks: list[Text] = []
        self._matches: list[tuple[int, int]] = []  # (block, offset) of each match of the find text
        self._match = -1

    @property
    def call(self) -> CallSummary:
        return self.calls[self.index]

    def compose(self) -> ComposeResult:
        yield Static(id="inspect-facts")
        with VerticalScroll(id="inspect-body"):
            yield Static(id="inspect-text")
        yield Input(placeholder="find in this call (enter: next match, escape: done)", id="inspect-find")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    def _load(self) -> None:
        self.answer = None
        self._blocks = []
        self._matches, self._match = [], -1
        call = self.call
        self.query_one("#inspect-facts", Static).update(facts(call, self.chains.get(call.path, ())))
        self.query_one("#inspect-text", Static).update(
            Text(f"fetching call {call.id} from pid {call.pid}…", style="italic")
        )
        self.set_class(False, "-gone")
        self.app.fetch_payload(call)  # type: ignore[attr-defined]

    def show_answer(self, answer: PayloadAnswer) -> None:
        """The app forwards every payload answer; keep the one for the call on screen."""
        if (answer.process, answer.call_id) != self.call.key:
            return
        self.answer = answer
        target = self.query_one("#inspect-text", Static)
        if answer.payload is None:
            self.set_class(True, "-gone")
            self._blocks = []
            target.update(Text(f"The payload of this call is gone: {inert(answer.reason)}", style="bold yellow"))
            return
        self.set_class(False, "-gone")
        self._render_body()
        self.query_one("#inspect-body", VerticalScroll).scroll_home(animate=False)

    def _render_body(self) -> None:
        payload = self.answer.payload if self.answer is not None else None
        if payload is None:
            return
        if self.exact:
            self._blocks = [inspect_history_text(payload, fmt.clock(self.call.start, millis=False))]
        else:
            self._blocks = body(payload)
        self._draw()

    def _draw(self) -> None:
        blocks = [block.copy() for block in self._blocks]
        needle = self.query_one("#inspect-find", Input).value.strip().lower()
        for number, (index, offset) in enumerate(self._matches):
            style = CURRENT_MATCH_STYLE if number == self._match else MATCH_STYLE
            blocks[index].stylize(style, offset, offset + len(needle))
        self.query_one("#inspect-text", Static).update(Text("\n").join(blocks))

    # --- moving about ---------------------------------------------------------------------

    def _line_of(self, block: int, offset: int = 0) -> int:
        """The rendered line where `offset` of block `block` is, at the body's width."""
        width = max(10, self.query_one("#inspect-text", Static).content_region.width or 80)
        console = self.app.console
        lines = sum(len(b.wrap(console, width)) for b in self._blocks[:block])
        if offset:
            lines += len(self._blocks[block][:offset].wrap(console, width)) - 1
        return lines

    def action_section(self, step: int) -> None:
        """tab / shift+tab: the next (previous) section's heading at the top."""
        if not self._blocks:
            return
        scroll = self.query_one("#inspect-body", VerticalScroll)
        heads = [self._line_of(i) for i, block in enumerate(self._blocks) if is_section(block)]
        if not heads:
            return
        top = round(scroll.scroll_y)
        if step > 0:
            target = next((line for line in heads if line > top), heads[0])
        else:
            target = next((line for line in reversed(heads) if line < top), heads[-1])
        scroll.scroll_to(y=target, animate=False)

    def action_exact(self) -> None:
        """`i`: the call as `dspy.inspect_history()` prints it, or back to the response first."""
        self.exact = not self.exact
        self._matches, self._match = [], -1
        self._render_body()
        self.query_one("#inspect-body", VerticalScroll).scroll_home(animate=False)

    def action_find(self) -> None:
        finder = self.query_one("#inspect-find", Input)
        self.add_class("-finding")
        finder.focus()

    @on(Input.Submitted, "#inspect-find")
    def find_next(self, event: Input.Submitted) -> None:
        """Enter in the find bar: the next match (the first after a new text), highlighted and in view."""
        needle = event.value.strip().lower()
        if not needle or not self._blocks:
            self._matches, self._match = [], -1
            self._draw()
            return
        matches = []
        for index, block in enumerate(self._blocks):
            plain, start = block.plain.lower(), 0
            while (found := plain.find(needle, start)) >= 0:
                matches.append((index, found))
                start = found + len(needle)
        if matches != self._matches:
            self._matches, self._match = matches, -1
        if not matches:
            self._draw()
            self.notify(f"{event.value.strip()!r} is not in this call", severity="warning", timeout=3)
            return
        self._match = (self._match + 1) % len(matches)
        self._draw()
        block, offset = matches[self._match]
        scroll = self.query_one("#inspect-body", VerticalScroll)
        scroll.scroll_to(y=max(0, self._line_of(block, offset) - 2), animate=False)
        self.notify(f"match {self._match + 1} of {len(matches)}", timeout=2)

    def action_back(self) -> None:
        """escape: out of the find bar first, then back to the history."""
        if self.has_class("-finding"):
            self.remove_class("-finding")
            self.query_one("#inspect-find", Input).value = ""
            self._matches, self._match = [], -1
            self._draw()
            self.query_one("#inspect-body", VerticalScroll).focus()
            return
        self.app.pop_screen()

    def action_step(self, step: int) -> None:
        index = self.index + step
        if 0 <= index < len(self.calls):
            self.index = index
            self._load()

    def action_refetch(self) -> None:
        self.app.forget_payload(self.call)  # type: ignore[attr-defined]
        self._load()

    def action_copy(self) -> None:
        if self.answer is not None and self.answer.payload is not None:
            self.app.copy_to_clipboard(json.dumps(self.answer.payload, default=str, indent=2))
            self.notify("payload copied as JSON")
