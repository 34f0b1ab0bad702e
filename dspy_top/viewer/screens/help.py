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
    (
        "Everywhere",
        [
            ("q F10", "quit (in `dspy-top run`: ctrl+c once interrupts the job, twice quits)"),
            ("? h F1", "this help"),
            ("space", "pause: freeze the screen; collection goes on"),
            (
                "/ F3 F4",
                "filter: words match module, model, error, and prompts and responses (read from the "
                "processes as you search); module:X model:Y pid:N scope:eval-N err cache",
            ),
            (
                "escape",
                "leave the innermost mode: zoom, filter, focused process, pause, paused scrolling; "
                "then back to the main screen",
            ),
            ("z", "zoom the pane under the focus to the whole screen (z or escape: back)"),
            ("tab shift+tab", "next / previous pane"),
            ("d", "refresh interval: 0.5, 1, 2, 5 seconds (-d sets it at start)"),
            ("p", "process list (enter focuses one process, a shows all, x dismisses an ended one after a y/n)"),
            (
                "A",
                "attach, after a y/n, to the DSPy job under the process list's cursor that was started without "
                "dspy-top (listed dimmed, `unattached`, below the others; as `dspy-top attach PID`)",
            ),
            ("a", "show all processes"),
            ("m", "show / hide the models and processes panes"),
            ("o", "optimizer view: runs, trials, spend"),
            ("l", "show / hide the job output pane (dspy-top run)"),
            (
                "k F9",
                "stop a job, after a y/n: the focused process, the one under the process list's cursor, or the "
                "only one running; its next LM call ends the run with exit status 1",
            ),
        ],
    ),
    (
        "Reading the numbers",
        [
            (
                "$ (header)",
                "billed cost; `+?` or `?` when some calls have no known price (never $0), "
                "with /min over the last minute, the average and ~/h at the recent pace",
            ),
            (
                "tok/s, out/s",
                "prompt and completion tokens per second over the last 5 s; out/s is completion "
                "tokens only (how fast the models generate), also per model (OUT/S)",
            ),
            (
                "charts",
                "tok/s and $/min, one bar per second, finished seconds only, each scaled to its peak "
                "(said beside it) over the span said after them",
            ),
            ("P50 P95", "latency percentiles, within 1% of the exact ones"),
            ("scores", "as dspy.Evaluate reports them, in percent, everywhere"),
            ("--budget USD", "the header turns yellow at 80% and red at 100%, with a warning once at each"),
            ("* (models)", "priced with your --price or config file rates instead of the job's"),
            ("SAVED", "what cache hits would have cost (cache hits are billed $0)"),
        ],
    ),
    (
        "Modules",
        [
            ("< > F6", "sort by the previous / next column (its header is underlined)"),
            ("N C I T $ L E H", "sort by module, calls, in flight, tok/s, cost, p95 latency, errors, cache hits"),
            ("click a header", "sort by that column (SAVED, P50 too)"),
            ("R", "reverse the sort"),
            ("enter", "expand / collapse the module under the cursor"),
            ("+ -", "expand all / collapse all"),
            ("t F5", "tree or flat list of module paths"),
            ("home end", "first / last row (in every table)"),
        ],
    ),
    (
        "Optimizer view (o)",
        [
            ("↑ ↓", "choose a run: its parameters, phase, spend, projection and trials below"),
            (
                "enter",
                "on a run or a trial: the history shows only its LM calls (filter scope:eval-N); enter again shows all",
            ),
            ("< > R, click", "sort the trials by the previous / next column, reverse; click a header"),
            ("★ × …", "best full-evaluation score; a failed evaluation (never scored 0); still running"),
            ("o escape", "back to the main screen (p and m go there too)"),
        ],
    ),
    (
        "History",
        [
            ("enter, click", "inspect the call under the cursor"),
            ("f end", "follow the newest call (f again stops)"),
            ("↑ pgup home", "stop following: the view stays on its calls as new ones arrive (the title counts them)"),
        ],
    ),
    (
        "Inspecting a call",
        [
            ("tab shift+tab", "next / previous section (it opens on the response)"),
            ("i", "the call exactly as dspy.inspect_history() prints it, or back"),
            ("/", "find in the call (enter: next match)"),
            ("← → (p n)", "previous / next call"),
            ("c", "copy the payload as JSON"),
            ("r", "fetch the payload again"),
            ("escape q", "back"),
        ],
    ),
]


class HelpScreen(ModalScreen):
    """The key reference."""

    BINDINGS = [Binding("escape,q,question_mark,h,f1", "app.pop_screen", "Close")]
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
