"""Every process the viewer knows, folded from their messages; `snapshot()` is what the UI renders.

Every change goes through a method (what a source said: attach, connected, fold, failed,
refused, let go, restart; what the user did: dismiss) and every question too (`settled`,
`module_chains`, ...): no caller touches a `ProcessState`. Not thread-safe by itself: the
collector holds `Fleet.lock` while folding, and the UI while taking a snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from dspy_top.model.budget import ViewerBudget
from dspy_top.model.burn import BURN_WINDOW, Burn, eval_projection
from dspy_top.model.calls import HISTORY, CallQuery, History
from dspy_top.model.counters import Counters, total
from dspy_top.model.hosts import HostRow
from dspy_top.model.optimizers import derive as derive_optimizers
from dspy_top.model.payloads import PayloadAnswer, PayloadTexts
from dspy_top.model.process import ProcessState
from dspy_top.model.rates import add_series
from dspy_top.model.repricing import Repricer
from dspy_top.model.snapshot import ModelRow, ProcessRow, Snapshot
from dspy_top.model.states import CONNECTING, CONNECTING_STATUS, ENDED, LOST, RUNNING
from dspy_top.model.tree import LeafInput, build_tree
from dspy_top.pricing import Price
from dspy_top.protocol import Hello
from dspy_top.schema import parse
from dspy_top.schema.records import Record
from dspy_top.schema.values import BadMessage

SERIES_LENGTH = 120  # sparkline buckets kept (seconds at the default bucket width)


class Fleet:
    """The aggregation of every attached process."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        history_capacity: int = HISTORY,
        window: float = 5.0,
        bucket: float = 1.0,
        series_length: int = SERIES_LENGTH,
        prices: Mapping[str, Price] | None = None,
        budget_usd: float | None = None,
        burn_window: float = BURN_WINDOW,
    ) -> None:
        self.clock = clock
        self.prices = dict(prices or {})  # the user's `--price` overrides (and the config file's)
        self.budget_usd = budget_usd  # the viewer's `--budget`: warns, never refuses
        self.burn_window = burn_window
        self.lock = threading.RLock()
        self.processes: dict[str, ProcessState] = {}
        self.hosts: dict[str, HostRow] = {}  # the other machines watched, as their sources said
        self.history = History(history_capacity)
        self.payload_texts = PayloadTexts()  # prompts and responses read so far, for `/` to search
        self.window = window
        self.bucket = bucket
        self.series_length = series_length
        self.events = 0
        self.version = 0  # bumped by every change: lets the UI skip redrawing what did not move

    # --- what the sources say (through the collector) --------------------------------

    def attach(
        self,
        key: str,
        pid: int | None = None,
        status: str = CONNECTING_STATUS,
        host: str | None = None,
        stats_follow: bool = True,
    ) -> None:
        """A process a source is attaching to, or waiting for: its row says `status` until it connects.

        A row that failed or was lost is tried again; a running one is left as it is. One that
        ended is kept apart, with its numbers, calls and scopes, under `<key>#<when it ended>`,
        and a new row starts: a new process reuses the key (its pid, and so its socket's name).
        `host`: the machine it runs on, when not this one. `stats_follow`: its call events are each
        followed soon by a stats frame that counts them (a live stream), so a call shows once counted;
        False (a recording, which keeps fewer stats) shows each call as it comes.
        """
        self.version += 1
        process = self.processes.get(key)
        if process is not None and process.state == ENDED:
            self._keep_apart(process)
            process = None
        if process is None:
            process = self.processes[key] = ProcessState(
                key,
                pid,
                window=self.window,
                bucket=self.bucket,
                series_length=self.series_length,
                repricer=Repricer(self.prices),
                burn_window=self.burn_window,
                host=host,
                stats_follow=stats_follow,
            )
        if process.state != RUNNING:
            process.connecting(status)

    def connected(self, key: str, hello: Hello, host: str | None = None, stats_follow: bool = True) -> None:
        """The process said hello: it is running (its snapshot follows)."""
        self.version += 1
        process = self.processes.get(key)
        if process is None or process.state == ENDED:  # a source that skipped `attach`
            self.attach(key, hello.pid, host=host, stats_follow=stats_follow)
        self.processes[key].connected(hello)

    def fold(self, key: str, message: Mapping[str, Any] | Record) -> None:
        """Apply one message; a malformed one marks the process, never raises."""
        self.fold_many(key, [message])

    def fold_many(self, key: str, messages: list[Mapping[str, Any] | Record]) -> None:
        """Apply messages in order, each checked first (dspy_top/schema/) unless it already is a record.

        A message the schema refuses ends the process's stream: it is marked with the reason
        ("protocol error: ..."), nothing after it is folded, and the collector closes its
        connection. Other processes are untouched.
        """
        process = self.processes.get(key)
        if process is None or process.state == LOST:
            return
        now = self.clock()
        history = self.history
        before = process.events
        self.version += 1
        for message in messages:
            try:
                record = parse(message)
                if record is not None:
                    process.fold(record, now, history)
            except BadMessage as exc:
                kind = message.get("t") if isinstance(message, Mapping) else None
                process.settle(history)
                process.failed(f"malformed {kind!r} message: {exc}", now, protocol=True)
                break
            except Exception as exc:  # a fault of the viewer's own: the same, never an escape
                process.settle(history)
                process.failed(f"the viewer could not fold a message ({type(exc).__name__}: {exc})", now, protocol=True)
                break
        self.events += process.events - before  # a `calls` batch counts each call

    def restart(self, key: str, hello: Hello | None, stats_follow: bool = True) -> None:
        """The source starts this process's stream over from another point (a replay seeking back).

        What was folded of it (numbers, rates, calls, scopes, alerts) is forgotten and it is
        running again, as just connected with `hello`: the messages that follow (a `snapshot`
        of the state at that point first) rebuild it. The fold only moves forward; this is how
        a view goes back. A key not known yet is simply connected. With no `hello` the row
        goes altogether: at that point the process had not started.
        """
        if self.processes.pop(key, None) is not None:
            self.history.forget(key)
            self.version += 1
        if hello is not None:
            self.connected(key, hello, stats_follow=stats_follow)

    def failed(self, key: str, reason: str) -> None:
        """The process could not be attached to (failed), or its stream broke before its exit (lost)."""
        process = self.processes.get(key)
        if process is not None:
            self.version += 1
            process.settle(self.history)  # the stream ended: what it sent is all there will be
            process.failed(reason, self.clock())

    def refused(self, key: str, reason: str) -> None:
        """The process sent something the viewer refuses (a protocol error): nothing more is read from it."""
        process = self.processes.get(key)
        if process is not None:
            self.version += 1
            process.settle(self.history)
            process.failed(reason, self.clock(), protocol=True)

    def let_go(self, key: str) -> bool:
        """A process its source no longer watches: its row goes unless it spoke. True when it went.

        `dspy-top run` lets go of the shell wrapping a job once the job's python serves: it never
        sent anything. One that did keeps its row and numbers (False).
        """
        process = self.processes.get(key)
        if process is not None:
            if process.events > 0:
                return False
            del self.processes[key]
            self.history.forget(key)
            self.payload_texts.forget(key)
            self.version += 1
        return True

    def exit_status(self, pid: int, code: int) -> None:
        """`dspy-top run` saw its job exit with `code`: the job's ended process says so (its exit message cannot)."""
        for process in self.processes.values():
            if process.pid == pid and process.state == ENDED and process.status == "ended":
                process.status = f"ended (exit {code})"
                self.version += 1

    def payload_read(self, answer: PayloadAnswer, searching: bool = False) -> None:
        """A call's payload came back (for whoever asked): its text joins what `/` searches. Only while
        a search is on does the screen change with it (the filter may now match the call)."""
        self.payload_texts.add(answer)
        if searching:
            self.version += 1

    def dismiss(self, key: str) -> bool:
        """Forget a process that is no longer live (ended, lost or failed)."""
        process = self.processes.get(key)
        if process is None or process.live:
            return False
        del self.processes[key]
        self.history.forget(key)
        self.payload_texts.forget(key)
        self.version += 1
        return True

    def host(self, name: str, state: str, status: str, retry_at: float | None = None) -> None:
        """Another machine's connection, as its source says: connecting, connected or disconnected (model/hosts.py)."""
        previous = self.hosts.get(name)
        since = previous.since if previous is not None and previous.state == state else self.clock()
        row = HostRow(name, state, status, since, retry_at)
        if row != previous:
            self.hosts[name] = row
            self.version += 1

    def _keep_apart(self, process: ProcessState) -> None:
        old = process.key
        key = f"{old}#{int(process.ended_at or 0)}"
        copies = 1
        while key in self.processes:  # two ended the same second
            copies += 1
            key = f"{old}#{int(process.ended_at or 0)}.{copies}"
        del self.processes[old]
        process.rekey(key)
        self.processes[key] = process
        self.history.rekey(old, key)
        self.payload_texts.rekey(old, key)

    # --- questions ----------------------------------------------------------------------

    def settled(self) -> bool:
        """True when no process is on its way in: each sent its first message, or is no longer live."""
        return not any(p.live and p.events == 0 for p in self.processes.values())

    def awaiting_final_numbers(self) -> bool:
        """True while a process that has spoken is still live: its `exit` (its final numbers) may yet come."""
        return any(p.live and p.events > 0 for p in self.processes.values())

    def sent_exit(self, pid: int) -> bool:
        """Whether a process `pid` sent its exit message (its final numbers)."""
        return any(p.pid == pid and p.state == ENDED for p in self.processes.values())

    def payloads_kept(self, focus: str | None = None) -> dict[str, int]:
        """How many of its newest calls' payloads each running process (in view) keeps, for `/` to read."""
        return {
            key: p.hello.history_capacity
            for key, p in self.processes.items()
            if p.state == RUNNING and p.hello is not None and (focus is None or key == focus)
        }

    def module_chains(self) -> dict[str, tuple[str, ...]]:
        """Each module path's chain of classes (`RAG > ChainOfThought > Predict`), for the inspect screen."""
        return {path: module.chain for process in self.processes.values() for path, module in process.modules.items()}

    # --- the UI's side --------------------------------------------------------------

    def snapshot(
        self,
        focus: str | None = None,
        query: CallQuery | None = None,
        history_limit: int = 500,
    ) -> Snapshot:
        now = self.clock()
        if focus is not None and focus not in self.processes:
            focus = None
        in_view = [p for k, p in self.processes.items() if focus is None or k == focus]
        totals = total(p.totals for p in in_view)
        started = [p for p in in_view if p.started_at is not None]
        uptime = 0.0
        if started:
            # From the first start to now, or to the last end once every process has ended.
            end = now if any(p.live for p in started) else max(p.ended_at or now for p in started)
            uptime = max(0.0, end - min(p.started_at for p in started))
        tokens_per_sec = sum(p.tokens_per_sec(now) for p in in_view)
        output_per_sec = sum(p.output_tokens_per_sec(now) for p in in_view)
        cost_per_min = 60.0 * sum(p.cost_per_sec(now) for p in in_view)
        average = totals.tokens / uptime if uptime > 0 else 0.0
        count = self.series_length
        token_series = add_series([p.token_series.series(now, count) for p in in_view], count)
        token_series = [value / self.bucket for value in token_series]
        cost_series = add_series([p.cost_series.series(now, count) for p in in_view], count)

        leaves: dict[str, list[tuple[Any, float, bool]]] = {}
        for process in in_view:
            for path, module in process.modules.items():
                leaves.setdefault(path, []).append((module, process.module_tokens_per_sec(path, now), process.live))
        tree = build_tree(
            (
                LeafInput(
                    path,
                    parts[0][0].class_name,
                    parts[0][0].chain,
                    total(m.counters for m, _, _ in parts),
                    sum(rate for _, rate, _ in parts),
                    any(live for _, _, live in parts),
                )
                for path, parts in leaves.items()
            ),
            now,
        )
        models: dict[str, list[tuple[Counters, tuple[float, float]]]] = {}
        for process in in_view:
            for model, counters in process.models.items():
                models.setdefault(model, []).append((counters, process.model_tokens_per_sec(model, now)))
        model_rows = tuple(
            sorted(
                (
                    ModelRow(
                        model,
                        total(c for c, _ in parts),
                        model in self.prices,
                        tokens_per_sec=sum(r[0] for _, r in parts),
                        output_tokens_per_sec=sum(r[1] for _, r in parts),
                    )
                    for model, parts in models.items()
                ),
                key=lambda row: (-row.counters.cost_usd, -row.counters.calls, row.model),
            )
        )
        scopes = tuple(s for p in in_view for s in p.scopes.values())
        optimizers = derive_optimizers(scopes, now)
        unsettled = {key: p.unsettled for key, p in self.processes.items() if p.unsettled}
        calls = self.history.recent(history_limit, query, focus, self.payload_texts, unsettled)
        return Snapshot(
            at=now,
            focus=focus,
            processes=tuple(self._process_row(p, now) for p in self._ordered_processes()),
            totals=totals,
            uptime=uptime,
            tokens_per_sec=tokens_per_sec,
            tokens_per_sec_avg=average,
            output_tokens_per_sec=output_per_sec,
            series_bucket=self.bucket,
            cost_per_min=cost_per_min,
            token_series=tuple(token_series),
            cost_series=tuple(cost_series),
            modules=tree,
            models=model_rows,
            scopes=scopes,
            calls=calls,
            history_size=len(self.history) - sum(unsettled.values()),
            history_added=self.history.added,
            dropped=sum(p.dropped_events + p.dropped_viewer for p in in_view),
            internal_errors=sum(p.internal_errors for p in in_view),
            tool_calls=sum(p.tool_calls for p in in_view),
            burn=self._burn(in_view, totals, uptime, average, scopes, now),
            budget=self._viewer_budget(),
            job_budgets=tuple(b for b in (p.job_budget for p in self._ordered_processes()) if b is not None),
            optimizers=optimizers,
            hosts=tuple(self.hosts.values()),
        )

    def _burn(
        self, in_view: list[ProcessState], totals: Counters, uptime: float, tokens_avg: float, scopes: tuple, now: float
    ) -> Burn:
        tokens_per_sec = cost_per_sec = 0.0
        for process in in_view:
            tokens, cost = process.burn_per_sec(now)
            tokens_per_sec += tokens
            cost_per_sec += cost
        return Burn(
            window=self.burn_window,
            cost_per_min=60.0 * cost_per_sec,
            cost_per_min_avg=60.0 * totals.cost_usd / uptime if uptime > 0 else 0.0,
            tokens_per_sec=tokens_per_sec,
            tokens_per_sec_avg=tokens_avg,
            evaluation=eval_projection(scopes),
        )

    def _viewer_budget(self) -> ViewerBudget | None:
        # Against every process the viewer knows, whatever the focus: the bill is the whole bill.
        if self.budget_usd is None:
            return None
        spent = total(p.totals for p in self.processes.values())
        return ViewerBudget(self.budget_usd, spent.cost_usd, spent.cost_known)

    def _ordered_processes(self) -> list[ProcessState]:
        rank = {RUNNING: 0, CONNECTING: 1, ENDED: 2}
        return sorted(self.processes.values(), key=lambda p: (rank.get(p.state, 3), p.pid, p.key))

    @staticmethod
    def _process_row(process: ProcessState, now: float) -> ProcessRow:
        return ProcessRow(
            key=process.key,
            pid=process.pid,
            command=process.command,
            state=process.state,
            status=process.status,
            started_at=process.started_at,
            uptime=process.uptime(now),
            totals=process.totals,
            tokens_per_sec=process.tokens_per_sec(now),
            mechanism=process.hello.mechanism if process.hello else "",
            dropped=process.dropped_events + process.dropped_viewer,
            final_numbers=process.final_numbers,
            before_attach=process.before_attach,
            argv=tuple(process.hello.argv) if process.hello else (),
            host=process.host,
        )
