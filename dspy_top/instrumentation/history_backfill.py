"""What a job did before `dspy-top attach`: the calls DSPy's own history recorded, counted once.

At attach, every entry of DSPy's global history (and, when that is full, of every live LM's
history) becomes a `(before attach)` cell of its model in the recorder, so the job's totals
include it, and a `before_attach` summary goes out in `stats` (docs/protocol.md).

Calls already in flight at attach began inside DSPy's original `execute`, so the hooks never
see them; they reach history when they finish. A wrapper on DSPy's `record_history` counts
exactly those (the calling `BaseLM.__call__`/`acall` frame still holds the original
`execute`/`aexecute`) until none is left, then goes. Where DSPy's history is off or full,
the summary says how many calls may be missing instead of pretending.

Calls are told apart by the `id()` of that frame while it runs. An id is only ever compared with
frames alive after the hooks went in: a frame freed before then (a call that ended between the
watch and the hooks) may have given its address to another call begun before the hooks, so the
ids of the calls the snapshot counted are not kept; those calls, if still running, are told done
by where their frame stands (`unhooked_calls`). After the hooks no new call binds DSPy's own
`execute`, so no running call's id can stand for another.
"""

from __future__ import annotations

import datetime
import dis
import functools
import inspect
import sys
import threading
from typing import Any

from dspy_top.instrumentation.frames import in_module_of
from dspy_top.instrumentation.lm_calls import binds_like, usage_tokens
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.instrumentation.tally import Tally

# History states in the summary.
COMPLETE = "complete"  # every call DSPy made is in its history
CAPPED = "capped"  # DSPy's global history is full: older calls were dropped, how many is unknown
DISABLED = "disabled"  # DSPy's history is off: calls before attach are unknown


class HistoryBackfill:
    """Counts DSPy's history at attach and the calls then in flight; never raises into the job."""

    def __init__(self, clock=None) -> None:
        import time

        self.recorder: Recorder | None = None  # bound once instrument() made it (see `bind`)
        self.prices: dict = {}
        self.errors = 0  # before a recorder is bound
        self.at = (clock or time.time)()
        self.summary: dict[str, Any] = {
            "at": self.at,
            "source": "history",
            "calls": 0,
            "history": COMPLETE,
            "missing": 0,
            "in_flight": 0,
            "in_flight_counted": 0,
            "settled": False,
        }
        self._lock = threading.Lock()
        self._snapshot_taken = False
        self._early: list[tuple[dict, int]] = []  # stragglers recorded before the snapshot: (entry, call)
        # Calls the hooks missed, by id() of their BaseLM.__call__/acall frame: seen running, counted
        # (the summary's `in_flight_counted` counts those, one each).
        self._in_flight_calls: set[int] = set()
        self._counted_calls: set[int] = set()
        # id()s of the history entries of calls counted since the snapshot began, and of those it
        # held: a frame still inside `finalize` with one of them is done (see `unhooked_calls`).
        self._counted_entries: set[int] = set()
        self._base_lm = None
        self._original_record = None
        self._originals: dict[str, Any] = {}  # "execute"/"aexecute" -> DSPy's own function
        self._call_codes: dict[Any, str] = {}  # code of BaseLM.__call__/acall -> the local holding execute
        self._finalize_at: dict[Any, int] = {}
        self._settings = None
        self.watching = False

    def bind(self, recorder: Recorder, prices: dict | None = None) -> None:
        self.recorder = recorder
        self.prices = prices or {}
        for _ in range(self.errors):
            recorder.count_internal_error()
        self.errors = 0

    def _error(self) -> None:
        if self.recorder is not None:
            self.recorder.count_internal_error()
        else:
            self.errors += 1

    # --- before the hooks go in ---------------------------------------------------------

    def watch(self) -> None:
        """Wrap DSPy's `record_history` so calls that began before the hooks are counted when they end."""
        try:
            from dspy.clients import base_lm, execution
            from dspy.dsp.utils import settings

            self._settings = settings
            self._originals = {"execute": execution.execute, "aexecute": execution.aexecute}
            self._call_codes = {
                inspect.unwrap(base_lm.BaseLM.__dict__["__call__"]).__code__: "execute",
                inspect.unwrap(base_lm.BaseLM.__dict__["acall"]).__code__: "aexecute",
            }
            # Where each calls `finalize` (its last call): a frame stopped there, with nothing running
            # inside it, has already recorded its history entry.
            self._finalize_at = {
                code: max(i.offset for i in dis.get_instructions(code) if i.opname == "CALL")
                for code in self._call_codes
            }
            original = base_lm.record_history
            if not binds_like(original, ("client", "entry")):
                raise LookupError("unfamiliar dspy.clients.base_lm.record_history")
        except Exception:
            self._error()
            return
        backfill = self

        # DSPy's own parameters (`binds_like` checks them): any call binds, or fails, as without dspy-top.
        @functools.wraps(original)
        def record_history(client, entry):
            try:
                if backfill.watching and not backfill._settings.disable_history:
                    call_frame = backfill._straggler()
                    if call_frame is not None:
                        backfill._straggler_recorded(entry, call_frame)
            except Exception:
                backfill._error()
            return original(client, entry)

        self._base_lm, self._original_record = base_lm, original
        self._wrapper = in_module_of(record_history, original)
        base_lm.record_history = self._wrapper
        self.watching = True

    def _straggler(self):
        """The `BaseLM.__call__`/`acall` frame recording this entry if the hooks did not see its call
        (its `execute` is DSPy's own), else None."""
        frame = sys._getframe(2)  # record_history's caller (update_history), then up
        for _ in range(8):
            if frame is None:
                return None
            local = self._call_codes.get(frame.f_code)
            if local is not None:
                return frame if frame.f_locals.get(local) is self._originals[local] else None
            frame = frame.f_back
        return None

    def _straggler_recorded(self, entry: dict, call_frame) -> None:
        # Runs before DSPy appends the entry: one the snapshot can hold only if registered before it.
        with self._lock:
            if not self._snapshot_taken:
                self._early.append((entry, id(call_frame)))  # the snapshot decides whether it holds this one
                return
            self._counted_calls.add(id(call_frame))
            self._counted_entries.add(id(entry))
            self.summary["in_flight_counted"] += 1
        self._count([entry])

    # --- after the hooks went in ----------------------------------------------------------

    def count_recorded(self) -> dict[str, Any]:
        """Count DSPy's history as it is now into the recorder; the summary (also sent in `stats`)."""
        try:
            entries, state = self._history()
        except Exception:
            self._error()
            entries, state = [], None
        with self._lock:
            self._snapshot_taken = True
            held = {id(e) for e in entries}
            # Stragglers whose entry the snapshot holds were counted by it; their frames' ids are not
            # kept (a frame gone since may have lent its address to a call still running). The others
            # are counted here, their frames alive until DSPy appends their entries (after the hooks).
            late = [(e, call) for e, call in self._early if id(e) not in held]
            self._early = []
            self._counted_calls.update(call for _, call in late)
            self._counted_entries = held | {id(e) for e, _ in late}
            self.summary["in_flight_counted"] += len(late)
        self._count(entries + [e for e, _ in late])
        try:
            # Calls running now that the hooks missed, less those whose entry is counted already.
            running = self.unhooked_calls(recorded=self._counted_entries)
            with self._lock:
                self._in_flight_calls |= running
        except Exception:
            self._error()
        summary = self.summary
        with self._lock:
            summary["in_flight"] = self._in_flight_locked()
            if state is None:
                summary.update(history="unknown", missing=None)
            else:
                summary["history"] = state
                summary["missing"] = None if state != COMPLETE else 0
            if not self.watching:  # no way to count the calls in flight as they end
                summary["missing"] = None if summary["missing"] is None else summary["missing"] + summary["in_flight"]
                summary["settled"] = True
        self._publish()
        return dict(summary)

    def _in_flight_locked(self) -> int:
        """The calls in flight at attach: those counted as they ended, and those seen running not yet counted."""
        return self.summary["in_flight_counted"] + len(self._in_flight_calls - self._counted_calls)

    def _history(self) -> tuple[list[dict], str]:
        from dspy.clients import base_lm

        settings = self._settings
        if settings is None:
            from dspy.dsp.utils import settings
        entries = list(base_lm.GLOBAL_HISTORY)  # one C call: a consistent copy
        if settings.disable_history and not entries:
            return [], DISABLED
        state = COMPLETE
        cap = getattr(base_lm, "MAX_HISTORY_SIZE", None)
        if cap is not None and len(entries) >= cap:
            # Older entries were dropped; each live LM's own history may still hold some.
            state = CAPPED
            seen = {id(e) for e in entries}
            for lm in _live_lms(base_lm.BaseLM):
                for entry in list(getattr(lm, "history", ()) or ()):
                    if isinstance(entry, dict) and id(entry) not in seen:
                        seen.add(id(entry))
                        entries.append(entry)
        if settings.disable_history:
            state = DISABLED if not entries else CAPPED if state == CAPPED else DISABLED
        return entries, state

    def _count(self, entries: list[dict]) -> None:
        """Fold history entries into the recorder's `(before attach)` cells, as the hooks count a call."""
        by_model: dict[str, Tally] = {}
        first = last = None
        for entry in entries:
            try:
                model = str(entry.get("model") or "?")
                usage = entry.get("usage") or {}
                # DSPy records a cache hit with empty usage and the original call's cost.
                hit = not usage or bool(getattr(entry.get("response"), "cache_hit", False))
                prompt, completion, cached, reasoning = usage_tokens(usage) if not hit else (0, 0, 0, 0)
                cost = entry.get("cost")
                price = self.prices.get(model) if not hit else None
                if price is not None:
                    cost = price.cost(prompt, completion, cached)
                counters = by_model.get(model)
                if counters is None:
                    counters = by_model[model] = Tally()
                counters.calls += 1
                if hit:
                    counters.cache_hits += 1
                    if isinstance(cost, (int, float)):
                        counters.cost_saved_usd += float(cost)
                else:
                    counters.prompt_tokens += prompt
                    counters.completion_tokens += completion
                    counters.cached_tokens += cached
                    counters.reasoning_tokens += reasoning
                    if isinstance(cost, (int, float)):
                        counters.cost_usd += float(cost)
                    elif prompt or completion:
                        counters.unpriced_calls += 1
                at = _timestamp(entry.get("timestamp"))
                if at is not None:
                    counters.last_at = max(counters.last_at, at)
                    first = at if first is None else min(first, at)
                    last = at if last is None else max(last, at)
            except Exception:
                self._error()
        with self._lock:
            summary = self.summary
            summary["calls"] += sum(c.calls for c in by_model.values())
            if first is not None:
                summary["first_at"] = first if summary.get("first_at") is None else min(summary["first_at"], first)
                summary["last_at"] = last if summary.get("last_at") is None else max(summary["last_at"], last)
            published = dict(summary)
        for model, counters in by_model.items():
            self.recorder.add_before_attach(model, counters, published)
        if not by_model:
            self._publish()

    def _publish(self) -> None:
        with self._lock:
            published = dict(self.summary)
        self.recorder.add_before_attach(None, None, published)

    # --- while calls from before the attach are still running ----------------------------------

    def unhooked_calls(self, recorded: set[int] = frozenset()) -> set[int]:
        """LM calls running now that began inside DSPy's own `execute` (threads and asyncio tasks), as
        ids of their `BaseLM.__call__`/`acall` frames; those whose history entry is in `recorded` are done."""
        if not self._call_codes:
            return set()
        calls: set[int] = set()
        loops = []
        for frame in list(sys._current_frames().values()):
            done = False
            innermost = True
            while frame is not None:
                code = frame.f_code
                if code.co_name == "finalize" and recorded and id(frame.f_locals.get("entry")) in recorded:
                    done = True  # past DSPy's history append: the snapshot counted it
                local = self._call_codes.get(code)
                if local is not None:
                    if innermost and frame.f_lasti >= self._finalize_at.get(code, 1 << 30):
                        done = True  # `finalize` has returned: its entry is in history
                    if not done and frame.f_locals.get(local) is self._originals[local]:
                        calls.add(id(frame))
                    done = False
                innermost = False
                loop = _running_loop(frame)
                if loop is not None:
                    loops.append(loop)
                frame = frame.f_back
        for loop in loops:
            calls |= self._unhooked_tasks(loop)
        return calls

    def _unhooked_tasks(self, loop) -> set[int]:
        import asyncio

        calls: set[int] = set()
        try:
            tasks = asyncio.all_tasks(loop)
        except Exception:
            return calls
        for task in tasks:
            coro = task.get_coro()
            for _ in range(64):
                code = getattr(coro, "cr_code", None)
                if code is None:
                    break
                local = self._call_codes.get(code)
                frame = getattr(coro, "cr_frame", None)
                if local is not None and frame is not None and frame.f_locals.get(local) is self._originals[local]:
                    calls.add(id(frame))
                    break
                coro = getattr(coro, "cr_await", None)
        return calls

    def settle(self) -> bool:
        """A watcher's tick: once no call from before the attach is running, stop watching. True when done."""
        if not self.watching:
            return True
        try:
            with self._lock:
                counted = set(self._counted_entries)
            running = self.unhooked_calls(recorded=counted)
        except Exception:
            self._error()
            running = set()
        if running:
            with self._lock:
                # A call counted between the look and now is in `_counted_calls`: not counted twice.
                self._in_flight_calls |= running
            return False
        self.close()
        with self._lock:
            # Calls in flight at attach that never reached history failed (or history was off then).
            unseen = len(self._in_flight_calls - self._counted_calls)
            self.summary["in_flight"] = self._in_flight_locked()
            if self.summary["missing"] is not None:
                self.summary["missing"] += unseen
            self.summary["settled"] = True
        self._publish()
        return True

    def close(self) -> None:
        """Put DSPy's `record_history` back (if nobody replaced it since)."""
        self.watching = False
        base_lm = self._base_lm
        if base_lm is not None and getattr(base_lm, "record_history", None) is self._wrapper:
            base_lm.record_history = self._original_record
        self._base_lm = None


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _running_loop(frame) -> Any:
    """The asyncio event loop a `run_forever` frame runs, if this is one."""
    if frame.f_code.co_name != "run_forever":
        return None
    loop = frame.f_locals.get("self")
    return loop if hasattr(loop, "call_soon_threadsafe") else None


def _live_lms(base_class) -> list:
    """Every live DSPy LM (only needed when DSPy's global history is full)."""
    import gc

    return [obj for obj in gc.get_objects() if isinstance(obj, base_class)]
