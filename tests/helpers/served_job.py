"""A served job without a process, for the recording and replay tests: the real Recorder, drained tick by tick
as the server thread would, its messages written by the real RecordingWriter on a fake clock."""

from __future__ import annotations

from pathlib import Path

import msgpack

from dspy_top import protocol
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.recording import RecordingWriter, caps
from dspy_top.recording import writer as writer_module

SYSTEM = (
    "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `reasoning` (str):\n"
    "2. `answer` (str):\nAll interactions will be structured in the following way.\n\n"
    "[[ ## question ## ]]\n{question}\n\n[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## answer ## ]]\n{answer}\n"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def normal(value):
    """A value as it comes back from msgpack (tuples become lists)."""
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False, strict_map_key=False)


def events_of(messages):
    """Messages as single events: `calls` batches split into their `call` maps, so batching does not matter."""
    out = []
    for message in messages:
        if message["t"] == "calls":
            out.extend(normal(protocol.call_dicts(message["fields"], message["rows"])))
        else:
            out.append(normal(message))
    return out


class ServedJob:
    """A real Recorder driven like a DSPy job (modules, an optimizer with trials, tools, a budget
    alert), served to a RecordingWriter as the server thread does: drain, stats, flush, each tick."""

    def __init__(self, path: Path, clock: FakeClock | None = None, cap_bytes: int = writer_module.DEFAULT_CAP):
        self.clock = clock or FakeClock()
        self.recorder = Recorder(history_capacity=100, queue_capacity=1_000_000, clock=self.clock, perf=self.clock)
        self.hello = {
            "t": "hello",
            "v": 2,
            "pid": 4242,
            "ppid": 1,
            "argv": ["optimize.py", "--trials", "3"],
            "cwd": "/work",
            "started_at": self.clock(),
            "history_capacity": 100,
        }
        self.writer = RecordingWriter.create(path, self.hello, cap_bytes=cap_bytes, clock=self.clock)
        self.sent: list[dict] = []  # every event the writer was given, in order
        self.payloads: dict[int, dict] = {}
        self.last_numbers = None
        self.stats_at = float("-inf")
        self.calls_since_stats = 0
        self.skipped_stats = 0
        self.give({"t": "snapshot", **self.recorder.snapshot()})

    def give(self, message):
        """Hand the writer a message, and expect it back unless it is a `stats` the writer leaves out:
        one too soon after the last stored for the calls since (see caps.STATS_CALLS), or a heartbeat."""
        self.writer.add(message)
        if message["t"] in ("calls", "call"):
            self.calls_since_stats += len(message.get("rows", (None,)))
        if message["t"] == "stats":
            calls, waited = self.calls_since_stats, self.clock() - self.stats_at
            if (
                calls < caps.STATS_CALLS
                and not (calls and waited >= caps.STATS_SLOW_EVERY)
                and waited < caps.STATS_IDLE_EVERY
            ):
                self.skipped_stats += 1
                return
            numbers = normal({k: v for k, v in message.items() if k not in ("t", "at", "dropped_viewer")})
            if numbers == self.last_numbers:
                self.skipped_stats += 1
                return
            self.last_numbers, self.stats_at, self.calls_since_stats = numbers, self.clock(), 0
        self.sent.append(normal(message))

    def tick(self):
        events = self.recorder.drain()
        self.sent.extend(
            events_of([protocol.call_dicts(protocol.CALL_FIELDS, [e])[0] if type(e) is tuple else e for e in events])
        )
        self.calls_since_stats += sum(1 for e in events if type(e) is tuple)
        self.writer.add_events(events)
        self.give({"t": "stats", **self.recorder.stats()})
        self.writer.flush()

    def calls(self, count, scopes=(), payloads=True, per_tick=50):
        for i in range(count):
            path = ("Solver.plan", "Solver.solve.predict")[i % 2]
            record = self.recorder.begin(path, "Predict", ("Solver", "Predict"), "openai/gpt-4o-mini", scopes=scopes)
            self.clock.now += 0.01
            self.recorder.finish(
                record,
                prompt_tokens=100 + i % 13,
                completion_tokens=20 + i % 5,
                cached_tokens=i % 3,
                cost=None if i % 17 == 0 else 0.0001 * (1 + i % 4),
                cache_hit=i % 11 == 0,
                saved=0.0002 if i % 11 == 0 else None,
            )
            if payloads:
                payload = {
                    "model": "openai/gpt-4o-mini",
                    "model_type": "chat",
                    "messages": [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": f"[[ ## question ## ]]\nWhat is {i} + 7?"},
                    ],
                    "options": {"temperature": 0.0, "api_key": "[redacted]"},
                    "outputs": [f"[[ ## reasoning ## ]]\nAdd.\n\n[[ ## answer ## ]]\n{i + 7}"],
                    "usage": {"prompt_tokens": 100 + i % 13, "completion_tokens": 20},
                    "cache_hit": False,
                }
                self.payloads[record.id] = normal(payload)
                self.writer.add_payload(record.id, payload)
            if i % per_tick == per_tick - 1:
                self.tick()
        self.tick()

    def optimizer(self, trials=3, calls_per_trial=40):
        self.recorder.scope_start(
            "compile",
            "compile-1",
            {
                "class": "BootstrapFewShotWithRandomSearch",
                "params": {"num_candidate_sets": trials},
                "parent": None,
                "valset": 10,
                "trainset": 20,
                "arguments": {},
            },
        )
        for trial in range(trials):
            scope = f"eval-{trial + 1}"
            self.recorder.scope_start(
                "eval",
                scope,
                {"parent": "compile-1", "total": 10, "done": 0, "score_sum": 0.0, "program": "Solver", "metadata": {}},
            )
            self.calls(calls_per_trial, scopes=("compile-1", scope))
            self.recorder.eval_progress(scope, 10, 4.0 + trial)
            self.tick()
            self.recorder.scope_end(scope, {"score": 40.0 + 10 * trial})
            self.recorder.tool("search", "Solver.react", 0.01, None)
        self.recorder.scope_end("compile-1", {})
        self.recorder.budget_alert(
            {
                "level": 80,
                "scope": "total",
                "name": "",
                "spent_usd": 0.8,
                "budget_usd": 1.0,
                "action": "warn",
                "message": "80% of the budget",
            }
        )
        self.tick()

    def close(self):
        exit_message = {"t": "exit", "at": self.clock(), "stats": self.recorder.stats()}
        self.sent.append(normal(exit_message))
        self.writer.close(exit_message)


def recorded(tmp_path, name="run.dtop", calls=1200, close=True, **kwargs) -> ServedJob:
    job = ServedJob(tmp_path / name, **kwargs)
    job.calls(calls)
    job.optimizer()
    if close:
        job.close()
    return job
