"""The viewer's aggregation: fold process messages into a `Fleet`, render its `Snapshot`.

Pure Python over frozen dataclasses, with an injected clock; imports neither dspy nor Textual.
The names below load their module when first used (PEP 562): the viewer's first frame needs a
few small modules of the model, not all of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "CallQuery": "calls",
    "CallSummary": "calls",
    "History": "calls",
    "Counters": "counters",
    "Fleet": "fleet",
    "OptimizerRun": "optimizers",
    "Trial": "optimizers",
    "CONNECTING": "states",
    "ENDED": "states",
    "FAILED": "states",
    "LOST": "states",
    "RUNNING": "states",
    "ProcessState": "process",
    "ScopeState": "scopes",
    "ModelRow": "snapshot",
    "ProcessRow": "snapshot",
    "Snapshot": "snapshot",
    "ModuleNode": "tree",
    "ModuleRow": "tree",
    "build_tree": "tree",
    "flatten": "tree",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from dspy_top.model.calls import CallQuery, CallSummary, History
    from dspy_top.model.counters import Counters
    from dspy_top.model.fleet import Fleet
    from dspy_top.model.optimizers import OptimizerRun, Trial
    from dspy_top.model.process import ProcessState
    from dspy_top.model.scopes import ScopeState
    from dspy_top.model.snapshot import ModelRow, ProcessRow, Snapshot
    from dspy_top.model.states import CONNECTING, ENDED, FAILED, LOST, RUNNING
    from dspy_top.model.tree import ModuleNode, ModuleRow, build_tree, flatten
