"""What the screen (or batch mode) renders: one frozen picture of the fleet at one instant."""

from __future__ import annotations

from dataclasses import dataclass

from dspy_top.model.before_attach import BeforeAttach
from dspy_top.model.budget import JobBudget, ViewerBudget
from dspy_top.model.burn import Burn
from dspy_top.model.calls import CallSummary
from dspy_top.model.counters import Counters
from dspy_top.model.hosts import HostRow
from dspy_top.model.optimizers import OptimizerRun
from dspy_top.model.scopes import ScopeState
from dspy_top.model.tree import ModuleNode


@dataclass(frozen=True)
class ProcessRow:
    """One attached (or ended, or failed) process in the process list."""

    key: str
    pid: int
    command: str
    state: str
    status: str
    started_at: float | None
    uptime: float
    totals: Counters
    tokens_per_sec: float
    mechanism: str
    dropped: int
    final_numbers: str | None = None  # "received" (it sent its exit), "not received" (lost first), None while live
    before_attach: BeforeAttach | None = None  # attached with `dspy-top attach`: counted from DSPy's history
    argv: tuple[str, ...] = ()  # the process's sys.argv (`command` is it joined)
    host: str | None = None  # the machine it runs on (`--host`); None: this one


@dataclass(frozen=True)
class ModelRow:
    """Usage of one LM model string across the processes in view."""

    model: str
    counters: Counters
    price_override: bool = False  # priced with the user's `--price` (or config file) rates
    tokens_per_sec: float = 0.0  # prompt and completion tokens, over the recent window
    output_tokens_per_sec: float = 0.0  # completion tokens only: how fast the model generates


@dataclass(frozen=True)
class Snapshot:
    """The fleet (or the focused process) at `at`."""

    at: float
    focus: str | None
    processes: tuple[ProcessRow, ...]  # every known process, whatever the focus
    totals: Counters
    uptime: float
    tokens_per_sec: float
    tokens_per_sec_avg: float
    cost_per_min: float
    token_series: tuple[float, ...]  # tokens/sec per bucket, oldest first
    cost_series: tuple[float, ...]  # dollars per bucket
    modules: tuple[ModuleNode, ...]
    models: tuple[ModelRow, ...]
    scopes: tuple[ScopeState, ...]
    calls: tuple[CallSummary, ...]  # newest history rows passing the filter, oldest first
    history_size: int  # calls held in the viewer
    history_added: int  # calls ever added (changes whenever history does)
    dropped: int  # events the processes dropped plus events dropped for this viewer
    internal_errors: int
    tool_calls: int
    output_tokens_per_sec: float = 0.0  # completion tokens per second over the recent window
    series_bucket: float = 1.0  # seconds each sparkline bucket covers
    burn: Burn | None = None  # cost/min and tok/s recent and overall, the running evaluation's projection
    budget: ViewerBudget | None = None  # the viewer's `--budget`, against every process
    job_budgets: tuple[JobBudget, ...] = ()  # the budget guards of the processes that have one
    optimizers: tuple[OptimizerRun, ...] = ()  # compiles and plain evaluations, parents before nested runs
    hosts: tuple[HostRow, ...] = ()  # the other machines watched (`--host`), in the order given

    @property
    def live(self) -> int:
        return sum(1 for p in self.processes if p.state in ("running", "connecting"))

    @property
    def in_view(self) -> tuple[ProcessRow, ...]:
        return tuple(p for p in self.processes if self.focus is None or p.key == self.focus)

    @property
    def problems(self) -> tuple[ProcessRow, ...]:
        return tuple(p for p in self.processes if p.state in ("failed", "lost"))

    @property
    def host_problems(self) -> tuple[HostRow, ...]:
        """The other machines not connected now (unreachable, or their connection broke)."""
        return tuple(h for h in self.hosts if h.problem)

    @property
    def not_final(self) -> tuple[ProcessRow, ...]:
        """Processes in view whose stream broke before their final numbers came: theirs are the last they sent."""
        return tuple(p for p in self.in_view if p.final_numbers == "not received")

    @property
    def attached(self) -> bool:
        """Did the viewer get a hello from any process?"""
        return any(p.state in ("running", "ended", "lost") for p in self.processes)
