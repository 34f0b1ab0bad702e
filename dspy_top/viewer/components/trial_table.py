"""The trial table: one row per evaluation of the selected optimizer run, sortable, the best one marked."""

from __future__ import annotations

from rich.text import Text

from dspy_top.model import OptimizerRun, Trial
from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.keyed_table import Column, KeyedTable
from dspy_top.viewer.components.sorting import SortableColumns
from dspy_top.viewer.terminal import inert

WIDE = (
    Column("kind", "KIND", 13, right=False, sort="kind"),
    Column("score", "SCORE", 8, sort="score"),
    Column("examples", "EXAMPLES", 9, sort="examples"),
    Column("calls", "CALLS", 7, sort="calls"),
    Column("tokens", "IN→OUT", 11, sort="tokens"),
    Column("cost", "COST", fmt.COST_WIDTH, sort="cost"),
    Column("duration", "TIME", 7, sort="duration"),
    Column("note", "", 12, right=False),
)
NARROW = (
    Column("kind", "KIND", 11, right=False, sort="kind"),
    Column("score", "SCORE", 7, sort="score"),
    Column("examples", "EXAMPLES", 8, sort="examples"),
    Column("calls", "CALLS", 6, sort="calls"),
    Column("cost", "COST", fmt.COST_WIDTH, sort="cost"),
    Column("duration", "TIME", 6, sort="duration"),
)
SORTS = ("number", "kind", "score", "examples", "calls", "tokens", "cost", "duration")
SORT_NAMES = {
    "number": "trial",
    "kind": "kind",
    "score": "score",
    "examples": "examples",
    "calls": "calls",
    "tokens": "tokens",
    "cost": "cost",
    "duration": "time",
}


def sort_value(trial: Trial, key: str):
    usage = trial.usage
    if key == "score":
        score = trial.score if trial.score is not None else trial.running_score
        return -1.0 if score is None else score  # failed and unscored sort below every score
    return {
        "number": trial.number,
        "kind": trial.kind,
        "examples": trial.scope.done,
        "calls": usage.calls,
        "tokens": usage.tokens,
        "cost": usage.cost_usd,
        "duration": trial.duration,
    }.get(key, trial.number)


def score_text(trial: Trial) -> Text:
    if trial.failed:
        return Text("failed", style="bold red")
    if trial.scope.running:
        running = trial.running_score
        return Text(f"{fmt.score(running)}…" if running is not None else "…", style="italic yellow")
    if trial.score is None:
        return Text("?", style="dim")
    return Text(fmt.score(trial.score), style="bold green" if trial.best else "dim" if trial.full is False else "")


class TrialTable(SortableColumns, KeyedTable):
    """Rows from one `OptimizerRun`'s trials; enter filters the history pane to a trial's calls."""

    ascending_first = frozenset({"kind"})

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sort_key = "number"
        self.descending = True  # the newest trial on top, like the rest of a live view
        self.narrow = False
        self._run: OptimizerRun | None = None
        self._trials: dict[str, Trial] = {}
        self.set_title("Trials")

    def layout_for(self, width: int, narrow: bool) -> None:
        self.narrow = narrow
        fixed = NARROW if narrow else WIDE
        trial = Column("number", "TRIAL", 6, sort="number")
        # What is left goes to the note (wide) or the kind (narrow): text columns, not a number pushed right.
        room = max(0, self.first_width(width, fixed) - trial.width)
        grow = "note" if not narrow else "kind"
        fixed = tuple(Column(c.key, c.label, c.width + room, c.right, c.sort) if c.key == grow else c for c in fixed)
        self.set_columns((trial, *fixed))
        self._label_headers()

    # --- sorting -----------------------------------------------------------------------

    def step_sort(self, step: int) -> None:
        columns = [c.sort for c in self.table_columns if c.sort]
        current = self.sort_key if self.sort_key in columns else "number"
        self.set_sort(columns[(columns.index(current) + step) % len(columns)])

    # --- rendering ---------------------------------------------------------------------

    def trial_at_cursor(self) -> Trial | None:
        return self.trial(self.cursor_key)

    def trial(self, key: str | None) -> Trial | None:
        return self._trials.get(key) if key else None

    def redraw(self) -> None:
        self.show(self._run)

    def show(self, run: OptimizerRun | None) -> None:
        if run is not None and self._run is not None and run.key != self._run.key:
            self.reset_rows()  # another run: its own rows, cursor at the top
        self._run = run
        trials = list(run.trials) if run is not None else []
        trials.sort(key=lambda t: (sort_value(t, self.sort_key), t.number), reverse=self.descending)
        self._trials = {t.id: t for t in trials}
        # The cursor stays on its trial (by key) as new trials arrive above it: enter opens what it shows.
        self.sync([(t.id, self._row_cells(t)) for t in trials])
        if run is None:
            self.set_title("Trials")
        elif not trials:
            self.set_title(
                f"Trials of {run.label}: none"
                + (" (it bootstraps demos, no evaluations)" if run.planned == 0 else " yet")
            )
        else:
            self.set_title(self._title(run, len(trials)))

    def _title(self, run: OptimizerRun, count: int) -> str:
        """`Trials of MIPROv2 (light) · trial 20/20 · 21 of 21 evaluations planned (...)`: the trial number
        the header shows, and the count of evaluations beside it (MIPROv2 numbers its baseline 0)."""
        evaluations = f"{count} evaluation{'s' if count != 1 else ''}"
        how = ""
        if run.planned and run.class_name != "Evaluate":
            evaluations = f"{count} of {run.planned} evaluations planned"
            if run.planned_how:
                how = f" · {run.planned_how}"  # last: where the pane is narrow, it is the part left out
        order = f"by {SORT_NAMES.get(self.sort_key, self.sort_key)} {'▼' if self.descending else '▲'}"
        return f"Trials of {run.label} · trial {run.trial_progress} · {evaluations} · {order} · enter: its calls{how}"

    def _row_cells(self, trial: Trial) -> list:
        usage = trial.usage
        marker = "★" if trial.best else " "
        note = Text(no_wrap=True, overflow="ellipsis")
        if usage.calls and usage.cache_hits == usage.calls:
            note.append("cached ", style="cyan")  # a repeat MIPROv2 re-ran with the cache on: $0
        if usage.in_flight and not trial.scope.running:
            note.append(f"+{usage.in_flight} late ", style="yellow")
        if trial.failed and trial.scope.error:
            note.append(inert(trial.scope.error), style="red")
        kind = Text(inert(trial.kind), style="dim" if trial.full is False else "")
        cells = {
            "number": Text(f"{marker}{trial.number}", style="bold green" if trial.best else ""),
            "kind": kind,
            "score": score_text(trial),
            "examples": f"{trial.scope.done}/{trial.scope.total}" if trial.scope.total else str(trial.scope.done),
            "calls": fmt.count(usage.calls),
            "tokens": f"{fmt.tokens(usage.prompt_tokens)}→{fmt.tokens(usage.completion_tokens)}",
            "cost": Text(fmt.cost(usage), style="yellow" if usage.unpriced_calls else ""),
            "duration": fmt.seconds(trial.duration),
            "note": note,
        }
        return [cells[c.key] for c in self.table_columns]
