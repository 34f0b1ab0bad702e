"""The recorder's `stats` frames: totals, modules and models summed from its cells when read, in-flight calls,
scope usage, and the calls counted from DSPy's history before `dspy-top attach`.

A part of `Recorder` (recorder.py), kept in its own file: the cells, scopes and active calls are the recorder's,
made in `Recorder.reset`. Summing when read (a few times a second) is what lets a finished call update one cell.
"""

from __future__ import annotations

from typing import Any

from dspy_top.instrumentation.scope_events import MAX_SCOPES
from dspy_top.instrumentation.tally import Tally

# A stats frame lists at most this many models and module paths: the rest (fewest calls
# first) are summed into one entry named OTHER that says how many it holds. 30,000
# distinct model names would otherwise make a frame of megabytes, every half second.
MAX_MODELS = 100
MAX_MODULES = 200
OTHER = "(other)"
# The module path of the calls counted from DSPy's history at `dspy-top attach`.
BEFORE_ATTACH = "(before attach)"


class StatsFrames:
    """Every exact counter, as sent in `stats` frames, and what budget guards read of them."""

    def stats(self) -> dict[str, Any]:
        """Every exact counter, as sent in `stats` frames."""
        with self.lock:
            self._fold_locked()
            return self._stats_locked()

    def _stats_locked(self, all_scopes: bool = False) -> dict[str, Any]:
        totals = Tally()
        modules: dict[str, Tally] = {}
        models: dict[str, Tally] = {}
        for (path, model), cell in self.cells.items():
            totals.add(cell)
            module = _counters_of(modules, path, by_model=True)
            module.add(cell)
            if cell.prompt_tokens or cell.completion_tokens:
                # Billed tokens per model, so a viewer can re-price a module with its own prices.
                module.by_model[model] = [cell.prompt_tokens, cell.completion_tokens, cell.cached_tokens]
            _counters_of(models, model).add(cell)
        totals.in_flight, module_flight, model_flight, scope_flight = self._in_flight()
        for path, count in module_flight.items():
            _counters_of(modules, path, by_model=True).in_flight = count
        for model, count in model_flight.items():
            _counters_of(models, model).in_flight = count
        models, models_folded = _fold_rare(models, MAX_MODELS)
        modules, modules_folded = _fold_rare(modules, MAX_MODULES)
        if models_folded:
            for counters in modules.values():
                _fold_by_model(counters, models)
        scopes = [state for state in self.scopes.values() if all_scopes or state["state"] == "running"]
        stats = {
            "at": self._clock(),
            "totals": totals.to_wire(),
            "modules": [
                {"path": path, **self.module_info.get(path, _NO_INFO), **counters.to_wire()}
                for path, counters in modules.items()
            ],
            "models": [{"model": model, **counters.to_wire()} for model, counters in models.items()],
            "scopes": [
                {**state, "usage": self._scope_usage(state["id"], scope_flight)} for state in scopes[-MAX_SCOPES:]
            ],
            "dropped_events": self.dropped_events,
            "internal_errors": self.internal_errors,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            # A copy: the guard appends alerts from the job's threads while a frame is built.
            "budget": None
            if self.budget is None
            else {**self.budget, "alerts": [dict(alert) for alert in self.budget["alerts"]]},
            **({"before_attach": self.before_attach} if self.before_attach is not None else {}),
        }
        for entries, folded in ((stats["modules"], modules_folded), (stats["models"], models_folded)):
            if folded:
                entries[-1]["folded"] = folded
        if len(scopes) > MAX_SCOPES:
            stats["scopes_omitted"] = len(scopes) - MAX_SCOPES
        return stats

    def _in_flight(self) -> tuple[int, dict[str, int], dict[str, int], dict[str, int]]:
        """Calls in flight: in all, per module path, per model and per scope."""
        active = self.active.copy()  # one C call: safe while job threads add and remove
        modules: dict[str, int] = {}
        models: dict[str, int] = {}
        scopes: dict[str, int] = {}
        for record in active.values():
            path = record.path
            if path is None:
                path = self._name(record)
            modules[path] = modules.get(path, 0) + 1
            models[record.model] = models.get(record.model, 0) + 1
            for scope in record.scopes:
                scopes[scope] = scopes.get(scope, 0) + 1
            if path not in self.module_info:
                self.module_info[path] = {"class": record.module_class, "chain": list(record.chain)}
        return len(active), modules, models, scopes

    def _scope_usage(self, scope_id: str, in_flight: dict[str, int]) -> dict[str, Any] | None:
        counters = self.scope_counters.get(scope_id)
        if counters is None:
            return None
        usage = counters.to_wire()
        usage["in_flight"] = in_flight.get(scope_id, 0)
        return usage

    def spent_usd(self, kind: str, name: str = "") -> float:
        """Billed cost so far in all (`total`), of one module path (`module`) or one model (`model`)."""
        with self.lock:
            self._fold_locked()
            if kind == "total":
                return sum(cell.cost_usd for cell in self.cells.values())
            index = 0 if kind == "module" else 1
            return sum(cell.cost_usd for key, cell in self.cells.items() if key[index] == name)

    def add_before_attach(self, model: str | None, counters: Tally | None, summary: dict[str, Any]) -> None:
        """Calls DSPy's history recorded before `dspy-top attach`: they join the totals in a
        `(before attach)` cell of their model (never the call stream); `summary` goes out in `stats`."""
        with self.lock:
            if counters is not None:
                key = (BEFORE_ATTACH, str(model))
                cell = self.cells.get(key)
                if cell is None:
                    cell = self.cells[key] = Tally()
                    self.module_info.setdefault(BEFORE_ATTACH, {"class": "DSPy history", "chain": []})
                cell.add(counters)
            self.before_attach = summary
            self.version += 1


_NO_INFO = {"class": "", "chain": []}


def _fold_rare(table: dict[str, Tally], limit: int) -> tuple[dict[str, Tally], int]:
    """At most `limit` entries: the busiest, then OTHER summing the rest. (table, how many OTHER holds)."""
    if len(table) <= limit:
        return table, 0
    ranked = sorted(table.items(), key=lambda item: item[1].calls + item[1].in_flight, reverse=True)
    kept = dict(ranked[: limit - 1])
    other = Tally()
    if any(counters.by_model is not None for _, counters in ranked):
        other.by_model = {}
    for _, counters in ranked[limit - 1 :]:
        other.add(counters)
        other.in_flight += counters.in_flight
        for model, cell in (counters.by_model or {}).items():
            _add_cell(other.by_model, model, cell)
    kept[OTHER] = other
    return kept, len(ranked) - (limit - 1)


def _fold_by_model(counters: Tally, models: dict[str, Tally]) -> None:
    """A module's per-model tokens, with the models folded into OTHER summed there too."""
    if not counters.by_model:
        return
    by_model: dict[str, list[int]] = {}
    for model, cell in counters.by_model.items():
        _add_cell(by_model, model if model in models else OTHER, cell)
    counters.by_model = by_model


def _add_cell(table: dict[str, list[int]], model: str, cell: list[int]) -> None:
    kept = table.get(model)
    table[model] = list(cell) if kept is None else [a + b for a, b in zip(kept, cell)]


def _counters_of(table: dict[str, Tally], key: str, by_model: bool = False) -> Tally:
    counters = table.get(key)
    if counters is None:
        counters = table[key] = Tally()
        if by_model:
            counters.by_model = {}
    return counters
