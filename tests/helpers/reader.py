"""Reads an instrumented process's stream as a viewer does, and says what changed since a mark."""

from __future__ import annotations

import time


class Reader:
    """Reads the stream like a viewer and answers: what changed since the last look?"""

    def __init__(self, connection):
        self.connection = connection
        self.calls = {}
        self.scopes = {}
        self.tools = []
        self.last = None
        self.mark()

    def pump(self, timeout=0.2):
        for message in self.connection.poll(timeout):
            kind = message["t"]
            if kind == "snapshot":
                self.last = message["stats"]
                for call in message["calls"]:
                    self.calls[call["id"]] = call
            elif kind == "stats":
                self.last = message
            elif kind == "call":
                self.calls[message["id"]] = message
            elif kind.startswith(("eval_", "compile_")):
                self.scopes.setdefault(message["id"], {}).update(message)
            elif kind == "tool":
                self.tools.append(message)

    def settled(self, after):
        """Stats sent after `after` with nothing in flight."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.pump()
            if self.last and self.last["at"] > after and self.last["totals"]["in_flight"] == 0:
                return self.last
        raise AssertionError("no settled stats frame")

    def mark(self):
        self.base = self.settled(0) if self.last is None and False else self._now()
        self.seen_calls = set(self.calls)
        self.seen_tools = len(self.tools)

    def _now(self):
        self.pump(0.5)
        return self.last

    def delta(self):
        """Totals, per-module and per-model counters added since `mark()`."""
        now = self.settled(time.time())
        base = self.base

        def diff(
            new,
            old,
            keys=(
                "calls",
                "errors",
                "retries",
                "cache_hits",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
                "cost_saved_usd",
                "unpriced_calls",
                "unmetered_calls",
            ),
        ):
            return {k: new[k] - (old[k] if old else 0) for k in keys}

        old_modules = {m["path"]: m for m in base["modules"]} if base else {}
        old_models = {m["model"]: m for m in base["models"]} if base else {}
        modules = {m["path"]: diff(m, old_modules.get(m["path"])) for m in now["modules"]}
        models = {m["model"]: diff(m, old_models.get(m["model"])) for m in now["models"]}
        new_calls = [c for i, c in self.calls.items() if i not in self.seen_calls]
        return {
            "totals": diff(now["totals"], base["totals"] if base else None),
            "modules": {p: d for p, d in modules.items() if d["calls"]},
            "models": {m: d for m, d in models.items() if d["calls"]},
            "calls": new_calls,
            "tools": self.tools[self.seen_tools :],
            "stats": now,
        }
