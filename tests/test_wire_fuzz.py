"""Fuzz: 10,000+ random and mutated messages, through the wire encoding, the fold and every renderer.

Seeded and bounded: the same messages every run. Each message is folded into a fleet of four
processes (a process refused for a protocol error is replaced, so the fuzz keeps reaching deep);
every few messages the fleet is rendered as batch text and batch JSON (no NaN allowed), and every
five hundred by the real Textual app's widgets (the main screen, the optimizer view and the inspector,
fed the fuzzed payloads). Nothing may escape, and what reaches the screen holds no escape character.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time

import msgpack
import pytest

from dspy_top import protocol, schema
from dspy_top.model import Fleet
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.viewer import batch
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.call_view import body, facts
from dspy_top.viewer.screens.inspect import InspectScreen
from tests.helpers import scripted
from tests.helpers.fake_server import HOSTILE, hello
from tests.helpers.screen import assert_inert, screen_text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SEED = 20
MESSAGES = 10_000
TEXT_EVERY = 4  # messages between two renders as batch text and JSON
APP_EVERY = 500  # messages between two renders by the app's widgets (the optimizer view every other time)
PROCESSES = 4
TIME_LIMIT = 180.0  # seconds: the fuzz stops early rather than run away (it takes far less)

HOSTILE_VALUES = [
    math.inf,
    -math.inf,
    math.nan,
    -1,
    -0.5,
    0,
    1e308,
    10**6,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    True,
    False,
    None,
    "",
    "x" * 5000,
    HOSTILE,
    "\x9b31m",
    "\u202e",
    "[bold]markup[/]",
    "[/]",
    [],
    {},
    [1, "a", None],
    {"a": {"b": [1, 2]}},
    b"\xff\xfe",
    "nan",
    3.5,
    [[[[[]]]]],
    {1: 2},
    {None: 1},
    -1e-300,
    1e11 + 1,
    "eval-1",
]
TYPES = [
    "stats",
    "calls",
    "call",
    "snapshot",
    "eval_start",
    "eval_progress",
    "eval_end",
    "compile_start",
    "compile_end",
    "budget",
    "exit",
    "error",
    "payload",
    "tool",
    "hello",
    "something-new",
]


def templates(now: float) -> list[dict]:
    """Valid messages of every type the viewer folds, to mutate."""
    c = scripted.counters
    modules = [
        {
            "path": "RAG.answer",
            "class": "Predict",
            "chain": ["RAG", "Predict"],
            "by_model": {"openai/gpt-4o-mini": [100, 10, 0]},
            **c(5, 500, 50, 0.01),
        },
        {"path": "(direct)", "class": "", "chain": [], **c(2, 200, 20, 0.0, unpriced=2)},
    ]
    models = [{"model": "openai/gpt-4o-mini", **c(7, 700, 70, 0.01)}]
    scopes = [
        {
            "id": "compile-1",
            "kind": "compile",
            "state": "running",
            "start": now - 60,
            "class": "MIPROv2",
            "params": {"auto": "light", "num_threads": 4},
            "arguments": {"num_trials": 7},
            "predictors": 2,
            "trainset": 20,
            "valset": 10,
            "usage": c(5, 500, 50, 0.01),
        },
        {
            "id": "eval-1",
            "kind": "eval",
            "state": "running",
            "start": now - 30,
            "total": 10,
            "done": 3,
            "score_sum": 2.0,
            "parent": "compile-1",
            "metadata": {"metric_key": "eval_full"},
        },
    ]
    budget = {
        "on_exceed": "stop",
        "limits": [{"scope": "total", "name": "", "usd": 1.0}, {"scope": "module", "name": "RAG.answer", "usd": 0.5}],
        "alerts": [
            {
                "at": now,
                "level": 80,
                "scope": "total",
                "name": "",
                "spent_usd": 0.8,
                "budget_usd": 1.0,
                "action": "warn",
                "message": "80% spent",
            }
        ],
    }
    stats = {
        "t": "stats",
        "at": now,
        "totals": c(7, 700, 70, 0.01),
        "modules": modules,
        "models": models,
        "scopes": scopes,
        "dropped_events": 0,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 1,
        "tool_errors": 0,
        "budget": budget,
    }
    call = {
        **scripted._call(1, "RAG.answer", now - 5, 0.8, 100, 10, 0.001, error="RateLimitError"),
        "scopes": ["compile-1", "eval-1"],
    }
    row = [call.get(name) for name in protocol.CALL_FIELDS]
    return [
        stats,
        {"t": "calls", "fields": list(protocol.CALL_FIELDS), "rows": [row, list(row)]},
        call,
        {"t": "snapshot", "seq": 3, "calls": [call], "stats": stats},
        {"t": "eval_start", **scopes[1]},
        {"t": "eval_progress", "id": "eval-1", "done": 5, "score_sum": 4.0},
        {
            "t": "eval_end",
            "id": "eval-1",
            "kind": "eval",
            "state": "done",
            "end": now,
            "score": 60.0,
            "usage": c(3, 300, 30, 0.005),
        },
        {"t": "compile_start", **scopes[0]},
        {"t": "compile_end", "id": "compile-1", "kind": "compile", "state": "failed", "end": now, "error": "boom"},
        {"t": "budget", **budget["alerts"][0]},
        {"t": "exit", "at": now, "stats": stats, "returncode": 0},
        {"t": "error", "reason": "refused"},
        {"t": "payload", "req": 1, "id": 1, "found": True, "payload": scripted.PAYLOAD},
        {"t": "tool", "name": "search", "path": "RAG", "start": now, "latency": 0.1, "error": None},
        hello(4321, ["job.py", "--flag", "value"]),
    ]


def slots(value, path=()):
    """Every (container, key) inside a message, to mutate one of them."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield value, key
            yield from slots(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield value, index
            yield from slots(item, path + (index,))


def junk(rng: random.Random, depth: int = 0):
    """A random msgpack-able value."""
    if depth > 3 or rng.random() < 0.5:
        return rng.choice(HOSTILE_VALUES)
    if rng.random() < 0.5:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["t", "id", "calls", "stats", "rows", "fields", "x", 7]): junk(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def message(rng: random.Random, bases: list[bytes]) -> dict:
    roll = rng.random()
    if roll < 0.1:  # from scratch: a typed map of junk
        return {
            "t": rng.choice(TYPES),
            **{
                rng.choice(["stats", "rows", "fields", "at", "id", "calls", "payload", "found", "req"]): junk(rng)
                for _ in range(3)
            },
        }
    m = msgpack.unpackb(rng.choice(bases), strict_map_key=False)  # a fresh copy (faster than deepcopy)
    if roll < 0.2:
        return m  # a valid one now and then, so processes live long enough to reach every path
    places = list(slots(m))
    for _ in range(rng.randint(1, 3)):
        container, key = rng.choice(places)
        if rng.random() < 0.15 and isinstance(container, dict):
            container.pop(key, None)
        else:
            try:
                container[key] = junk(rng)
            except (IndexError, KeyError):
                pass
    return m


def over_the_wire(m: dict) -> dict | None:
    """As a viewer receives it: packed and decoded (values msgpack cannot carry are skipped)."""
    try:
        body = msgpack.packb(m, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return None
    try:
        return protocol.decode_body(body)
    except protocol.ProtocolError:
        return None


def test_ten_thousand_fuzzed_messages_never_escape_the_fold_or_any_renderer():
    rng = random.Random(SEED)
    clock = scripted.PinnedClock()
    fleet = Fleet(clock, history_capacity=500)
    bases = [msgpack.packb(m, use_bin_type=True) for m in templates(clock.now)]
    keys = [f"/fuzz/{n}.sock" for n in range(PROCESSES)]
    payloads: list[dict] = []
    stats = {"messages": 0, "refused": 0, "renders": 0, "app_renders": 0}

    def fresh(key: str, n: int) -> None:
        fleet.processes.pop(key, None)
        fleet.attach(key, 1000 + n)
        fleet.connected(key, schema.hello(hello(1000 + n, [f"job{n}.py", HOSTILE])))

    for n, key in enumerate(keys):
        fresh(key, n)

    async def main() -> None:
        app = TopApp(fleet, None, delay=3600, start_collector=False)
        async with app.run_test(size=(120, 40)) as pilot:
            started = time.monotonic()
            while stats["messages"] < MESSAGES and time.monotonic() - started < TIME_LIMIT:
                wire = over_the_wire(message(rng, bases))
                if wire is None:
                    continue
                stats["messages"] += 1
                clock.now += 0.05
                n = rng.randrange(PROCESSES)
                key = keys[n]
                try:
                    record = schema.parse(wire)
                except schema.BadMessage:
                    record = None
                if isinstance(record, schema.PayloadRecord) and record.payload is not None:
                    payloads.append(dict(record.payload))
                if wire.get("t") == "hello":  # read on connecting: a bad one is refused, a good one shown
                    try:
                        fleet.connected(key, schema.hello(wire))
                    except protocol.ProtocolError:
                        pass
                fleet.fold_many(key, [wire])  # must never raise
                if fleet.processes[key].state in ("lost", "ended"):
                    stats["refused"] += fleet.processes[key].state == "lost"
                    fresh(key, n)
                if stats["messages"] % TEXT_EVERY == 0:
                    render_text()
                if stats["messages"] % APP_EVERY == 0:
                    await render_app(app, pilot)
            render_text()
            await render_app(app, pilot)

    def render_text() -> None:
        stats["renders"] += 1
        snapshot = fleet.snapshot(history_limit=0)  # as batch mode takes it
        assert_inert(batch.snapshot_text(snapshot), "batch text")
        json.dumps(batch.snapshot_json(snapshot), allow_nan=False)

    async def render_app(app, pilot) -> None:
        stats["app_renders"] += 1
        app.action_optimizers()  # the optimizer view and the main one in turn
        app.refresh_now()
        await pilot.pause()
        assert_inert(screen_text(app), "the screen")
        snapshot = app.snapshot
        for call in snapshot.calls[-3:]:
            assert_inert(facts(call).plain, "the inspector's facts")
        if payloads:
            for block in body(payloads[-1]):
                assert_inert(block.plain, "the inspector's body")
        if stats["app_renders"] % 4 == 0 and snapshot.calls:
            await inspect(app, pilot, snapshot)

    async def inspect(app, pilot, snapshot) -> None:
        screen = InspectScreen(list(snapshot.calls), len(snapshot.calls) - 1, {})
        app.push_screen(screen)
        await pilot.pause()
        call = snapshot.calls[-1]
        screen.show_answer(PayloadAnswer(call.process, call.id, payloads[-1] if payloads else None, HOSTILE))
        await pilot.pause()
        assert_inert(screen_text(app), "the inspector")
        app.pop_screen()
        await pilot.pause()

    asyncio.run(main())
    assert stats["messages"] >= MESSAGES, stats
    assert stats["refused"] > 1000 and stats["renders"] >= MESSAGES // TEXT_EVERY, stats  # it reached both sides
