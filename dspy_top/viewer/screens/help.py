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
        ("o", "optimizer view: runs, trials, spend"),
        ("l", "show / hide the job output pane (dspy-top run)"),
        ("k", "stop the focused process (or the one under the process list's cursor), after a y/n: "
              "its next LM call ends the run with exit status 1"),
    ]),
    ("Money", [
        ("$ (header)", "billed cost; `+?` or `?` when some calls have no known price (never $0), "
                       "with /min over the last minute, the average and ~/h at the recent pace"),
        ("--budget USD", "the header turns yellow at 80% and red at 100%, with a warning once at each"),
        ("* (models)", "priced with your --price or config file rates instead of the job's"),
        ("SAVED", "what cache hits would have cost (cache hits are billed $0)"),
    ]),
    ("Modules", [
        ("< >", "sort by the previous / next column"),
        ("N C I T $ L E H", "sort by module, calls, in flight, tok/s, cost, p95 latency, errors, cache hits"),
        ("click SAVED", "sort by the cost cache hits saved"),
        ("R", "reverse the sort"),
        ("enter", "expand / collapse the module under the cursor"),
        ("+ -", "expand all / collapse all"),
        ("t", "tree or flat list of module paths"),
    ]),
    ("Optimizer view (o)", [
        ("↑ ↓", "choose a run: its parameters, phase, spend, projection and trials below"),
        ("enter", "on a run or a trial: the history shows only its LM calls (filter scope:eval-N); "
                  "enter again shows all"),
        ("< > R, click", "sort the trials by the previous / next column, reverse; click a header"),
        ("★ × …", "best full-evaluation score; a failed evaluation (never scored 0); still running"),
        ("o escape", "back to the main screen (p and m go there too)"),
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
    GROUPS = KEYS  # what it lists (a replay adds its own keys)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self.text(), id="help-text")

    @classmethod
    def text(cls) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for group, keys in cls.GROUPS:
            table.add_row(Text(group, style="bold underline"), "")
            for key, meaning in keys:
                table.add_row(key, meaning)
            table.add_row("", "")
        table.add_row("", Text("escape, q or ? closes this help", style="dim"))
        return table
