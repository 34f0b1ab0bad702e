"""Enter on a history row: the call in full, fetched from the process when the viewer lacks it."""

from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from dspy_top.model import CallSummary
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.viewer.components.call_view import body, facts
from dspy_top.viewer.terminal import inert


class InspectScreen(Screen):
    """One call; ←/→ step through the calls the history pane showed."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
        Binding("left,p", "step(-1)", "Previous call"),
        Binding("right,n", "step(1)", "Next call"),
        Binding("c", "copy", "Copy JSON"),
        Binding("r", "refetch", "Fetch again", show=False),
        Binding("space", "app.pause", "Pause"),
        Binding("question_mark,h", "app.help", "Help", key_display="?"),
    ]

    def __init__(self, calls: list[CallSummary], index: int, chains: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.calls = calls
        self.index = index
        self.chains = chains
        self.answer: PayloadAnswer | None = None

    @property
    def call(self) -> CallSummary:
        return self.calls[self.index]

    def compose(self) -> ComposeResult:
        yield Static(id="inspect-facts")
        with VerticalScroll(id="inspect-body"):
            yield Static(id="inspect-text")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    def _load(self) -> None:
        self.answer = None
        call = self.call
        self.query_one("#inspect-facts", Static).update(facts(call, self.chains.get(call.path, ())))
        self.query_one("#inspect-text", Static).update(Text(f"fetching call {call.id} from pid {call.pid}…", style="italic"))
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
            target.update(Text(f"The payload of this call is gone: {inert(answer.reason)}", style="bold yellow"))
            return
        self.set_class(False, "-gone")
        target.update(Text("\n").join(body(answer.payload)))
        self.query_one("#inspect-body", VerticalScroll).scroll_home(animate=False)

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
