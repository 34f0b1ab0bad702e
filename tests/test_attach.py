"""`dspy-top attach PID` on real DSPy jobs started without dspy-top, through real gdb.

Each job runs against its own simulated LM; after the attach, the job's totals (calls before
the attach included, counted from DSPy's history) must equal the server's own count, and its
results must equal those of the same job run unattached beside it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from dspy_top.attach import gdb, session
from dspy_top.simlm import SimLM
from tests.helpers.jobs import runtime_dir
from tests.helpers.plain_jobs import PlainJob, dspy_top, job_stats, unix_socket_fds
from tests.helpers.waiting import wait_until

pytestmark = [
    pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)"),
    pytest.mark.slow,
]


@pytest.fixture
def directory():
    path = runtime_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


wait_for = partial(wait_until, timeout=60.0)


def assert_matches_server(stats: dict, server: dict) -> None:
    totals = stats["totals"]
    assert totals["errors"] == 0 and totals["in_flight"] == 0
    assert totals["calls"] == server["requests"], (totals["calls"], server["requests"], stats.get("before_attach"))
    assert totals["prompt_tokens"] == server["prompt_tokens"]
    assert totals["completion_tokens"] == server["completion_tokens"]


def snapshot_json(pid: int, directory: Path) -> dict:
    done = dspy_top("-b", "-n", "1", "--json", "-p", str(pid), runtime_dir=directory)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_attach_mid_run_to_a_sequential_job_counts_every_call_and_changes_no_result(directory):
    with SimLM(latency_scale=0.05) as sim, SimLM(latency_scale=0.05) as control_sim:
        # 200 LM calls: the attach lands after 25 to 50 of them here, and must before the last
        # on a loaded machine (at 60 program calls, once it did not).
        job = PlainJob("sequential", 100, sim.base_url, directory)
        control = PlainJob("sequential", 100, control_sim.base_url, directory)
        try:
            wait_for(lambda: sim.stats()["requests"] >= 10, what="the job's first calls")
            done = dspy_top("attach", str(job.pid), runtime_dir=directory)
            assert done.returncode == 0, done.stderr
            assert "calls before attach, from DSPy's history" in done.stderr
            assert job.result() == control.result()
            stats = job_stats(directory / f"{job.pid}.sock")
            assert_matches_server(stats, sim.stats())
            before = stats["before_attach"]
            assert 10 <= before["calls"] < stats["totals"]["calls"]  # attached mid-run
            assert before["history"] == "complete" and before["missing"] == 0
            snapshot = snapshot_json(job.pid, directory)
            process = snapshot["processes"][0]
            assert process["before_attach"]["calls"] == before["calls"]
            assert process["before_attach"]["text"].startswith(f"{before['calls']:,} calls before attach, from DSPy's")
            assert snapshot["totals"]["calls"] == stats["totals"]["calls"]
            text = dspy_top("-b", "-n", "1", "-p", str(job.pid), runtime_dir=directory).stdout
            assert f"Attached: pid {job.pid}: {before['calls']:,} calls before attach, from DSPy's history" in text
        finally:
            job.close()
            control.close()


@pytest.mark.slow
def test_attach_to_evaluate_with_8_threads_counts_calls_in_flight_and_joins_the_evaluation(directory):
    with SimLM(latency_scale=0.05) as sim, SimLM(latency_scale=0.05) as control_sim:
        job = PlainJob("evaluate", 1200, sim.base_url, directory)
        control = PlainJob("evaluate", 1200, control_sim.base_url, directory)
        try:
            wait_for(lambda: sim.stats()["requests"] >= 100, what="the evaluation under way")
            outcome = session.attach(job.pid, runtime_dir=directory)
            assert outcome.status == "attached"
            assert [run["kind"] for run in outcome.result["joined"]] == ["eval"]
            assert outcome.result["joined"][0]["total"] == 1200
            assert outcome.result["before_attach"]["in_flight"] >= 1  # 8 threads were mid-call
            assert job.result() == control.result()
            stats = job_stats(directory / f"{job.pid}.sock")
            assert_matches_server(stats, sim.stats())
            before = stats["before_attach"]
            assert before["in_flight_counted"] == before["in_flight"] and before["missing"] == 0
            evaluation = wait_for(
                lambda: next(
                    (
                        r
                        for r in snapshot_json(job.pid, directory)["optimizers"]
                        if r["class"] == "Evaluate" and r["state"] == "done"
                    ),
                    None,
                ),
                timeout=30,
                what="the joined evaluation ended",
            )
            assert evaluation["joined_at"] is not None and evaluation["calls"] is None  # its own calls: unknown
            assert evaluation["trials"][0]["total"] == 1200
            assert evaluation["trials"][0]["done"] == 1200  # progress counted from the next example on
        finally:
            job.close()
            control.close()


@pytest.mark.slow
def test_attach_to_a_running_mipro_shows_the_run_and_which_trials_were_missed(directory):
    with SimLM(latency_scale=0.0) as sim, SimLM(latency_scale=0.0) as control_sim:
        job = PlainJob("mipro", 0, sim.base_url, directory)
        control = PlainJob("mipro", 0, control_sim.base_url, directory)
        try:
            wait_for(lambda: job.stderr_has("Trial 4 /"), timeout=120, what="MIPROv2's fourth trial")
            outcome = session.attach(job.pid, runtime_dir=directory)
            assert outcome.status == "attached"
            joined = {run["class"] for run in outcome.result["joined"] if run["kind"] == "compile"}
            assert "MIPROv2" in joined
            result = job.result(timeout=180)
            assert result == control.result(timeout=180)
            stats = job_stats(directory / f"{job.pid}.sock")
            assert_matches_server(stats, sim.stats())
            # The joined run ends once its frame has left the stack (the attach watcher looks twice a second).
            run = wait_for(
                lambda: next(
                    (
                        r
                        for r in snapshot_json(job.pid, directory)["optimizers"]
                        if r["class"] == "MIPROv2" and r["state"] == "done"
                    ),
                    None,
                ),
                timeout=30,
                what="the joined MIPROv2 run ended",
            )
            assert run["joined_at"] is not None
            missed = run["missed_trials"]
            assert isinstance(missed, int) and missed >= 3  # the default program and trials 2, 3 at least
            # Every evaluation MIPROv2 logged is either missed or a trial numbered as dspy-top numbers them.
            logs = result["trial_logs"]
            assert missed + len(run["trials"]) == len(logs)
            for trial in run["trials"]:
                assert trial["number"] >= missed
                if trial["joined"]:
                    continue  # the evaluation under way at the attach: its score is seen, its calls are not
                assert trial["score"] == logs[str(trial["number"] + 1)]["full"]
        finally:
            job.close()
            control.close()


@pytest.mark.slow
def test_twenty_attach_detach_cycles_leave_a_busy_job_healthy(directory):
    with SimLM(latency_scale=0.02) as sim:
        job = PlainJob("busy", 0, sim.base_url, directory)
        try:
            wait_for(lambda: sim.stats()["requests"] >= 50, what="the busy job's calls")
            baseline = job.status()
            baseline_unix = unix_socket_fds(job.pid)
            baseline_files = _files(job.pid)
            socket_path = directory / f"{job.pid}.sock"
            for cycle in range(20):
                outcome = session.attach(job.pid, runtime_dir=directory)
                assert outcome.status == "attached", cycle
                # The main thread joins the busy threads (a futex wait): the attach interrupted that wait,
                # at once or, when the main thread entered it just after the code was queued, a moment later.
                assert outcome.timings["queued"]["nudged_main"] or outcome.timings["nudges"] > 0
                assert job_stats(socket_path, settled=False)["totals"]["calls"] > 0
                assert session.detach(job.pid, runtime_dir=directory).status == "detached"
                assert not socket_path.exists()
            status = wait_for(
                lambda: (lambda s: s if s["tasks"] == baseline["tasks"] else None)(job.status()),
                timeout=10,
                what="dspy-top's threads gone",
            )
            assert status["threads"] == baseline["threads"]
            assert status["dspy_top_hooks"] is False
            assert unix_socket_fds(job.pid) == baseline_unix
            assert _files(job.pid) == baseline_files
            calls_then = status["calls"]
            wait_for(lambda: job.status()["calls"] > calls_then + 20, what="the job still calling")
            job.send("stop")
            assert job.result() == {"calls": job.result()["calls"], "errors": 0}
            assert job.proc.poll() is None
        finally:
            assert job.close() == 0


def _files(pid: int) -> list[str]:
    """The process's descriptors other than sockets (its HTTP connections come and go)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("socket:"):
            out.append(target)
    return sorted(out)


@pytest.mark.slow
def test_attaching_twice_is_harmless_and_detach_leaves_no_hooks(directory):
    with SimLM(latency_scale=0.05) as sim:
        job = PlainJob("busy", 0, sim.base_url, directory)
        try:
            wait_for(lambda: sim.stats()["requests"] >= 20, what="the job's calls")
            # `-p PID --attach` attaches first, then shows it (here in batch mode).
            first = dspy_top("-p", str(job.pid), "--attach", "-b", "-n", "1", "--json", runtime_dir=directory)
            assert first.returncode == 0, first.stderr
            assert "attached to pid" in first.stderr
            process = json.loads(first.stdout.splitlines()[-1])["processes"][0]
            assert process["pid"] == job.pid and process["before_attach"]["calls"] >= 20
            again = dspy_top("attach", str(job.pid), runtime_dir=directory)
            assert again.returncode == 0 and "already instrumented" in again.stderr
            # Through another runtime directory the socket is not seen: the job itself says it is attached.
            other = runtime_dir()
            outcome = session.attach(job.pid, runtime_dir=other)
            assert outcome.status == "already" and outcome.result["how"] == "attached"
            shutil.rmtree(other, ignore_errors=True)
            detached = dspy_top("detach", str(job.pid), runtime_dir=directory)
            assert detached.returncode == 0 and "detached" in detached.stderr
            assert job.status()["dspy_top_hooks"] is False
            job.send("stop")
            assert job.result()["errors"] == 0
        finally:
            job.close()


MISSED_WAKE_JOB = r"""
import _testcapi, sys, threading, time
lock = threading.Lock()
lock.acquire()

def queue():
    time.sleep(0.2)  # the main thread is in its lock wait by now
    _testcapi._pending_threadfunc(lambda: print("RAN", flush=True))
    print("QUEUED", flush=True)

threading.Thread(target=queue, daemon=True).start()
print("WAITING", flush=True)
lock.acquire()  # forever: only a pending call that wakes it runs
"""


def test_nudge_wakes_a_main_thread_that_entered_its_lock_wait_after_the_code_was_queued():
    # A pending call queued while the main thread sits in a futex wait is run only once that wait
    # returns: the attach's first nudge misses a main thread that entered the wait a moment later.
    job = subprocess.Popen([sys.executable, "-c", MISSED_WAKE_JOB], stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "WAITING"
        assert job.stdout.readline().strip() == "QUEUED"
        wait_for(lambda: session.main_thread_activity(job.pid) == "it waits in futex (a lock)", what="the wait")
        ready, _, _ = select.select([job.stdout], [], [], 0.5)
        assert not ready, "the pending call ran without a nudge"
        assert gdb.nudge(job.pid) is True
        ready, _, _ = select.select([job.stdout], [], [], 10.0)
        assert ready and job.stdout.readline().strip() == "RAN"
        assert job.poll() is None  # woken as by a signal: the wait goes on, the job is unharmed
    finally:
        job.kill()
        job.wait()
