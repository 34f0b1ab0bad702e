"""`dspy-top replay` over recordings of real DSPy jobs: the numbers, the moments, the payloads, cut-off files.

A real DSPy job (tests/jobs/optimizer_job.py: BootstrapFewShotWithRandomSearch and an Evaluate,
through DSPy's real clients, against the simulated LM on 127.0.0.1) is recorded from what its
socket serves (tests/helpers/socket_recording.py, into a real RecordingWriter with small
checkpoints), then replayed: by the command's batch mode in a subprocess, by the source under
the real collector, and in the real Textual app. A recording written by a process killed
with SIGKILL (tests/jobs/recording_job.py) replays to its last frame.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top.recording import Recording
from dspy_top.recording import checkpoints as stored_checkpoints
from dspy_top.recording.reader import message_time
from dspy_top.simlm import SimLM
from dspy_top.sources.replay_timeline import Goto
from tests.helpers.jobs import REPO, runtime_dir
from tests.helpers.optimizer_job import OptimizerJob
from tests.helpers.replaying import Replaying, same_totals
from tests.helpers.socket_recording import SocketRecording

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

RECORDING_JOB = REPO / "tests" / "jobs" / "recording_job.py"


class RecordedJob:
    """A real optimizer job recorded to `path`: what it said it did, and what the simulated LM counted."""

    def __init__(self, path: Path, truths: dict, sim_stats: dict, payloads: dict) -> None:
        self.path = path
        self.truths = truths
        self.sim = sim_stats
        self.payloads = payloads


@pytest.fixture(scope="module")
def recorded_job(tmp_path_factory) -> RecordedJob:
    path = tmp_path_factory.mktemp("replay") / "optimize.dtop"
    with pytest.MonkeyPatch.context() as patch, SimLM(latency_scale=0.2) as sim:
        patch.setattr(stored_checkpoints, "CHECKPOINT_CALLS", 15)  # a checkpoint every 15 calls: many to go back to
        job = OptimizerJob(sim, runtime_dir())
        try:
            recording = SocketRecording(job.socket_path, path)
            truths = {command: job.run(command) for command in ("random_search", "evaluate")}
            recording.wait_calls(sim.stats()["requests"])
            job.start("exit")
            recording.wait()
            return RecordedJob(path, truths, sim.stats(), recording.payloads)
        finally:
            job.close()


def replay_command(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def test_the_replayed_totals_equal_the_lm_servers_counts(recorded_job):
    done = replay_command(str(recorded_job.path), "-b", "-n", "1", "--json")
    assert done.returncode == 0, done.stderr
    (snapshot,) = [json.loads(line) for line in done.stdout.splitlines()]
    totals, sim = snapshot["totals"], recorded_job.sim
    assert totals["calls"] == sim["requests"] == 125  # 105 for the random search, 20 for the evaluation
    assert totals["prompt_tokens"] == sim["prompt_tokens"] and totals["completion_tokens"] == sim["completion_tokens"]
    assert snapshot["models"][0]["calls"] == sim["models"]["gpt-4o-mini"]["requests"]
    assert [p["state"] for p in snapshot["processes"]] == ["ended"]
    assert snapshot["processes"][0]["final_numbers"] == "received"
    search = next(run for run in snapshot["optimizers"] if run["class"] == "BootstrapFewShotWithRandomSearch")
    by_seed = recorded_job.truths["random_search"]["by_seed"]
    assert search["best_score"] == max(by_seed.values())
    assert sorted(t["score"] for t in search["trials"]) == sorted(by_seed.values())


def test_the_text_snapshots_every_few_seconds_end_with_the_final_numbers(recorded_job):
    done = replay_command(str(recorded_job.path), "-b", "-d", "0.5")
    assert done.returncode == 0, done.stderr
    frames = done.stdout.split("\ndspy-top - ")
    assert len(frames) >= 3
    assert f"{recorded_job.sim['requests']:,} calls (0 in flight)" in frames[-1].splitlines()[0]


def told_by(path: Path, moment: float) -> dict:
    """The oracle, from the reader alone: the totals of the last `stats` (or snapshot, or exit) told by
    `moment`, each message told at its own time kept within its frame's stretch of the writer's clock
    and never before the one before it (docs/replay.md). Here the writer is a viewer of the job, so a
    `stats` can reach the file a moment after a write it was made before: it is told at that write."""
    totals = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cache_hits": 0, "cost_usd": 0.0}
    with Recording(path) as recording:
        cursor = recording.cursor()
        while not cursor.ended:
            for written in cursor.take(16):
                at = written.after
                for message in written.messages:
                    own = message_time(message)
                    at = min(written.by, max(at, own)) if own is not None else at
                    if at > moment:
                        return totals
                    if message["t"] == "stats":
                        totals = message["totals"]
                    elif message["t"] in ("snapshot", "exit") and message.get("stats"):
                        totals = message["stats"]["totals"]
    return totals


def test_each_moment_shows_the_numbers_the_job_had_sent_by_then(recorded_job):
    with Recording(recorded_job.path) as recording:
        checkpoints = recording.index().checkpoints
        states = [recording.seek(checkpoint=n).state for n in range(len(checkpoints))]
    assert len(checkpoints) >= 4
    with Replaying(recorded_job.path) as replay:
        timeline = replay.source.timeline
        for fraction in (0.5, 0.2, 0.8, 0.0, 0.65):  # by share, forward and back
            moment = replay.source.moment(Goto("fraction", fraction))
            same_totals(replay.at(moment).totals, told_by(recorded_job.path, moment))
        for seconds in (1.0, 0.3, 2.0):  # by time from the start
            moment = replay.source.moment(Goto("at", seconds))
            assert moment == min(timeline.start + seconds, timeline.end)
            same_totals(replay.at(moment).totals, told_by(recorded_job.path, moment))
        for ref, state in reversed(list(zip(checkpoints, states))):  # each checkpoint, going back
            # Just before it, the state it stores (reached by folding on from the one before it)...
            same_totals(replay.at(math.nextafter(ref.at, -math.inf)).totals, state.stats["totals"])
            # ...and at it (started over from it), the last numbers the job had sent by then.
            same_totals(replay.at(ref.at).totals, told_by(recorded_job.path, ref.at))


def test_a_trial_is_shown_as_the_optimizer_scored_it(recorded_job):
    by_seed = recorded_job.truths["random_search"]["by_seed"]
    with Replaying(recorded_job.path) as replay:
        source = replay.source
        marks = [m for m in source.timeline.trials if m.run.startswith("BootstrapFewShotWithRandomSearch")]
        assert [m.number for m in marks] == [1, 2, 3, 4, 5]
        for mark in (marks[2], marks[0], marks[4]):
            snapshot = replay.at(source.moment(Goto("trial", mark.number)))
            run = next(r for r in snapshot.optimizers if r.class_name == "BootstrapFewShotWithRandomSearch")
            trial = next(t for t in run.trials if t.number == mark.number)
            assert trial.state == "done" and trial.score == by_seed[str(mark.number - 4)]  # trial k is seed k - 4
            assert all(t.number <= mark.number for t in run.trials if t.state == "done")
            assert run.best_score == max(by_seed[str(n - 4)] for n in range(1, mark.number + 1))


def test_every_calls_payload_comes_from_the_file_after_the_job_ended(recorded_job):
    with Replaying(recorded_job.path) as replay:
        snapshot = replay.at(replay.source.timeline.end)
        key = replay.source.tracks[0].key
        for call in snapshot.calls[::10]:
            replay.collector.request_payload(key, call.id)
        wanted = len(snapshot.calls[::10])
        from tests.helpers.waiting import wait_until

        wait_until(lambda: len(replay.answers) == wanted, "the payload answers")
    for answer in replay.answers:
        assert answer.payload == json.loads(json.dumps(recorded_job.payloads[answer.call_id]))
        assert answer.payload["messages"][-1]["role"] == "user"


def test_a_recording_cut_by_sigkill_replays_to_its_last_frame(tmp_path):
    path = tmp_path / "killed.dtop"
    job = subprocess.Popen(
        [sys.executable, str(RECORDING_JOB), str(path), "--calls-per-tick", "200"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        flushed = 0
        for line in job.stdout:
            flushed = int(line.split()[1])
            if flushed >= 3000:
                break
        os.kill(job.pid, signal.SIGKILL)
        job.wait(10)
    finally:
        if job.poll() is None:
            job.kill()
    with Recording(path) as recording:
        end = recording.end_state()
    assert not end.complete and end.stats["totals"]["calls"] >= flushed
    done = replay_command(str(path), "-b", "-n", "1", "--json")
    assert done.returncode == 0, done.stderr
    (snapshot,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert snapshot["totals"]["calls"] == end.stats["totals"]["calls"] >= flushed
    (process,) = snapshot["processes"]
    assert process["state"] == "lost" and process["final_numbers"] == "not received"
    assert "the recording stops here" in process["status"]
    text = replay_command(str(path), "-b", "-n", "1")
    assert "Final numbers not received from pid" in text.stdout


def test_files_that_are_not_recordings_are_named_with_the_offset(tmp_path):
    empty, foreign, cut = tmp_path / "empty.dtop", tmp_path / "foreign.dtop", tmp_path / "cut.dtop"
    empty.write_bytes(b"")
    foreign.write_text("hello, world\n")
    cut.write_bytes(b"\x89DSPYTOP\r\n")
    for path, words in ((empty, "empty file"), (foreign, "not a dspy-top recording"), (cut, "truncated")):
        done = replay_command(str(path), "-b")
        assert done.returncode == 1 and done.stdout == ""
        assert str(path) in done.stderr and "at byte" in done.stderr and words in done.stderr
        assert "Traceback" not in done.stderr
    missing = replay_command(str(tmp_path / "nope.dtop"), "-b")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    nothing = replay_command("latest", "-b", DSPY_TOP_STATE_DIR=str(tmp_path / "state"))
    assert nothing.returncode == 2 and "no recordings in" in nothing.stderr
    bad_at = replay_command(str(empty), "-b", "--at", "soon")
    assert bad_at.returncode == 2 and "--at" in bad_at.stderr


def test_latest_is_the_newest_recording_in_the_runs_directory(recorded_job, tmp_path):
    runs = tmp_path / "state" / "runs"
    runs.mkdir(parents=True)
    older = runs / "20260101-000000-1-old.dtop"
    older.write_bytes(recorded_job.path.read_bytes())
    os.utime(older, (1, 1))
    newest = runs / "20260102-000000-2-new.dtop"
    newest.write_bytes(recorded_job.path.read_bytes())
    done = replay_command("-b", "-n", "1", "--json", DSPY_TOP_STATE_DIR=str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    (snapshot,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["socket"] for p in snapshot["processes"]] == [str(newest)]
    # A directory: each process in it once. These two files are one process's (the same pid and
    # start: a copy), replayed once, from the first path of two equally full files; a directory of
    # two processes and their copies is in tests/test_runs_export.py.
    directory = replay_command(str(runs), "-b", "-n", "1", "--json")
    (snapshot,) = [json.loads(line) for line in directory.stdout.splitlines()]
    assert [p["socket"] for p in snapshot["processes"]] == [str(older)]


def test_the_inspector_shows_a_calls_prompt_and_response_read_from_the_file(recorded_job):
    from dspy_top.viewer.components.history_table import HistoryTable
    from dspy_top.viewer.screens.inspect import InspectScreen
    from tests.helpers.replay_app import replay_app, run
    from tests.helpers.screen import screen_text
    from tests.helpers.waiting import pilot_wait as until

    app = replay_app(recorded_job.path)
    shown = {}

    async def script(pilot):
        table = app.query_one(HistoryTable)
        table.focus()
        table.set_follow(False)
        table.move_cursor(row=table.row_count // 2)
        call = table.call_at_cursor()
        payload = json.loads(json.dumps(recorded_job.payloads[call.id]))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, InspectScreen), "the inspect screen")
        await until(pilot, lambda: app.screen.answer is not None, "the payload's answer")
        assert app.screen.answer.payload == payload  # as the job served it, read back from the file
        first_line = payload["messages"][0]["content"].splitlines()[0]
        await until(pilot, lambda: first_line in screen_text(app), "the call's prompt on screen")
        shown["text"] = screen_text(app)

    run(app, script)
    assert "is gone" not in shown["text"] and "System message" in shown["text"]


def test_batch_mode_follows_a_recording_being_written_until_its_writer_dies(tmp_path):
    path = tmp_path / "growing.dtop"
    job = subprocess.Popen(
        [sys.executable, str(RECORDING_JOB), str(path), "--calls-per-tick", "50"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    replay = None
    try:
        job.stdout.readline()  # the file exists, its writer writing
        replay = subprocess.Popen(
            [sys.executable, "-m", "dspy_top", "replay", str(path), "-b", "-d", "0.2", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        first = json.loads(replay.stdout.readline())  # it printed while the writer was still writing
        flushed = 0
        for line in job.stdout:
            flushed = int(line.split()[1])
            if flushed >= first["totals"]["calls"] + 2000:
                break
        os.kill(job.pid, signal.SIGKILL)
        job.wait(10)
        out, err = replay.communicate(timeout=60)  # it ends by itself once the writer is gone
    finally:
        for process in (job, replay):
            if process is not None and process.poll() is None:
                process.kill()
    printed = [first] + [json.loads(line) for line in out.splitlines()]
    assert replay.returncode == 0, err
    assert first["processes"][0]["state"] == "running"
    with Recording(path) as recording:
        end = recording.end_state()
    last = printed[-1]
    assert last["totals"]["calls"] == end.stats["totals"]["calls"] >= flushed > first["totals"]["calls"]
    assert last["processes"][0]["state"] == "lost" and "the recording stops here" in err
    assert [p["at"] for p in printed] == sorted(p["at"] for p in printed)
