"""The viewer's aggregation: fold process messages into a `Fleet`, render its `Snapshot`.

Pure Python over frozen dataclasses, with an injected clock; imports neither dspy nor Textual.
"""

from dspy_top.model.calls import CallQuery, CallSummary, History
from dspy_top.model.counters import Counters
from dspy_top.model.fleet import Fleet
from dspy_top.model.optimizers import OptimizerRun, Trial
from dspy_top.model.process import CONNECTING, ENDED, FAILED, LOST, RUNNING, ProcessState
from dspy_top.model.scopes import ScopeState
from dspy_top.model.snapshot import ModelRow, ProcessRow, Snapshot
from dspy_top.model.tree import ModuleNode, ModuleRow, build_tree, flatten

__all__ = [
    "CONNECTING", "ENDED", "FAILED", "LOST", "RUNNING", "CallQuery", "CallSummary", "Counters", "Fleet",
    "History", "ModelRow", "ModuleNode", "ModuleRow", "OptimizerRun", "ProcessRow", "ProcessState", "ScopeState",
    "Snapshot", "Trial", "build_tree", "flatten",
]
