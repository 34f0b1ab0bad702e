"""What a call carries from its context: the evaluation or compile it belongs to, and DSPy 2.6's per-thread settings.

A leaf module: the hooks and the scope wrappers both read it, neither through the other.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# DSPy copies its own settings into Parallel/Evaluate/asyncify workers, not arbitrary
# ContextVars; so the evaluation/compile a call belongs to travels as a settings key. Its value
# is a plain tuple (ids, owners), so settings saved inside a scope (dspy.settings.save pickles
# them) load where dspy-top is not installed.
SCOPE_KEY = "dspy_top_scope"
ABSENT = object()  # what `patch` and ThreadOverrides restore as "no such attribute"


class Scope(NamedTuple):
    """The evaluations and compiles enclosing the current code, outermost first.

    A tuple, cheap to make from the plain (ids, owners) pair kept in DSPy's settings: Evaluate's
    progress reads it once per example."""

    ids: tuple[str, ...] = ()
    owners: tuple[int, ...] = ()  # id() of the Evaluate/optimizer instances, to skip re-entry

    def push(self, scope_id: str, owner: object) -> Scope:
        return Scope(self.ids + (scope_id,), self.owners + (id(owner),))


NO_SCOPE = Scope()


class ThreadOverrides:
    """DSPy 2.6's per-thread settings overrides (a `threading.local`), behind the ContextVar
    interface that DSPy 3 uses: `get()`, `set(value) -> token`, `reset(token)`."""

    def __init__(self, local) -> None:
        self._local = local

    def get(self) -> Any:
        overrides = getattr(self._local, "overrides", None)
        return overrides if overrides is not None else {}

    def set(self, value) -> Any:
        previous = getattr(self._local, "overrides", ABSENT)
        self._local.overrides = value
        return previous

    def reset(self, token) -> None:
        if token is ABSENT:
            try:
                del self._local.overrides
            except AttributeError:
                pass
        else:
            self._local.overrides = token
