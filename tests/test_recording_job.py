"""Recording in the job, on real DSPy jobs against the simulated LM: what the file holds equals what
the LM server counted and what a live viewer was told; a job killed with SIGKILL, forks, the
size cap, the runs directory's retention, privacy, and the settings."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from dspy_top import client, config
from dspy_top.instrumentation import payload_pack
from dspy_top.recording import Recording, RecordingWriter
from dspy_top.recording.summary import group_runs, list_runs, summarize
from dspy_top.simlm import SimLM
from tests.helpers.recorded import RecordJob, calls_of, decoded_text, everything
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.slow  # every test here starts a job, a terminal or the real app

COUNTED = ("calls", "errors", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd")


@pytest.fixture
def sim():
    with SimLM(latency_scale=0.0) as server:
        yield server


def totals_of(totals: dict) -> dict:
    return {name: totals[name] for name in COUNTED}


def test_a_recorded_jobs_totals_equal_the_lm_servers_and_the_live_viewers(tmp_path, sim):
    directory = tmp_path / "recordings"  # not there yet: the job makes it, private
    job = RecordJob(tmp_path, sim.base_url, "--threads", "4", env={"DSPY_TOP_RECORD": f"{directory}/"})
    try:
        viewer = client.Connection(job.socket_path, batches=True)
        viewer.connect()
        job.run(12)  # each under Evaluate(num_threads=4)
        job.run(5)
        made = job.run(3)
        job.exit()
        told = [m for m in viewer.events(timeout=30)]
    finally:
        job.kill()
    assert told[-1]["t"] == "exit"
    served = sim.stats()
    assert made == served["requests"] == 40
    path = job.recording
    assert path.parent == directory and path.name.endswith(f"-{job.pid}-record_job.dtop")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
    with Recording(path) as recording:
        end = recording.end_state()
        assert end.complete and not end.live and not end.damage
        totals = end.totals
        assert totals["calls"] == served["requests"] == told[-1]["stats"]["totals"]["calls"]
        assert (
            totals["prompt_tokens"] == served["prompt_tokens"]
            and totals["completion_tokens"] == served["completion_tokens"]
        )
        assert totals_of(totals) == totals_of(told[-1]["stats"]["totals"])  # the live viewer's final numbers
        assert recording.hello["pid"] == job.pid and recording.hello["run_id"]
    messages, payloads = everything(path)
    recorded_calls = calls_of(messages)
    assert sorted(c["id"] for c in recorded_calls) == sorted(c["id"] for c in calls_of(told)) == list(range(1, 41))
    assert sum(c["prompt_tokens"] for c in recorded_calls) == served["prompt_tokens"]
    # Every call's payload is there, long after the job ended, as the socket would have sent it.
    assert all(p is not None and p["messages"][0]["role"] == "system" for p in payloads.values())
    assert all("What is" in json.dumps(p["messages"]) for p in payloads.values())
    evaluation = [m for m in messages if m["t"] == "eval_end"]
    assert [e["usage"]["calls"] for e in evaluation] == [24, 10, 6]


def test_a_recording_job_holds_past_the_history_only_the_payloads_it_has_not_taken(tmp_path, sim):
    """The payload ring of a recording job keeps up to 4,096 calls for the recording to take, but a
    call past the history's count only until taken: after 1,200 calls with a history of 20, the
    ring holds far fewer than them, and the recording every payload."""
    job = RecordJob(
        tmp_path,
        sim.base_url,
        "--threads",
        "4",
        env={"DSPY_TOP_RECORD": str(tmp_path / "ring.dtop"), "DSPY_TOP_HISTORY": "20"},
    )
    try:
        job.run(300)
        made = job.run(300)
        ring = list(map(int, job.ask("ring", "RING")[1:]))
        job.exit()
        assert job.proc.wait(30) == 0
    finally:
        job.kill()
    held, untaken, history, bound = ring
    assert made == 1200 and (history, bound) == (20, 4096)
    assert untaken == 0  # the recording took every call so far
    # All 1,200 would still be held if taken ones were kept; the ring holds the history's 20 and
    # those not yet taken when the last calls came (a tick's worth), then shrinks by one a call.
    assert history <= held < 600
    messages, payloads = everything(job.recording)
    assert sorted(payloads) == list(range(1, 1201)) and all(p is not None for p in payloads.values())


def test_a_cpu_bound_job_keeps_its_recording_whole(tmp_path, sim):
    """15,000 calls answered from DSPy's memory cache (about 3,000 a second, all CPU): the job keeps
    the GIL but for a moment in each uuid4, which held the server thread off the GIL for seconds a
    tick; the recording lost 3,743 of the calls and 9,647 of their payloads. The job now lets the
    GIL go for the server thread when it asks (gil_handoff.py): every call and payload is there."""
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(tmp_path / "cached.dtop")})
    try:
        calls, given, missed = map(int, job.ask("cached 15000", "CACHED")[1:])
        job.exit()
        assert job.proc.wait(30) == 0
    finally:
        job.kill()
    assert calls == 15000 and sim.stats()["requests"] == 1  # one LM call, the rest from the cache
    assert given > 0
    with Recording(job.recording) as recording:
        end = recording.end_state()
        assert end.totals["calls"] == 15000 and end.totals["cache_hits"] == 14999
        assert end.state.payloads_dropped == 0
    messages, payloads = everything(job.recording)
    assert sorted(payloads) == list(range(1, 15001))
    assert all(p is not None and "What is 2 + 2?" in json.dumps(p["messages"]) for p in payloads.values())


@pytest.mark.parametrize("packer", ["compiled", "python"])
def test_a_cpu_bound_job_killed_with_sigkill_leaves_its_calls_up_to_the_last_second(tmp_path, sim, packer):
    """The same cached job, killed while it makes its calls: the file holds every call made up to
    shortly before the kill (the recording writes every half second; a second is allowed here for a
    loaded machine), each with its payload, whether packed in C or by the Python pass
    (DSPY_TOP_NO_C=1). Held off the GIL, the server thread wrote seconds late."""
    if packer == "compiled" and not payload_pack.AVAILABLE:
        pytest.skip("_payload_pack.c is not built here")
    env = {"DSPY_TOP_RECORD": str(tmp_path / "cached.dtop"), "DSPY_TOP_NO_C": "1" if packer == "python" else "0"}
    job = RecordJob(tmp_path, sim.base_url, env=env)
    try:
        job.send("cached 1000000")
        first = job.next("AT", timeout=120)
        while True:
            last = job.next("AT", timeout=120)
            if float(last[2]) - float(first[2]) >= 3.0:  # three seconds of calls
                break
        job.proc.send_signal(signal.SIGKILL)
        job.proc.wait(30)
    finally:
        job.kill()
    made, at = int(last[1]), float(last[2])
    rate = (made - int(first[1])) / (at - float(first[2]))  # calls a second
    with Recording(job.recording) as recording:
        end = recording.end_state()
        recorded = end.totals["calls"]
        assert not end.complete and recorded == end.totals["cache_hits"] + 1
    assert recorded >= made - rate * 1.0, (recorded, made, rate)
    messages, payloads = everything(job.recording)
    assert sorted(payloads) == list(range(1, len(payloads) + 1)) and len(payloads) >= made - rate * 1.0
    # Every payload is stored before its call's row: every call in the file has its payload.
    assert all(payloads[call_id] is not None for call_id in range(1, len(payloads) + 1))


def test_a_job_killed_with_sigkill_leaves_a_file_that_reads_to_its_last_calls(tmp_path, sim):
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(tmp_path / "killed.dtop")})
    try:
        made = job.run(10)
        path = job.recording

        def recorded():  # what a reader sees while the job runs, without waiting for it to end
            with Recording(path) as recording:
                end = recording.end_state()
                return end.live and end.totals and end.totals["calls"] == made

        wait_until(recorded, "the job's calls on disk", timeout=30)  # within half a second of the last call
        job.proc.send_signal(signal.SIGKILL)
        job.proc.wait(10)
    finally:
        job.kill()
    served = sim.stats()
    with Recording(path) as recording:
        end = recording.end_state()
        assert not end.complete and not end.live  # cut off: no footer, and nobody writes it any more
        assert end.totals["calls"] == served["requests"] == made == 20
        assert end.totals["prompt_tokens"] == served["prompt_tokens"]
        assert all(recording.payload(call["id"]) is not None for call in calls_of(recording.messages()))
    assert summarize(path).state == "cut off" and summarize(path).calls == 20


def test_the_calls_after_the_last_stored_stats_count_in_the_totals(tmp_path):
    """The writer stores few `stats`; a file cut between two still adds the calls after the last."""
    from dspy_top.instrumentation.recorder import Recorder

    recorder = Recorder()
    writer = RecordingWriter.create(tmp_path / "tail.dtop", {"t": "hello", "pid": 1})
    writer.add({"t": "snapshot", **recorder.snapshot()})
    for number in range(7):
        record = recorder.begin("P.predict", "Predict", ("P",), "m")
        recorder.finish(
            record,
            prompt_tokens=10 + number,
            completion_tokens=2,
            cost=0.5,
            cache_hit=number == 3,
            saved=0.25 if number == 3 else None,
            error=RuntimeError("x") if number == 5 else None,
        )
        if number == 2:
            events, stats = recorder.drain_and_stats()
            writer.add_events(events)
            writer.add({"t": "stats", **stats})
    writer.add_events(recorder.drain())
    writer.flush(force=True)  # and never closed, as a killed writer leaves it
    truth = recorder.stats()["totals"]
    with Recording(tmp_path / "tail.dtop") as recording:
        end = recording.end_state()
        assert end.stats["totals"]["calls"] < 7  # the last stats stored: before the last calls
        for name in ("calls", "errors", "cache_hits", "prompt_tokens", "completion_tokens", "retries"):
            assert end.totals[name] == truth[name], name
        assert end.totals["cost_usd"] == pytest.approx(truth["cost_usd"])
        assert end.totals["cost_saved_usd"] == pytest.approx(truth["cost_saved_usd"])
    writer.close()


def test_a_forked_child_records_its_own_file_in_the_same_run(tmp_path, sim):
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": "1"})
    try:
        job.run(2)
        job.send("fork 3")
        _, child_pid, child_calls, child_path = job.expect("CHILD")
        parent_calls = job.run(1)
        job.exit()
    finally:
        job.kill()
    directory = tmp_path / "state" / "runs"
    assert job.recording.parent == directory and Path(child_path).parent == directory
    assert int(child_calls) == 6 and parent_calls == 6
    with Recording(child_path) as child, Recording(job.recording) as parent:
        assert child.hello["pid"] == int(child_pid) and child.hello["ppid"] == job.pid
        assert child.hello["run_id"] == parent.hello["run_id"]
        assert child.end_state().totals["calls"] == 6 and parent.end_state().totals["calls"] == 6
        assert child.end_state().complete and parent.end_state().complete
    assert sim.stats()["requests"] == 12
    summaries, errors = list_runs(directory)
    (run,) = group_runs(summaries, directory)
    assert not errors and run.processes == 2 and run.calls == 12
    assert run.recordings[0].pid == job.pid  # the first process first


def test_past_its_cap_a_recording_keeps_counting_and_stops_payloads(tmp_path, sim):
    (tmp_path / "config.toml").write_text('[recording]\ncap = "16KiB"\n')
    job = RecordJob(
        tmp_path,
        sim.base_url,
        env={"DSPY_TOP_RECORD": str(tmp_path / "capped.dtop"), "DSPY_TOP_CONFIG": str(tmp_path / "config.toml")},
    )
    try:
        for _ in range(4):
            job.run(60)
        job.exit()
    finally:
        job.kill()
    served = sim.stats()["requests"]
    with Recording(tmp_path / "capped.dtop") as recording:
        assert recording.header["cap_bytes"] == 16 * 1024
        end = recording.end_state()
        assert end.totals["calls"] == served == 480 and end.complete
        assert end.state.payloads_dropped > 0 and end.state.payloads + end.state.payloads_dropped == served
        assert [n["event"] for n in end.state.notes][:1] == ["payload_cap"]
        assert len(calls_of(recording.messages())) == served  # the call events go on
    assert (tmp_path / "capped.dtop").stat().st_size < 4 * 16 * 1024


def test_retention_keeps_the_newest_and_never_a_recording_in_use(tmp_path, sim):
    directory = tmp_path / "state" / "runs"
    directory.mkdir(parents=True)
    old = []
    for number in range(4):
        writer = RecordingWriter.create(directory / f"old-{number}.dtop", {"t": "hello", "pid": number})
        writer.add({"t": "stats", "totals": {"calls": 0}, "blob": os.urandom(20_000).hex()})
        writer.close()
        os.utime(writer.path, (1_000_000 + number, 1_000_000 + number))
        old.append(writer.path)
    size = old[0].stat().st_size
    (directory / "old-run.log").write_text("x" * size)
    os.utime(directory / "old-run.log", (900_000, 900_000))
    in_use = Recording(old[0])  # a reader holds the oldest: it stays
    # Room for the job's own small recording and one old one, not two.
    (tmp_path / "config.toml").write_text(f"[recording]\nkeep = {int(size * 1.5)}\n")
    job = RecordJob(
        tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": "1", "DSPY_TOP_CONFIG": str(tmp_path / "config.toml")}
    )
    try:
        job.run(1)
        wait_until(lambda: not old[1].exists(), "the retention rule", timeout=30)
        left = sorted(p.name for p in directory.iterdir())
        job.exit()
    finally:
        job.kill()
        in_use.close()
    # The job's own (the newest, and in use) and the newest old one that fits stay; the oldest,
    # being read, stays too; the rest (and the oldest log) go.
    assert left == sorted([job.recording.name, "old-0.dtop", "old-3.dtop"])


@pytest.mark.slow
@pytest.mark.parametrize("packer", ["compiled", "python"])
def test_no_credential_reaches_the_recording(tmp_path, packer):
    """The job of the socket's privacy test, recorded: every message and payload decoded, and the raw
    bytes; its payloads packed in C (payload_pack.py) and, with DSPY_TOP_NO_C=1, by the Python pass."""
    from tests.helpers.planted_secrets import LEAKS, SECRET_ARGV, start_secret_job

    directory = tmp_path / "private"
    with SimLM(latency_scale=0.0) as sim:
        job = start_secret_job(
            sim.base_url,
            tmp_path / "rt",
            tmp_path / "none.toml",
            DSPY_TOP_RECORD=f"{directory}/",
            DSPY_TOP_NO_C="1" if packer == "python" else "0",
        )
        try:
            assert job.stdout.readline().startswith("READY"), job.stderr.read()[-3000:]
            job.stdin.write("exit\n")
            job.stdin.flush()
            assert job.wait(60) == 0
        finally:
            job.kill()
    (path,) = list(directory.iterdir())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
    text = decoded_text(path)
    for secret in LEAKS:
        assert secret not in text, secret
    messages, payloads = everything(path)
    assert len(payloads) == 3 and all(payloads.values())  # the question, the failed call, the evaluation
    assert any("Summarise" in json.dumps(p["messages"]) for p in payloads.values())
    assert any("alice:[redacted]@" in p["options"].get("api_base", "") for p in payloads.values())
    with Recording(path) as recording:
        assert recording.hello["argv"][-6:] == SECRET_ARGV[:1] + [
            "[redacted]",
            "--token=[redacted]",
            "--password",
            "[redacted]",
            "--openai-api-key=[redacted]",
        ]


def test_recording_settings_are_read_and_a_bad_one_never_stops_the_job(tmp_path, sim):
    file = {"recording": {"cap": "2MiB", "keep": 10 * 1024**2}}
    settings, problems = config.job_settings({}, {"DSPY_TOP_RECORD": "1"}, file)
    assert problems == [] and settings.record is True and settings.record_cap == 2 * 1024**2
    assert settings.record_keep == 10 * 1024**2
    settings, _ = config.job_settings(
        {"record": tmp_path / "x.dtop"}, {"DSPY_TOP_RECORD": "0", "DSPY_TOP_RECORD_CAP": "1GiB"}, file
    )
    assert settings.record == str(tmp_path / "x.dtop") and settings.record_cap == 1024**3  # arguments, then env
    assert config.job_settings({}, {"DSPY_TOP_RECORD": "off"}, {})[0].record is False
    settings, problems = config.job_settings(
        {"record": 5}, {"DSPY_TOP_RECORD_CAP": "lots"}, {"recording": {"keep": "much"}}
    )
    assert settings.record is False and settings.record_cap == config.RECORD_CAP
    assert settings.record_keep == config.RECORD_KEEP
    assert [p.split("=")[0] for p in problems] == ["DSPY_TOP_RECORD_CAP", "config file [recording] keep", "record"]
    # In a job: said once on stderr, and it records with the default cap.
    job = RecordJob(
        tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(tmp_path / "bad.dtop"), "DSPY_TOP_RECORD_CAP": "lots"}
    )
    try:
        job.run(1)
        job.exit()
    finally:
        job.kill()
    assert job.stderr.count("DSPY_TOP_RECORD_CAP='lots'") == 1
    with Recording(tmp_path / "bad.dtop") as recording:
        assert recording.header["cap_bytes"] == config.RECORD_CAP and recording.end_state().totals["calls"] == 2


def test_a_recording_that_cannot_be_opened_is_said_once_and_the_job_goes_on(tmp_path, sim):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(blocked / "x.dtop")})
    try:
        assert job.recording is None
        assert job.run(2) == 4
        assert job.exit() == 0
    finally:
        job.kill()
    assert job.stderr.count("cannot record to") == 1 and "Traceback" not in job.stderr


def test_a_given_file_is_never_written_over(tmp_path, sim):
    taken = tmp_path / "taken.dtop"
    taken.write_bytes(b"someone else's")
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(taken)})
    try:
        job.run(1)
        job.exit()
    finally:
        job.kill()
    assert taken.read_bytes() == b"someone else's"
    assert job.recording == tmp_path / f"taken-{job.pid}.dtop"
    with Recording(job.recording) as recording:
        assert recording.end_state().totals["calls"] == 2
