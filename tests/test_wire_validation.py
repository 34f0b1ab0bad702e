"""One bad number from one process: that process says "protocol error: <reason>", the rest keep updating,
and nothing escapes the fold, the collector thread, batch text, batch JSON or the screen (issue 20, item 5)."""

from __future__ import annotations

import io
import json
import math
import threading
import time

import pytest

from dspy_top import latency, protocol, schema
from dspy_top.model import Fleet
from dspy_top.schema import values
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.viewer import batch
from tests.helpers.fake_server import FakeServer, hello, snapshot, stats
from tests.helpers.jobs import runtime_dir, start_job

pytestmark = pytest.mark.timeout(120)

INF = math.inf


def _batch_row(call_id):
    row = dict(
        zip(
            protocol.CALL_FIELDS,
            [
                1,
                1,
                time.time(),
                0.5,
                "Fake.predict",
                "Predict",
                "openai/fake",
                None,
                10,
                2,
                0,
                0,
                0.001,
                None,
                False,
                0,
                None,
                None,
                [],
                False,
                True,
            ],
        )
    )
    row["id"] = call_id
    return {"t": "calls", "fields": list(protocol.CALL_FIELDS), "rows": [list(row.values())]}


BAD = {
    "dropped_events is inf": (stats(3, dropped_events=INF), "dropped_events"),
    "totals.calls is inf": ({**stats(3), "totals": {"calls": INF}}, "calls"),
    "a call id is inf": (_batch_row(INF), "call id"),
    "a latency bucket of 10**6": ({**stats(3), "totals": {"calls": 3, "latency_hist": {10**6: 3}}}, "latency bucket"),
    "a sketch bucket past the last": (
        {**stats(3), "totals": {"calls": 3, "latency_sketch": [latency.BUCKETS, 3]}},
        "latency bucket",
    ),
    "a sketch going backwards": (
        {**stats(3), "totals": {"calls": 3, "latency_sketch": [40, 1, -2, 2]}},
        "latency_sketch",
    ),
    "a sketch of odd length": ({**stats(3), "totals": {"calls": 3, "latency_sketch": [40, 1, 2]}}, "latency_sketch"),
    "a sketch count is negative": ({**stats(3), "totals": {"calls": 3, "latency_sketch": [40, -1]}}, "latency bucket"),
    "exit.at is inf": ({"t": "exit", "at": INF, "stats": stats(3)}, "exit at"),
    "a cost is NaN": ({**stats(3), "totals": {"calls": 3, "cost_usd": math.nan}}, "cost_usd"),
    "tokens are negative": ({**stats(3), "totals": {"calls": 3, "prompt_tokens": -5}}, "prompt_tokens"),
    "a scope's done is a string": ({"t": "eval_progress", "id": "eval-1", "done": "many"}, "done"),
}


def _attached(fleet, key, pid):
    fleet.attach(key, pid)
    fleet.connected(key, schema.hello(hello(pid)))
    fleet.fold(key, snapshot(1))


def _render(fleet) -> str:
    shot = fleet.snapshot(history_limit=50)
    json.dumps(batch.snapshot_json(shot), allow_nan=False)  # no NaN or infinity reaches the JSON either
    return batch.snapshot_text(shot)


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_value_marks_its_process_with_the_reason_and_the_others_keep_updating(case):
    message, field = BAD[case]
    fleet = Fleet()
    _attached(fleet, "bad", 101)
    _attached(fleet, "good", 202)
    fleet.fold("bad", message)  # never raises
    fleet.fold("good", stats(9))
    rows = {row.key: row for row in fleet.snapshot().processes}
    assert rows["bad"].state == "lost"
    assert rows["bad"].status.startswith("protocol error: malformed") and field in rows["bad"].status
    assert rows["bad"].final_numbers == "not received"
    assert rows["good"].state == "running" and rows["good"].totals.calls == 9
    text = _render(fleet)
    assert "protocol error" in text and "Final numbers not received from pid 101" in text
    # Nothing from the bad process is folded after its bad message.
    fleet.fold("bad", stats(50))
    assert {row.key: row for row in fleet.snapshot().processes}["bad"].totals.calls == 1


def test_the_schema_refuses_out_of_range_values_and_keeps_good_ones_exact():
    good = schema.parse(stats(3))
    assert good.totals.calls == 3 and good.totals.latency_hist == latency.from_legacy({10: 3})
    assert schema.parse({"t": "from-a-newer-process", "x": INF}) is None  # unknown types are skipped
    for message, _ in BAD.values():
        with pytest.raises(schema.BadMessage):
            schema.parse(message)
    # Over-long strings are cut, not refused: a long model name is not a protocol error.
    long = schema.parse(stats(1, model="m" * 5000))
    assert len(long.models[0][0]) == values.MAX_NAME and long.models[0][0].endswith("…")


@pytest.mark.slow
def test_a_bad_frame_on_a_real_socket_marks_only_its_process_and_the_collector_lives_on():
    directory = runtime_dir()
    fake = FakeServer(directory / "fake.sock", [hello(434343), snapshot(7)])
    job = start_job(directory)
    try:
        truth = job.run(2)
        fleet = Fleet()
        collector = Collector(fleet, [local_sockets(sockets=[fake.path, job.socket_path], rescan_every=0.2)]).start()
        try:
            assert collector.wait_settled(20)
            fake.send(stats(8, dropped_events=INF))  # what killed the collector thread before
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and fleet.processes[str(fake.path)].state == "running":
                time.sleep(0.05)
            fake_row = fleet.processes[str(fake.path)]
            assert fake_row.state == "lost"
            assert "protocol error: malformed 'stats' message: stats dropped_events is inf" in fake_row.status
            # The real job keeps updating: the collector thread is alive and reading.
            truth = job.run(3)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with fleet.lock:
                    shown = fleet.processes[str(job.socket_path)].totals.calls
                if shown == truth["totals"]["calls"]:
                    break
                time.sleep(0.05)
            assert shown == truth["totals"]["calls"]
            assert collector._thread.is_alive() and collector.faults == 0
        finally:
            collector.stop()
    finally:
        job.kill()
        fake.stop()


def test_batch_mode_survives_an_exit_at_infinity_and_a_huge_latency_bucket(capsys):
    directory = runtime_dir()
    fakes = [
        FakeServer(directory / "exit.sock", [hello(515151), snapshot(4), {"t": "exit", "at": INF, "stats": stats(4)}]),
        FakeServer(
            directory / "bucket.sock",
            [hello(525252), snapshot(4), {**stats(5), "totals": {"calls": 5, "latency_hist": {10**6: 5}}}],
        ),
    ]
    try:
        for as_json in (False, True):
            out = io.StringIO()
            code = batch.run([local_sockets(sockets=[f.path for f in fakes])], iterations=1, as_json=as_json, out=out)
            assert code == 0
            text = out.getvalue()
            if as_json:
                shown = {p["pid"]: p for p in json.loads(text)["processes"]}
                assert all(p["final_numbers"] == "not received" for p in shown.values())
                assert "exit at is inf" in shown[515151]["status"]
            else:
                assert "Final numbers not received from pid 515151" in text
        assert "protocol error" in capsys.readouterr().err
    finally:
        for fake in fakes:
            fake.stop()


def test_the_collector_thread_survives_a_fault_of_its_own():
    fleet = Fleet()
    collector = Collector(fleet, [local_sockets(directory=runtime_dir(), rescan_every=0.05)])
    calls = []

    def broken_scan():
        calls.append(1)
        raise RuntimeError("a bug in the viewer")

    collector.sources[0].scan = broken_scan
    notices = []
    collector.on_notice = notices.append
    collector.start()
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls) >= 3 and collector._thread.is_alive()
        assert collector.faults >= 3 and "a bug in the viewer" in notices[0]
    finally:
        collector.stop()
    assert not any(t.name == "dspy-top-collector" and t.is_alive() for t in threading.enumerate())


def test_a_recording_holding_bad_numbers_is_replayed_exported_and_listed_without_a_traceback(tmp_path):
    """A recording holds what its process sent, bad values too (an exit at infinity, NaN costs, an
    infinite call id, a start that is a string): replay, export and runs read it like the wire's
    messages, each bad value costing itself only: no traceback, no hang, no NaN in JSON."""
    import os
    import subprocess
    import sys

    from dspy_top.recording import RecordingWriter
    from tests.helpers.jobs import REPO

    now = time.time()
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    path = runs / "bad.dtop"
    writer = RecordingWriter.create(path, hello(4242))
    writer.add(snapshot(2))
    bad_stats = stats(3)
    bad_stats["dropped_events"] = INF
    bad_stats["totals"]["cost_usd"] = math.nan
    writer.add(bad_stats)
    fields = ["seq", "id", "start", "latency", "path", "prompt_tokens", "cost_usd"]
    rows = [[1, INF, now, 1e300, "P.predict", -5, math.nan], [2, "x", "soon", None, 7, 2**70, INF], [3, 9, now, 0.5]]
    writer.add({"t": "calls", "fields": fields, "rows": rows})
    writer.add({"t": "stats", "at": math.nan, "totals": {"calls": "many"}, "latency": {"buckets": {10**6: 3}}})
    writer.add_payload(9, {"messages": [{"role": "user", "content": "hi"}], "outputs": [math.nan]})
    writer.close({"t": "exit", "at": INF, "stats": bad_stats})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DSPY_TOP", None)

    def strict(text: str) -> list:
        def refuse(constant):
            raise AssertionError(f"{constant} is not JSON")

        return [json.loads(line, parse_constant=refuse) for line in text.splitlines() if line.strip()]

    commands = {
        "replay -b": ["replay", "-b", "-n", "1", str(path)],
        "replay -b --json": ["replay", "-b", "--json", "-n", "1", str(path)],
        "export": ["export", str(path), "--payloads"],
        "export csv": ["export", str(path), "--format", "csv"],
        "export inspect": ["export", str(path), "--format", "inspect", "-n", "3"],
        "runs": ["runs", "--dir", str(runs)],
        "runs --json": ["runs", "--json", "--dir", str(runs)],
    }
    for name, command in commands.items():
        done = subprocess.run(
            [sys.executable, "-m", "dspy_top", *command], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
        )
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, (name, done.stderr[-3000:])
        if name in ("replay -b --json", "export", "runs --json"):
            strict(done.stdout)
        if name == "export":
            assert [row["call_id"] for row in strict(done.stdout)] == [None, "x", 9]  # every row, bad values null
