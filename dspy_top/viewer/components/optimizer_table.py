"""The optimizer list: every compile and plain evaluation, nested compiles as a tree under their parent."""

from __future__ import annotations

from rich.text import Text

from dspy_top.model import OptimizerRun, Snapshot
from dspy_top.model.optimizers import RunGroup, rows_of
from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.keyed_table import Column, KeyedTable
from dspy_top.viewer.terminal import inert

WIDE = (
    Column("phase", "PHASE", 23, right=False),
    Column("trial", "TRIAL", 7),
    Column("best", "BEST", 6),
    Column("elapsed", "ELAPSED", 8),
    Column("calls", "CALLS", 7),
    Column("cost", "COST", fmt.COST_WIDTH),
    Column("finish", "TO FINISH", 17, right=False),
)
NARROW = (
    Column("phase", "PHASE", 19, right=False),
    Column("trial", "TRIAL", 7),
    Column("best", "BEST", 6),
    Column("cost", "COST", fmt.COST_WIDTH),
)


def finish_text(run: OptimizerRun) -> Text:
    if run.state == "done":
        return Text("-", style="dim")
    if run.state == "failed":
        return Text("failed", style="bold red")
    if run.cost_to_finish is None and run.time_to_finish is None:
        return Text("?", style="dim")
    cost = fmt.dollars(run.cost_to_finish) if run.cost_to_finish is not None else "?"
    clock = fmt.short_uptime(run.time_to_finish) if run.time_to_finish is not None else "?"
    return Text(f"~{cost} · {clock}")


class OptimizerTable(KeyedTable):
    """One row per optimizer run (or folded group of nested bootstrapping compiles)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.narrow = False
        self._rows: dict[str, OptimizerRun | RunGroup] = {}
        self.set_title("Optimizers")

    def layout_for(self, width: int, narrow: bool) -> None:
        self.narrow = narrow
        fixed = NARROW if narrow else WIDE
        self.set_columns((Column("run", "OPTIMIZER", self.first_width(width, fixed, least=16), right=False), *fixed))

    def entry(self, key: str | None) -> OptimizerRun | RunGroup | None:
        return self._rows.get(key) if key else None

    def selected(self) -> OptimizerRun | RunGroup | None:
        key = self.cursor_key
        if key is None and self._rows:
            return next(iter(self._rows.values()))
        return self._rows.get(key) if key else None

    def show(self, snapshot: Snapshot) -> None:
        entries = rows_of(snapshot.optimizers)
        self._rows = {entry.key: entry for entry in entries}
        multi = len({run.pid for run in snapshot.optimizers}) > 1
        self.sync([(entry.key, self._row_cells(entry, multi)) for entry in entries])
        running = sum(1 for run in snapshot.optimizers if run.state == "running" and run.depth == 0)
        if not entries:
            self.set_title("Optimizers (none yet: optimizer compiles and dspy.Evaluate runs appear here)")
        else:
            roots = sum(1 for run in snapshot.optimizers if run.depth == 0)
            self.set_title(
                f"Optimizers ({roots} run{'s' if roots != 1 else ''}, {running} running · "
                "enter: its calls in the history)"
            )

    def _row_cells(self, entry: OptimizerRun | RunGroup, multi: bool) -> list:
        if isinstance(entry, RunGroup):
            usage, depth = entry.usage, entry.depth
            name = Text("  " * (depth - 1) + "└ ", style="dim", no_wrap=True, overflow="ellipsis")
            name.append(f"{inert(entry.class_name)} ×{len(entry.runs)}")
            cells = {
                "run": name,
                "phase": Text("bootstrapped demos", style="dim"),
                "trial": "-",
                "best": "-",
                "elapsed": fmt.short_uptime(sum(run.elapsed for run in entry.runs)),
                "calls": fmt.count(usage.calls),
                "cost": fmt.cost(usage),
                "finish": Text(" -", style="dim"),
            }
            return [cells[c.key] for c in self.table_columns]
        run = entry
        name = Text(no_wrap=True, overflow="ellipsis")
        if run.depth:
            name.append("  " * (run.depth - 1) + "└ ", style="dim")
        name.append(inert(run.label), style="bold" if run.depth == 0 else "")
        if multi and run.depth == 0:
            name.append(f"  pid {run.pid}", style="dim")
        style = {"running": "green", "failed": "bold red"}.get(run.state, "dim")
        phase = Text(inert(run.phase), style=style)
        best = fmt.score(run.best_score)
        cells = {
            "run": name,
            "phase": phase,
            "trial": run.trial_progress,
            "best": Text(best, style="bold"),
            "elapsed": fmt.short_uptime(run.elapsed),
            "calls": fmt.count(run.usage.calls),
            "cost": Text(fmt.cost(run.usage), style="yellow" if run.usage.unpriced_calls else ""),
            "finish": finish_text(run),
        }
        return [cells[c.key] for c in self.table_columns]
