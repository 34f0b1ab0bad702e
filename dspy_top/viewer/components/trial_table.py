"""The trial table: one row per evaluation of the selected optimizer run, sortable, the best one marked."""

from __future__ import annotations

from rich.text import Text

from dspy_top.model import OptimizerRun, Trial
from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.sorting import SortableColumns
from dspy_top.viewer.components.keyed_table import Column, KeyedTable
from dspy_top.viewer.terminal import inert

WIDE = (
    Column("kind", " KIND", 14, right=False, sort="kind"),
    Column("score", "SCORE", 9, sort="score"),
    Column("examples", "EXAMPLES", 10, sort="examples"),
    Column("calls", "CALLS", 8, sort="calls"),
    Column("tokens", "IN→OUT", 14, sort="tokens"),
    Column("cost", "COST", 10, sort="cost"),
    Column("duration", "TIME", 8, sort="duration"),
    Column("note", " ", 12, right=False),
)
NARROW = (
    Column("kind", " KIND", 12, right=False, sort="kind"),
    Column("score", "SCORE", 8, sort="score"),
    Column("examples", "EXAMPLES", 9, sort="examples"),
    Column("calls", "CALLS", 7, sort="calls"),
    Column("cost", "COST", 10, sort="cost"),
    Column("duration", "TIME", 7, sort="duration"),
)
SORTS = ("number", "kind", "score", "examples", "calls", "tokens", "cost", "duration")


def sort_value(trial: Trial, key: str):
    usage = trial.usage
    if key == "score":
        score = trial.score if trial.score is not None else trial.running_score
        return -1.0 if score is None else score  # failed and unscored sort below every score
    return {
        "number": trial.number, "kind": trial.kind, "examples": trial.scope.done, "calls": usage.calls,
        "tokens": usage.tokens, "cost": usage.cost_usd, "duration": trial.duration,
    }.get(key, trial.number)


def score_text(trial: Trial) -> Text:
    if trial.failed:
        return Text("failed", style="bold red")
    if trial.scope.running:
        running = trial.running_score
        return Text(f"{running:.1f}…" if running is not None else "…", style="italic yellow")
    if trial.score is None:
        return Text("?", style="dim")
    return Text(f"{trial.score:.1f}", style="bold green" if trial.best else "dim" if trial.full is False else "")


class TrialTable(SortableColumns, KeyedTable):
    """Rows from one `OptimizerRun`'s trials; enter filters the history pane to a trial's calls."""

    ascending_first = frozenset({"kind"})

    def __init__(self, **kwargs) -> None:
        super().__init__(cell_padding=0, **kwargs)
        self.sort_key = "number"
        self.descending = True  # the newest trial on top, like the rest of a live view
        self.narrow = False
        self._run: OptimizerRun | None = None
        self._trials: dict[str, Trial] = {}
        self.set_title("Trials")

    def layout_for(self, width: int, narrow: bool) -> None:
        self.narrow = narrow
        fixed = NARROW if narrow else WIDE
        self.set_columns((Column("number", "TRIAL", 7, sort="number"), *fixed))
        self._label_headers()

    # --- sorting -----------------------------------------------------------------------

    def step_sort(self, step: int) -> None:
        columns = [c.sort for c in self.table_columns if c.sort]
        current = self.sort_key if self.sort_key in columns else "number"
        self.set_sort(columns[(columns.index(current) + step) % len(columns)])

    # --- rendering ---------------------------------------------------------------------

    def trial_at_cursor(self) -> Trial | None:
        key = self.cursor_key
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
        at_top = self.cursor_row <= 0
        self.sync([(t.id, self._row_cells(t)) for t in trials])
        if at_top and self.row_count and self.cursor_row != 0:
            self.move_cursor(row=0)  # a cursor on the first row stays there as new trials arrive above it
        if run is None:
            self.set_title("Trials")
        elif not trials:
            self.set_title(f"Trials of {run.label}: none" + (" (it bootstraps demos, no evaluations)"
                                                               if run.planned == 0 else " yet"))
        else:
            planned = ""
            if run.planned and run.class_name != "Evaluate":
                planned = f" of {run.planned} planned: {run.planned_how}" if run.planned_how else f" of {run.planned}"
            self.set_title(f"Trials of {run.label} ({len(trials)}{planned}) · enter: the trial's calls")

    def _row_cells(self, trial: Trial) -> list:
        usage = trial.usage
        marker = "★" if trial.best else " "
        note = Text(no_wrap=True, overflow="ellipsis")
        if usage.calls and usage.cache_hits == usage.calls:
            note.append(" cached", style="cyan")  # a repeat MIPROv2 re-ran with the cache on: $0
        if usage.in_flight and not trial.scope.running:
            note.append(f" +{usage.in_flight} late", style="yellow")
        if trial.failed and trial.scope.error:
            note.append(f" {inert(trial.scope.error)}", style="red")
        kind = Text(f" {inert(trial.kind)}", style="dim" if trial.full is False else "")
        cells = {
            "number": Text(f"{marker}{trial.number}", style="bold green" if trial.best else ""),
            "kind": kind, "score": score_text(trial),
            "examples": f"{trial.scope.done}/{trial.scope.total}" if trial.scope.total else str(trial.scope.done),
            "calls": fmt.count(usage.calls),
            "tokens": f"{fmt.tokens(usage.prompt_tokens)}→{fmt.tokens(usage.completion_tokens)}",
            "cost": Text(fmt.cost(usage), style="yellow" if usage.unpriced_calls else ""),
            "duration": fmt.seconds(trial.duration), "note": note,
        }
        return [cells[c.key] for c in self.table_columns]
