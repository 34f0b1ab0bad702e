"""Where dspy-top meets DSPy: installs every wrapper and holds what they share.

Why wrappers and not a global DSPy callback: registering one makes DSPy wrap every module
and adapter call (hundreds of µs per LM call) and `on_lm_end` carries no usage. The LM-call
wrappers are in `lm_calls`, the Evaluate/compile/Tool ones in `scopes`. Every wrapper
swallows its own errors (counted) and re-raises only the program's.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

from dspy_top.instrumentation.lm_calls import usage_tokens
from dspy_top.instrumentation.module_paths import describe
from dspy_top.instrumentation.recorder import CallRecord, Recorder

# DSPy copies its own settings into Parallel/Evaluate/asyncify workers, not arbitrary
# ContextVars; so the evaluation/compile a call belongs to travels as a settings key.
SCOPE_KEY = "dspy_top_scope"
MECHANISM_EXECUTION = "execution-hooks"
MECHANISM_FALLBACK = "lm-call-fallback"


def _legacy_messages(call) -> Any:
    """The messages of a call DSPy sent without an lm15 request (its legacy path)."""
    return call.messages or (getattr(call, "legacy", None) or {}).get("messages")


def _forget(paths: dict, key: tuple[int, ...], _dead: weakref.ref) -> None:
    """A module of this chain was collected: its id may be reused, so drop the entry."""
    paths.pop(key, None)


@dataclass(frozen=True)
class Scope:
    """The evaluations and compiles enclosing the current code, outermost first."""

    ids: tuple[str, ...] = ()
    owners: tuple[int, ...] = ()  # id() of the Evaluate/optimizer instances, to skip re-entry

    def push(self, scope_id: str, owner: object) -> "Scope":
        return Scope(self.ids + (scope_id,), self.owners + (id(owner),))


class Hooks:
    """Installs and removes every wrapper; holds what they share."""

    def __init__(self, recorder: Recorder, guard=None, prices=None) -> None:
        self.recorder = recorder
        self.guard = guard  # budget guard (optional): may refuse a call before it starts
        self.prices = prices or {}  # model -> dspy_top.pricing.Price, replacing DSPy's figure
        self._restore: list[tuple[object, str, Any]] = []
        # Module chain (ids) -> (weakrefs keeping watch, described path).
        self._paths: dict[tuple[int, ...], tuple[tuple[weakref.ref, ...], tuple[str, str, tuple[str, ...]]]] = {}
        self.mechanism = ""
        recorder.describe = self.module_path
        # Set in a forked child: starts its socket server, once, outside the at-fork hook.
        self.on_first_call = None

    def run_first_call(self) -> None:
        callback, self.on_first_call = self.on_first_call, None
        if callback is not None:
            try:
                callback()
            except Exception:
                self.recorder.count_internal_error()

    # --- install / uninstall ------------------------------------------------------

    def install(self) -> str:
        import importlib

        from dspy_top.instrumentation import lm_calls, scopes  # scopes imports Scope from here

        settings_module = importlib.import_module("dspy.dsp.utils.settings")

        self.overrides = settings_module.thread_local_overrides
        self._main_config = settings_module.main_thread_config
        try:
            from dspy.clients import execution

            if not lm_calls.execution_is_familiar(execution):
                raise LookupError("unfamiliar dspy.clients.execution")
            lm_calls.install_execution(self, execution)
            self.mechanism = MECHANISM_EXECUTION
        except Exception:
            self.mechanism = MECHANISM_FALLBACK
            lm_calls.install_fallback(self)
        for install in (scopes.install_evaluate, scopes.install_compile, scopes.install_tools,
                        lm_calls.install_stream_usage):
            try:
                install(self)
            except Exception:
                self.recorder.count_internal_error()
        return self.mechanism

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._restore):
            try:
                setattr(owner, name, original)
            except Exception:
                pass
        self._restore.clear()

    def patch(self, owner: object, name: str, replacement: Any) -> None:
        self._restore.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, replacement)

    # --- settings, module paths, scopes ----------------------------------------------

    def setting(self, name: str) -> Any:
        overrides = self.overrides.get()
        if name in overrides:
            return overrides[name]
        return self._main_config.get(name)

    def module_path(self, modules=None) -> tuple[str, str, tuple[str, ...]]:
        """(path like `RAG.generate_answer.predict`, innermost class, class chain) of the caller."""
        if modules is None:
            modules = self.setting("caller_modules")
        if not modules:
            return "(direct)", "LM", ()
        key = tuple(map(id, modules))
        cached = self._paths.get(key)
        if cached is not None:
            # Every module of the chain is alive (a dead one's weakref callback evicts the
            # entry) and ids of live objects are unique: these are the same modules.
            return cached[1]
        path, chain = describe(modules)
        described = (path, chain[-1], chain)
        try:
            forget = functools.partial(_forget, self._paths, key)
            refs = tuple(weakref.ref(m, forget) for m in modules)
        except TypeError:
            return described
        if len(self._paths) > 10_000:
            self._paths.clear()
        self._paths[key] = (refs, described)
        return described

    def scope(self) -> Scope:
        scope = self.setting(SCOPE_KEY)
        return scope if isinstance(scope, Scope) else Scope()

    def enter_scope(self, scope: Scope):
        overrides = self.overrides.get()
        updated = type(overrides)(overrides)
        updated[SCOPE_KEY] = scope
        return self.overrides.set(updated)

    # --- LM calls: the hot path -----------------------------------------------------------

    def begin(self, lm) -> CallRecord | None:
        if self.on_first_call is not None:
            self.run_first_call()
        try:
            # One read of DSPy's settings for the three values the hot path needs.
            overrides, main = self.overrides.get(), self._main_config
            modules = overrides["caller_modules"] if "caller_modules" in overrides else main.get("caller_modules")
            scope = overrides[SCOPE_KEY] if SCOPE_KEY in overrides else main.get(SCOPE_KEY)
            stream = overrides["send_stream"] if "send_stream" in overrides else main.get("send_stream")
            model = getattr(lm, "model", "?")
            if type(model) is not str:
                model = str(model)
            scopes = scope.ids if type(scope) is Scope else ()
            if self.guard is None:
                # The module path is worked out when the call is folded, in a batch.
                return self.recorder.begin(None, None, (), model, scopes, stream is not None, modules or ())
            path, cls, chain = self.module_path(modules or ())
            self.guard.before_call(path, model)
            return self.recorder.begin(path, cls, chain, model, scopes, stream is not None)
        except BaseException as exc:
            if self.guard is not None and self.guard.is_budget_error(exc):
                raise
            self.recorder.count_internal_error()
            return None

    def finish_ok(self, record: CallRecord, lm, call, result) -> None:
        try:
            usage = result.usage or {}
            hit = bool(result.cache_hit)
            tokens = usage_tokens(usage)
            cost = result.cost
            if self.prices and not hit:
                price = self.prices.get(record.model)
                if price is not None:
                    cost = price.cost(tokens[0], tokens[1], tokens[2])
            # The payload's source: references to what was sent and got back (see payload.py).
            record.lm, record.prompt, record.request, record.options = lm, call.prompt, call.request, call.kwargs
            record.messages = None if call.request is not None else _legacy_messages(call)
            record.outputs, record.usage, record.dspy_cost = result.outputs, usage, result.cost
            record.cost_details = getattr(result, "cost_details", None)
            response_model = result.response_model
            if response_model is not None and type(response_model) is not str:
                response_model = str(response_model)
            # Positional: this runs once per LM call.
            self.recorder.finish(record, tokens[0], tokens[1], tokens[2], tokens[3], None if hit else cost, hit,
                                 result.cost if hit else None, None, response_model, True)
            if self.guard is not None:
                self.guard.after_call(record)
        except Exception:
            self.recorder.count_internal_error()
            self.recorder.discard(record)

    def finish_error(self, record: CallRecord, lm, call, error: BaseException) -> None:
        try:
            record.lm = lm
            if call is not None:
                record.prompt, record.request, record.options = call.prompt, call.request, call.kwargs
                if call.request is None:
                    record.messages = _legacy_messages(call)
            tokens = usage_tokens(getattr(record, "partial_usage", None) or {})
            self.recorder.finish(record, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                                 cached_tokens=tokens[2], reasoning_tokens=tokens[3], cost=None,
                                 error=error, keep=True)
        except Exception:
            self.recorder.count_internal_error()
            self.recorder.discard(record)
