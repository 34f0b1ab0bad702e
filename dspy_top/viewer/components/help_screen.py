"""`?`/`h`: every key of the viewer, grouped; any key closes it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Everywhere", [
        ("q", "quit (in `dspy-top run`: ctrl+c once interrupts the job, twice quits)"),
        ("space", "pause: freeze the screen; collection goes on"),
        ("? h", "this help"),
        ("/", "filter: words match module, model, error; module:X model:Y pid:N err cache"),
        ("escape", "clear the filter (in the filter bar) / back"),
        ("tab shift+tab", "next / previous pane"),
        ("p", "process list (enter focuses one process, a shows all, x dismisses an ended one)"),
        ("a", "show all processes"),
        ("m", "show / hide the models and processes panes"),
        ("l", "show / hide the job output pane (dspy-top run)"),
    ]),
    ("Modules", [
        ("< >", "sort by the previous / next column"),
        ("N C I T $ L E H", "sort by module, calls, in flight, tok/s, cost, p95 latency, errors, cache hits"),
        ("R", "reverse the sort"),
        ("enter", "expand / collapse the module under the cursor"),
        ("+ -", "expand all / collapse all"),
        ("t", "tree or flat list of module paths"),
    ]),
    ("History", [
        ("enter", "inspect the call: messages, response, usage, cost, latency, retries"),
        ("f", "follow the newest call on / off (end follows, up/home stop)"),
    ]),
    ("Inspecting a call", [
        ("← → (p n)", "previous / next call"),
        ("c", "copy the payload as JSON"),
        ("r", "fetch the payload again"),
        ("escape q", "back"),
    ]),
]


class HelpScreen(ModalScreen):
    """The key reference."""

    BINDINGS = [Binding("escape,q,question_mark,h", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self.text(), id="help-text")

    @staticmethod
    def text() -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for group, keys in KEYS:
            table.add_row(Text(group, style="bold underline"), "")
            for key, meaning in keys:
                table.add_row(key, meaning)
            table.add_row("", "")
        table.add_row("", Text("escape, q or ? closes this help", style="dim"))
        return table
