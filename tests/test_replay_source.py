"""The replay source (dspy_top/sources/replay.py) under the real collector and fleet, its clock and timeline.

Recordings here come from the real Recorder and RecordingWriter driven like a DSPy job with an
optimizer (tests/helpers/served_job.py's ServedJob, on a fake clock, small checkpoints), so
every moment is known exactly; tests/test_replay.py replays real DSPy jobs.
"""

from __future__ import annotations

import io
import json
import math

import pytest

from dspy_top.model import Fleet
from dspy_top.recording import Recording
from dspy_top.sources import replay_telling
from dspy_top.sources.base import CannotRequest
from dspy_top.sources.collector import Collector
from dspy_top.sources.replay import CANNOT_STOP, RecordingSource
from dspy_top.sources.replay_clock import ReplayClock
from dspy_top.sources.replay_timeline import Goto, Timeline, TrialMark, parse_goto
from dspy_top.viewer.replay import batch
from tests.helpers.fake_server import hello, stats
from tests.helpers.replaying import Replaying, same_totals, stats_at
from tests.helpers.served_job import FakeClock, ServedJob, normal, recorded
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


# --- the clock -----------------------------------------------------------------------------------


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_clock_plays_pauses_seeks_and_steps_its_speed():
    mono = Monotonic()
    clock = ReplayClock(1000.0, 1100.0, monotonic=mono)
    assert clock.position() == 1100.0 and not clock.playback().playing  # opens on the end, paused
    clock.seek(1010.0)
    clock.play()
    mono.now += 5
    assert clock.position() == 1015.0
    assert clock.step_speed(1) == 2.0 and clock.step_speed(1) == 5.0
    mono.now += 2
    assert clock.position() == 1025.0
    assert clock.monotonic_at(1035.0) == mono.now + 2.0
    clock.pause()
    mono.now += 50
    assert clock.position() == 1025.0 and clock.monotonic_at(1030.0) is None
    assert clock.step_speed(-1) == 2.0 and clock.step_speed(-1) == 1.0 and clock.step_speed(-1) == 1.0
    for _ in range(10):
        clock.step_speed(1)
    assert clock.playback().speed == 100.0
    assert clock.seek(5.0) == 1000.0 and clock.seek(10**10) == 1100.0  # kept within the recording
    clock.play()  # at the end: plays again from the start
    assert clock.position() == 1000.0
    mono.now += 10**6
    assert clock.position() == 1100.0
    clock.stop_at_end()
    assert not clock.playback().playing and clock.playback().at_end


def test_the_clock_follows_a_growing_recording_and_reads_a_catch_up_s_time():
    mono = Monotonic()
    clock = ReplayClock(1000.0, 1010.0, monotonic=mono)
    clock.follow()
    clock.extend(1020.0)
    assert clock.position() == 1020.0 and clock.playback().following
    clock.folding(1012.5)
    assert clock.now() == 1012.5 and clock.position() == 1020.0
    clock.folding(None)
    assert clock.now() == 1020.0
    clock.set_speed(10)
    assert not clock.playback().following


# --- where a seek goes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12:30", Goto("at", 750.0)),
        ("1:02:03", Goto("at", 3723.0)),
        ("90s", Goto("at", 90.0)),
        ("2m", Goto("at", 120.0)),
        ("+30s", Goto("by", 30.0)),
        ("-2m", Goto("by", -120.0)),
        ("- 1:00", Goto("by", -60.0)),
        ("40%", Goto("fraction", 0.4)),
        ("trial 7", Goto("trial", 7.0)),
        ("T3", Goto("trial", 3.0)),
        ("#0", Goto("trial", 0.0)),
        (" Start ", Goto("start")),
        ("end", Goto("end")),
        ("1.5h", Goto("at", 5400.0)),
    ],
)
def test_goto_reads_times_steps_shares_trials(text, expected):
    assert parse_goto(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "120%", "x%", "trial", "1:2:3:4", "+-3"])
def test_goto_refuses_what_it_cannot_place_with_a_message(text):
    with pytest.raises(ValueError) as refused:
        parse_goto(text)
    assert str(refused.value)


def test_the_timeline_places_moments_and_trials():
    marks = (
        TrialMark("MIPROv2 (light)", 0.0, 0, "a", "eval-2", 10.0, 20.0, 50.0),
        TrialMark("MIPROv2 (light)", 0.0, 1, "a", "eval-3", 20.0, None, None),
    )
    timeline = Timeline(1000.0, 1100.0, marks)
    assert timeline.moment(parse_goto("40%"), 1050.0) == 1040.0
    assert timeline.moment(parse_goto("+30s"), 1050.0) == 1080.0
    assert timeline.moment(parse_goto("-2m"), 1050.0) == 1000.0
    assert timeline.moment(parse_goto("1:00"), 1050.0) == 1060.0
    assert timeline.moment(parse_goto("9:00"), 1050.0) == 1100.0
    assert timeline.trial(1).scope_id == "eval-3"
    with pytest.raises(ValueError, match="no trial 5: the trials are 0 to 1"):
        timeline.trial(5)
    with pytest.raises(ValueError, match="no optimizer trials"):
        Timeline(0.0, 1.0).trial(1)


# --- the fleet going back -----------------------------------------------------------------------


def test_fleet_restart_forgets_one_process_and_rebuilds_it_from_what_follows():
    from dspy_top import schema

    fleet = Fleet()
    for key, pid in (("a", 11), ("b", 12)):
        fleet.connected(key, schema.hello(hello(pid)))
        fleet.fold_many(key, [stats(5), *(call(n) for n in range(3))])
    assert fleet.snapshot().totals.calls == 10 and len(fleet.history) == 6
    fleet.restart("a", schema.hello(hello(11)))
    snapshot_now = fleet.snapshot()
    assert snapshot_now.totals.calls == 5 and len(fleet.history) == 3
    assert {row.key: row.state for row in snapshot_now.processes} == {"a": "running", "b": "running"}
    fleet.fold("a", stats(2))
    assert fleet.snapshot().totals.calls == 7
    fleet.restart("a", None)  # not started yet at that point: its row goes
    assert [row.key for row in fleet.snapshot().processes] == ["b"]
    fleet.restart("c", schema.hello(hello(13)))  # a key not known yet: simply connected
    assert "c" in {row.key for row in fleet.snapshot().processes}


def call(call_id: int) -> dict:
    return {
        "t": "call",
        "id": call_id,
        "seq": call_id,
        "start": 1.0,
        "latency": 0.5,
        "path": "Fake.predict",
        "module_class": "Predict",
        "model": "openai/fake",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cached_tokens": 0,
        "cost_usd": 0.001,
        "cache_hit": False,
        "retries": 0,
        "scopes": [],
    }


# --- replaying a recording --------------------------------------------------------------------------


def test_the_end_state_is_the_jobs_final_numbers_and_every_call(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    truth = normal(job.recorder.stats())
    with Replaying(job.writer.path) as replay:
        snapshot = replay.at(replay.source.timeline.end)
        same_totals(snapshot.totals, truth["totals"])
        assert [(p.state, p.status, p.final_numbers) for p in snapshot.processes] == [("ended", "ended", "received")]
        calls = [e for e in job.sent if e["t"] == "call"]
        assert [c.id for c in snapshot.calls] == [c["id"] for c in calls]
        assert {s.id: s.score for s in snapshot.scopes if s.kind == "eval"} == {
            "eval-1": 40.0,
            "eval-2": 50.0,
            "eval-3": 60.0,
        }


def test_every_moment_shows_what_the_job_had_sent_by_then_forward_and_back(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    with Recording(job.writer.path) as recording:
        messages = list(recording.messages())
        checkpoints = recording.index().checkpoints
        states = [recording.seek(checkpoint=n).state for n in range(len(checkpoints))]
    assert len(checkpoints) >= 4
    calls = [e for e in job.sent if e["t"] == "call"]
    restarts = []
    with Replaying(job.writer.path) as replay:
        original = replay.source._restart
        replay.source._restart = lambda track, target: (restarts.append(target), original(track, target))
        timeline = replay.source.timeline
        # Back from the end through every checkpoint: each is started over from, exactly its state.
        for ref, state in reversed(list(zip(checkpoints, states))):
            snapshot = replay.at(ref.at)
            same_totals(snapshot.totals, state.stats["totals"])
        # Then forward and back through shares of the recording: the last stats sent by then,
        # and the calls that had finished by then, in the history.
        for fraction in (0.1, 0.5, 0.35, 0.9, 0.05, 0.75, 0.0):
            moment = timeline.start + fraction * (timeline.end - timeline.start)
            snapshot = replay.at(moment)
            same_totals(snapshot.totals, stats_at(messages, moment))
            assert [c.id for c in snapshot.calls] == [c["id"] for c in calls if c["start"] + c["latency"] <= moment]
            assert snapshot.at == moment  # the fleet's clock is the recording's
    assert len(restarts) >= len(checkpoints) + 3  # going back starts over from a checkpoint


def test_a_seek_far_ahead_starts_from_the_checkpoint_before_it_not_from_the_start(
    tmp_path, small_checkpoints, monkeypatch
):
    monkeypatch.setattr(replay_telling, "RESTART_BYTES", 1024)
    job = recorded(tmp_path, calls=3000)
    with Recording(job.writer.path) as recording:
        last = recording.index().checkpoints[-2]
        messages = list(recording.messages())
    told = []
    with Replaying(job.writer.path, at=0) as replay:
        replay.at(replay.source.timeline.start)
        original = replay.source._tell
        replay.source._tell = lambda track, target, budget: told.append(original(track, target, budget)) or told[-1]
        snapshot = replay.at(last.at + 0.001)
        same_totals(snapshot.totals, stats_at(messages, last.at + 0.001))
        assert snapshot.totals.calls > 2500
    assert sum(told) < 500  # only what follows that checkpoint was told, not 3,000 calls


def test_steps_go_one_call_or_message_at_a_time_both_ways(tmp_path, small_checkpoints):
    job = recorded(tmp_path, calls=200)
    calls = [e for e in job.sent if e["t"] == "call"]
    with Replaying(job.writer.path) as replay:
        source = replay.source
        middle = calls[100]["start"] + calls[100]["latency"]
        assert len(replay.at(middle).calls) == 101
        for expected in (102, 103):
            source.step(1)
            wait_until(
                lambda expected=expected: source.caught_up() and len(replay.fleet.history) == expected,
                f"{expected} calls",
            )
            assert source.clock.position() == calls[expected - 1]["start"] + calls[expected - 1]["latency"]
        for expected in (102, 101, 100):
            source.step(-1)
            wait_until(
                lambda expected=expected: source.caught_up() and len(replay.fleet.history) == expected,
                f"{expected} calls",
            )
        assert not source.clock.playback().playing


def test_a_trial_is_shown_as_it_ended_score_in_and_the_next_not_yet(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    with Replaying(job.writer.path) as replay:
        source = replay.source
        assert [(m.number, m.scope_id, m.score) for m in source.timeline.trials] == [
            (1, "eval-1", 40.0),
            (2, "eval-2", 50.0),
            (3, "eval-3", 60.0),
        ]
        source.seek_trial(source.timeline.trial(2))
        wait_until(source.caught_up, "the trial seek")
        with replay.fleet.lock:
            snapshot = replay.fleet.snapshot()
        scopes = {s.id: (s.state, s.score) for s in snapshot.scopes}
        assert scopes["eval-2"] == ("done", 50.0) and scopes["eval-1"] == ("done", 40.0)
        assert scopes.get("eval-3", ("running", None))[0] == "running"
        run = snapshot.optimizers[0]
        assert run.best_score == 50.0 and run.state == "running"
        assert source.moment(Goto("trial", 1)) < source.clock.position()


def test_payloads_come_from_the_file_and_stops_are_refused(tmp_path, small_checkpoints):
    job = recorded(tmp_path, calls=300)
    with Replaying(job.writer.path) as replay:
        key = replay.source.tracks[0].key
        replay.at(replay.source.timeline.end)
        for call_id in (1, 150, 299):
            replay.collector.request_payload(key, call_id)
        replay.collector.request_payload(key, 10**6)
        wait_until(lambda: len(replay.answers) == 4, "four payload answers")
        by_id = {answer.call_id: answer for answer in replay.answers}
        for call_id in (1, 150, 299):
            assert by_id[call_id].payload == job.payloads[call_id]
        assert by_id[10**6].payload is None and "no payload for call" in by_id[10**6].reason
        replay.collector.request_stop(key, "please")
        wait_until(lambda: replay.notices, "the refusal")
        assert CANNOT_STOP in replay.notices[0]
        with pytest.raises(CannotRequest, match="cannot stop"):
            replay.source.request_stop(key, "please")


@pytest.mark.slow
def test_two_replays_of_one_file_at_once_agree(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    with Replaying(job.writer.path) as first, Replaying(job.writer.path) as second:
        for fraction in (1.0, 0.3, 0.6):
            timeline = first.source.timeline
            moment = timeline.start + fraction * (timeline.end - timeline.start)
            assert first.at(moment).totals == second.at(moment).totals


def test_a_run_of_several_processes_replays_on_one_clock(tmp_path):
    parent = ServedJob(tmp_path / "parent.dtop")
    parent.calls(100)
    clock = FakeClock()
    clock.now = parent.clock.now + 5  # the child starts 5 s after the parent did, and runs on
    child = ServedJob(tmp_path / "child.dtop", clock=clock)
    child.calls(300)
    parent.calls(100)
    parent.close()
    child.close()
    with Replaying(tmp_path / "parent.dtop", tmp_path / "child.dtop") as replay:
        timeline = replay.source.timeline
        assert timeline.start == parent.hello["started_at"] and timeline.end >= child.clock.now
        end = replay.at(timeline.end)
        assert sorted(p.totals.calls for p in end.processes) == [200, 300]
        before_child = replay.at(child.hello["started_at"] - 0.5)
        assert [p.pid for p in before_child.processes] == [4242] and len(before_child.processes) == 1
        after = replay.at(child.hello["started_at"] + 1)
        assert len(after.processes) == 2


def test_a_recording_being_written_is_followed_to_its_end(tmp_path):
    job = ServedJob(tmp_path / "live.dtop")
    job.calls(100)
    with Replaying(job.writer.path) as replay:
        source = replay.source
        assert source.live
        source.to_end()
        assert source.clock.playback().following

        def calls():
            with replay.fleet.lock:
                return replay.fleet.snapshot().totals.calls

        wait_until(lambda: calls() == 100, "the first 100 calls")
        job.calls(200)
        wait_until(lambda: calls() == 300, "the calls written later")
        job.close()
        wait_until(lambda: not source.live and rows(replay)["state"] == "ended", "the end of the recording")
        wait_until(lambda: not source.clock.playback().following, "the end, no longer followed")
        assert source.clock.playback().at_end and rows(replay)["calls"] == 300


def rows(replay: Replaying) -> dict:
    with replay.fleet.lock:
        row = replay.fleet.snapshot().processes[0]
    return {"state": row.state, "calls": row.totals.calls}


# --- batch mode ---------------------------------------------------------------------------------------


def test_batch_moments_end_at_the_end_every_delay_back():
    assert batch.moments(0.0, 10.0, 3.0, None) == [1.0, 4.0, 7.0, 10.0]
    assert batch.moments(0.0, 10.0, 3.0, 2) == [7.0, 10.0]
    assert batch.moments(0.0, 10.0, 30.0, None) == [10.0]
    assert batch.moments(5.0, 5.0, 1.0, 1) == [5.0]


def test_batch_prints_the_snapshots_live_batch_mode_would_have(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    truth = normal(job.recorder.stats())
    with Recording(job.writer.path) as recording:
        messages = list(recording.messages())
    source = RecordingSource([Recording(job.writer.path)])
    out = io.StringIO()
    assert batch.run(source, iterations=4, delay=2.0, as_json=True, out=out) == 0
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    timeline = source.timeline
    assert [p["at"] for p in printed] == pytest.approx([timeline.end - 2.0 * n for n in (3, 2, 1, 0)])
    for snapshot in printed[:-1]:
        assert snapshot["totals"]["calls"] == stats_at(messages, snapshot["at"])["calls"]
    assert printed[-1]["totals"]["calls"] == truth["totals"]["calls"]
    assert printed[-1]["processes"][0]["state"] == "ended" and printed[-1]["schema"] == 1
    assert not math.isnan(printed[-1]["totals"]["tokens_per_sec_avg"])


@pytest.mark.slow
def test_replay_batch_mode_never_imports_textual_and_the_replay_viewer_no_dspy(tmp_path):
    from tests.helpers.import_witness import WITNESS, run

    job = recorded(tmp_path, calls=50)
    code = (
        WITNESS
        + f"""
import contextlib, io
from dspy_top.viewer.replay import command
with contextlib.redirect_stdout(io.StringIO()) as out:
    status = command.main([{str(job.writer.path)!r}, "-b", "-n", "1", "--json"])
batch = settle()
import dspy_top.viewer.replay.app
viewer = {{top: who for top, who in settle().items() if top != "textual"}}
print(json.dumps({{"status": status, "calls": json.loads(out.getvalue())["totals"]["calls"], "batch": batch,
                  "viewer": viewer}}))
"""
    )
    found = run(code)
    assert found["status"] == 0 and found["calls"] == 50 + 120
    assert found["batch"] == {}, f"replay batch mode imported these: {found['batch']}"
    assert found["viewer"] == {}, f"the replay viewer imported these: {found['viewer']}"


def test_the_collector_restarts_a_process_in_one_step_and_refuses_a_bad_beginning():
    """Sink.restart through the real collector: the old state or the new one, never an empty row between."""
    from dspy_top import schema
    from dspy_top.sources.base import Source

    class Restarting(Source):
        where = "test"

        def __init__(self) -> None:
            self.plan: list = []
            self.answers: list = []

        def turn(self, ready, now) -> None:
            while self.plan:
                self.answers.append(self.sink.restart(*self.plan.pop(0)))

    source = Restarting()
    fleet = Fleet()
    seen: list[int] = []
    original = fleet.restart

    def restart(key, hello, **options):  # what a snapshot would see if it ran between the steps: nothing, it cannot
        assert fleet.lock._is_owned()
        original(key, hello, **options)

    fleet.restart = restart
    collector = Collector(fleet, [source]).start()
    try:
        hello_a = schema.hello(hello(21))
        source.plan.append(("a", hello_a, [{"t": "snapshot", "stats": stats(7), "calls": [], "seq": 1}]))
        collector.wake()
        wait_until(lambda: source.answers == [True], "the first restart")
        with fleet.lock:
            seen.append(fleet.snapshot().totals.calls)
        source.plan.append(
            (
                "a",
                hello_a,
                [
                    {"t": "snapshot", "stats": stats(3), "calls": [], "seq": 1},
                    {"t": "calls", "fields": ["start"], "rows": [[1.0]]},
                ],
            )
        )
        collector.wake()
        wait_until(lambda: len(source.answers) == 2, "the refused restart")
        with fleet.lock:
            row = fleet.snapshot().processes[0]
        assert source.answers[1] is False and row.state == "lost" and "protocol error" in row.status
        assert row.totals.calls == 3  # what came before the refused message was folded
        source.plan.append(("a", None, []))
        collector.wake()
        wait_until(lambda: len(source.answers) == 3, "the withdrawal")
        with fleet.lock:
            assert fleet.snapshot().processes == ()
    finally:
        collector.stop()
    assert seen == [7]
