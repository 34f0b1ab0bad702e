"""Where dspy-top meets DSPy: installs every wrapper and holds what they share.

Why wrappers and not a global DSPy callback: registering one makes DSPy wrap every module
and adapter call (hundreds of µs per LM call) and `on_lm_end` carries no usage. The LM-call
wrappers are in `lm_calls` (DSPy 3.4) and `legacy_lm` (DSPy 2.6 to 3.3, and any DSPy whose
execution layer is unfamiliar), the Evaluate/compile/Tool ones in `scopes`. Every wrapper
swallows its own errors (counted) and re-raises only the program's.

What outlives a call here is plain data: a module path, numbers and the plain containers of
the call's payload (payload.py). No LM, module, request, result or exception is kept once it
returns.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

from dspy_top.instrumentation import payload
from dspy_top.instrumentation.call_context import ABSENT, NO_SCOPE, SCOPE_KEY, Scope, ThreadOverrides
from dspy_top.instrumentation.call_record import CallRecord
from dspy_top.instrumentation.frames import in_module_of
from dspy_top.instrumentation.lm_calls import usage_tokens
from dspy_top.instrumentation.module_paths import describe, holds
from dspy_top.instrumentation.recorder import Recorder

MECHANISM_EXECUTION = "execution-hooks"
MECHANISM_FALLBACK = "lm-call-fallback"
_new_scope = tuple.__new__


def _forget(paths: dict, key: tuple[int, ...], _dead: weakref.ref) -> None:
    """A module of this chain was collected: its id may be reused, so drop the entry."""
    paths.pop(key, None)


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
        self.thread_local_settings = False  # DSPy 2.6: settings overrides per thread, not per task
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

        from dspy_top.instrumentation import legacy_lm, lm_calls, scopes  # they wrap DSPy through these hooks

        settings_module = importlib.import_module("dspy.dsp.utils.settings")
        overrides = settings_module.thread_local_overrides
        # DSPy 3 keeps per-context overrides in a ContextVar, DSPy 2.6 in a threading.local.
        self.thread_local_settings = not hasattr(overrides, "reset")
        self.overrides = ThreadOverrides(overrides) if self.thread_local_settings else overrides
        self._main_config = settings_module.main_thread_config
        try:
            from dspy.clients import execution

            if not lm_calls.execution_is_familiar(execution):
                raise LookupError("unfamiliar dspy.clients.execution")
            lm_calls.install_execution(self, execution)
            self.mechanism = MECHANISM_EXECUTION
        except Exception:
            self.uninstall()
            self.mechanism = MECHANISM_FALLBACK
            legacy_lm.install(self)
        for install in (
            scopes.install_evaluate,
            scopes.install_compile,
            scopes.install_tools,
            lm_calls.install_stream_usage,
        ):
            try:
                install(self)
            except Exception:
                self.recorder.count_internal_error()
        return self.mechanism

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._restore):
            try:
                if original is ABSENT:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)
            except Exception:
                pass
        self._restore.clear()

    def patch(self, owner: object, name: str, replacement: Any) -> None:
        """Replace `owner.name` (a class's own attribute: what it inherits stays untouched).

        The replacement's frames belong to the original's module (frames.py)."""
        if isinstance(owner, type):
            original = owner.__dict__.get(name, ABSENT)
        else:
            original = getattr(owner, name)
        if original is not ABSENT:
            replacement = in_module_of(replacement, original)
        self._restore.append((owner, name, original))
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
        if self.thread_local_settings and len(set(key)) < len(key):
            modules = _own_chain(modules)
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
        return _new_scope(Scope, scope) if type(scope) is tuple and len(scope) == 2 else NO_SCOPE

    def enter_scope(self, scope: Scope):
        overrides = self.overrides.get()
        updated = type(overrides)(overrides)
        updated[SCOPE_KEY] = (scope.ids, scope.owners)  # a plain tuple, not the Scope class
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
            scopes = scope[0] if type(scope) is tuple else ()
            # Named now, while the modules are alive: the record never holds them. The cache
            # lookup is inlined (module_path does the same): this runs once per LM call.
            if modules:
                cached = self._paths.get(tuple(map(id, modules)))
                path, cls, chain = cached[1] if cached is not None else self.module_path(modules)
            else:
                path, cls, chain = "(direct)", "LM", ()
            if self.guard is not None:
                self.guard.before_call(path, model)
            return self.recorder.begin(path, cls, chain, model, scopes, stream is not None)
        except BaseException as exc:
            if self.guard is not None and self.guard.is_budget_error(exc):
                raise
            self.recorder.count_internal_error()
            return None

    def finish_ok(self, record: CallRecord, lm, call, result) -> None:
        """A call through DSPy 3.4's execute returned its CallResult."""
        try:
            usage = result.usage or {}
            # The payload's parts: DSPy's plain containers for this call and the LM's options,
            # never the LM, the call or the result themselves (see payload.py).
            if call.request is None:
                record.messages, record.prompt = call.messages or call.legacy.get("messages"), call.prompt
            else:
                record.messages, record.prompt = payload.request_messages(call.request), None
            options = call.kwargs
            record.lm_options = payload.lm_options(lm)
            record.call_options = payload.plain_options(options) if options else options
            record.outputs, record.usage, record.cost_details = result.outputs, usage, result.cost_details
            model_type = getattr(lm, "model_type", None)
            record.model_type = model_type if type(model_type) is str else None
            self._conclude(record, usage, result.cost, bool(result.cache_hit), result.response_model)
        except Exception:
            self.recorder.count_internal_error()
            self.recorder.discard(record)

    def finish_response(self, record: CallRecord, lm, usage, cost, hit: bool, response_model, parts) -> None:
        """A call through an older DSPy's BaseLM returned (legacy_lm read its response); `parts`
        are the payload's (messages, prompt, lm options, call options, outputs, usage, cost details)."""
        try:
            _keep_parts(record, lm, parts)
            self._conclude(record, usage or {}, cost, hit, response_model)
        except Exception:
            self.recorder.count_internal_error()
            self.recorder.discard(record)

    def _conclude(self, record: CallRecord, usage: dict, cost, hit: bool, response_model) -> None:
        """A returned call's numbers to the recorder: `cost` is DSPy's, priced anew where the job has a price."""
        tokens = usage_tokens(usage)
        if cost is not None and type(cost) is not float:
            cost = _number(cost)
        record.dspy_cost = cost
        record.usage_known = hit or bool(usage)
        billed = cost
        if self.prices and not hit:
            price = self.prices.get(record.model)
            if price is not None:
                billed = price.cost(tokens[0], tokens[1], tokens[2])
        if response_model is not None and type(response_model) is not str:
            response_model = str(response_model)
        # Positional: this runs once per LM call.
        self.recorder.finish(
            record,
            tokens[0],
            tokens[1],
            tokens[2],
            tokens[3],
            None if hit else billed,
            hit,
            cost if hit else None,
            None,
            response_model,
            True,
        )
        if self.guard is not None:
            self.guard.after_call(record)

    def finish_error(self, record: CallRecord, lm, error: BaseException, parts=None) -> None:
        try:
            _keep_parts(record, lm, parts)
            tokens = usage_tokens(getattr(record, "partial_usage", None) or {})
            self.recorder.finish(
                record,
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                cached_tokens=tokens[2],
                reasoning_tokens=tokens[3],
                cost=None,
                error=error,
                keep=True,
            )
        except Exception:
            self.recorder.count_internal_error()
            self.recorder.discard(record)


def _keep_parts(record: CallRecord, lm, parts) -> None:
    """Put a payload's parts and the LM's model type on the record (not the hot path)."""
    (
        record.messages,
        record.prompt,
        record.lm_options,
        record.call_options,
        record.outputs,
        record.usage,
        record.cost_details,
    ) = parts if parts is not None else (None,) * 7
    model_type = getattr(lm, "model_type", None)
    record.model_type = model_type if type(model_type) is str else None


def _own_chain(modules):
    """The calling task's own modules in a chain DSPy 2.6 garbled.

    DSPy 2.6 keeps `caller_modules` per thread, so asyncio tasks sharing a thread stack their
    modules on each other's: [RAG, cot, predict, RAG, answer]. A task enters its modules
    without yielding between them, so its own chain is on top: from the last module back, as
    long as each module holds the next one and none repeats."""
    start = len(modules) - 1
    seen = {id(modules[start])}
    while start > 0 and id(modules[start - 1]) not in seen and holds(modules[start - 1], modules[start]):
        start -= 1
        seen.add(id(modules[start]))
    return modules[start:]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
