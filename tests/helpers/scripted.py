"""A fleet filled from scripted messages on a pinned clock: deterministic screens for snapshot tests."""

from __future__ import annotations

from pathlib import Path

from dspy_top import latency
from dspy_top.model import Fleet
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.protocol import Hello

NOW = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC
RUNTIME_DIR = Path("/run/user/1000/dspy-top")


class PinnedClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counters(
    calls,
    prompt,
    completion,
    cost,
    *,
    hits=0,
    errors=0,
    retries=0,
    unpriced=0,
    in_flight=0,
    latencies=(0.8, 1.1, 2.9),
    last_at=NOW - 1,
    saved=0.0,
):
    hist: dict[int, int] = {}
    for index in range(calls):
        bucket = latency.bucket_of(latencies[index % len(latencies)])
        hist[bucket] = hist.get(bucket, 0) + 1
    return {
        "calls": calls,
        "errors": errors,
        "retries": retries,
        "cache_hits": hits,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "unpriced_calls": unpriced,
        "cost_saved_usd": saved,
        "latency_s": 1.0 * calls,
        "in_flight": in_flight,
        "latency_sketch": latency.encode(hist),
        "last_at": last_at,
    }


def _hello(pid, argv, started):
    return Hello(
        version=1,
        pid=pid,
        argv=argv,
        cwd="/work",
        started_at=started,
        python="3.11.7",
        dspy="3.4.1",
        dspy_top="0.1.0",
        mechanism="execution-hooks",
        history_capacity=1000,
    )


def _stats(totals, modules, models, scopes=(), dropped=0):
    return {
        "t": "stats",
        "at": NOW,
        "totals": totals,
        "modules": modules,
        "models": models,
        "scopes": list(scopes),
        "dropped_events": dropped,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 0,
        "tool_errors": 0,
    }


def _call(
    call_id,
    path,
    start,
    latency_s,
    prompt,
    completion,
    cost,
    *,
    model="openai/gpt-4o-mini",
    cache=False,
    error=None,
    retries=0,
):
    return {
        "t": "call",
        "id": call_id,
        "seq": call_id,
        "start": start,
        "latency": latency_s,
        "path": path,
        "module_class": "Predict",
        "model": model,
        "response_model": None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "cost_saved_usd": 0.0003 if cache else None,
        "cache_hit": cache,
        "retries": retries,
        "error": error,
        "error_message": "rate limited" if error else None,
        "scopes": [],
        "stream": False,
    }


def scripted_fleet(*, processes: int = 2, broken: bool = False, empty: bool = False) -> tuple[Fleet, PinnedClock]:
    clock = PinnedClock(NOW - 10)
    fleet = Fleet(clock)
    if empty:
        clock.now = NOW
        return fleet, clock
    key = "/run/user/1000/dspy-top/41822.sock"
    fleet.attach(key, 41822)
    fleet.connected(key, _hello(41822, ["optimize.py", "--auto", "light"], NOW - 847))
    gq = counters(1205, 700_000, 61_000, 0.82, hits=230, in_flight=4)
    ans = counters(1205, 1_220_000, 127_000, 1.59, hits=351, errors=2, retries=3, in_flight=5)
    judge = counters(804, 310_000, 22_000, 0.46, errors=1, last_at=NOW - 60)
    modules = [
        {"path": "RAG.generate_query.predict", "class": "Predict", "chain": ["RAG", "ChainOfThought", "Predict"], **gq},
        {"path": "RAG.answer", "class": "Predict", "chain": ["RAG", "Predict"], **ans},
        {"path": "Judge", "class": "Predict", "chain": ["Judge"], **judge},
    ]
    totals = counters(3214, 2_230_000, 210_000, 2.87, hits=581, errors=3, retries=3, in_flight=9, saved=0.41)
    models = [
        {"model": "openai/gpt-4o-mini", **counters(3106, 2_100_000, 200_000, 2.79, hits=581, errors=2)},
        {"model": "openai/gpt-4o", **counters(108, 130_000, 10_000, 0.08, errors=1)},
    ]
    scopes = [
        {
            "id": "compile-1",
            "kind": "compile",
            "state": "running",
            "start": NOW - 600,
            "class": "MIPROv2",
            "usage": counters(2000, 1_000_000, 100_000, 1.9),
        },
        {
            "id": "eval-7",
            "kind": "eval",
            "state": "running",
            "start": NOW - 30,
            "total": 100,
            "done": 37,
            "score_sum": 28.9,
            "parent": "compile-1",
        },
    ]
    calls = []
    paths = ["RAG.generate_query.predict", "RAG.answer", "Judge"]
    for i in range(1, 31):
        path = paths[i % 3]
        calls.append(
            _call(
                i,
                path,
                NOW - 40 + i,
                0.7 + (i % 5) * 0.3,
                800 + 13 * i,
                30 + i,
                0.0002 + i * 1e-5,
                model="openai/gpt-4o" if path == "Judge" else "openai/gpt-4o-mini",
                cache=i % 7 == 0,
                error="RateLimitError" if i == 24 else None,
                retries=2 if i == 24 else 0,
            )
        )
    fleet.fold(
        key,
        {
            "t": "snapshot",
            "seq": 30,
            "calls": calls,
            "stats": _stats(counters(3000, 2_000_000, 190_000, 2.60), modules, models, scopes),
        },
    )
    # Ten seconds of live stats build the rates and the sparklines.
    for step in range(1, 11):
        clock.now = NOW - 10 + step
        grow = step / 10
        totals_now = dict(
            totals,
            calls=int(3000 + 214 * grow),
            prompt_tokens=int(2_000_000 + 230_000 * grow),
            completion_tokens=int(190_000 + 20_000 * grow) + (step % 3) * 900,
            cost_usd=2.60 + 0.27 * grow,
        )
        fleet.fold(key, _stats(totals_now, modules, models, scopes, dropped=0))
    fleet.fold(key, _stats(totals, modules, models, scopes))
    if processes > 1:
        other = "/run/user/1000/dspy-top/41907.sock"
        fleet.attach(other, 41907)
        fleet.connected(other, _hello(41907, ["eval.py"], NOW - 151))
        fleet.fold(
            other,
            {
                "t": "snapshot",
                "seq": 2,
                "stats": _stats(
                    counters(12, 9_000, 800, 0.0, unpriced=12),
                    [{"path": "(direct)", "class": "", "chain": [], **counters(12, 9_000, 800, 0.0, unpriced=12)}],
                    [{"model": "local/llama-3", **counters(12, 9_000, 800, 0.0, unpriced=12)}],
                ),
                "calls": [_call(1, "(direct)", NOW - 20, 0.4, 750, 66, None, model="local/llama-3")],
            },
        )
        fleet.fold(
            other,
            {
                "t": "exit",
                "at": NOW - 5,
                "stats": _stats(
                    counters(12, 9_000, 800, 0.0, unpriced=12),
                    [{"path": "(direct)", "class": "", "chain": [], **counters(12, 9_000, 800, 0.0, unpriced=12)}],
                    [{"model": "local/llama-3", **counters(12, 9_000, 800, 0.0, unpriced=12)}],
                ),
            },
        )
    if broken:
        bad = "/run/user/1000/dspy-top/50001.sock"
        fleet.attach(bad, 50001)
        fleet.failed(bad, "process speaks dspy-top protocol version 2; this viewer speaks 1")
    clock.now = NOW
    return fleet, clock


PAYLOAD = {
    "model": "openai/gpt-4o-mini",
    "messages": [
        {
            "role": "system",
            "content": "Your input fields are:\n1. `question` (str):\n2. `query` (str):\n"
            "Your output fields are:\n1. `answer` (str):",
        },
        {"role": "user", "content": "[[ ## question ## ]]\nWhat is 17 + 25?\n\n[[ ## query ## ]]\nsum 17 25"},
    ],
    "outputs": [
        {
            "text": "[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]",
            "tool_calls": [{"function": {"name": "calculator", "arguments": '{"expr": "17+25"}'}}],
        }
    ],
    "usage": {"prompt_tokens": 1204, "completion_tokens": 87, "total_tokens": 1291},
    "options": {"temperature": 0.0, "api_key": "[redacted]"},
    "cost_usd": 0.0003,
    "cache_hit": False,
}


class ScriptedCollector:
    """Stands in for the collector: answers payload requests at once, from PAYLOAD."""

    where = str(RUNTIME_DIR)

    def __init__(self, fleet: Fleet, payload=PAYLOAD) -> None:
        self.fleet = fleet
        self.payload = payload
        self.on_payload = None
        self.requests: list[tuple[str, int]] = []

    def start(self):
        return self

    def stop(self) -> None:
        pass

    def dismiss(self, key: str) -> bool:
        with self.fleet.lock:
            return self.fleet.dismiss(key)

    def request_payload(self, process: str, call_id: int) -> None:
        self.requests.append((process, call_id))
        self.on_payload(PayloadAnswer(process, call_id, self.payload))
