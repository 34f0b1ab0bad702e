"""`dspy-top run` records by default (each process its own file, one run id, the log kept beside
them), `dspy-top runs` lists the runs, and `dspy-top export` writes their calls out: JSON lines,
CSV and DSPy's inspect_history text, adding up to the job's own totals; bad files are named."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top.recording import Recording, RecordingWriter, export
from dspy_top.simlm import SimLM
from tests.helpers.recorded import RECORD_JOB, REPO

PY = sys.executable


def dspy_top(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "dspy_top", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A run of two processes (a shell wrapper's children) recorded by `dspy-top run`, and the LM's count."""
    tmp = tmp_path_factory.mktemp("runs")
    env = {
        **os.environ,
        "DSPY_TOP_STATE_DIR": str(tmp / "state"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DSPY_TOP_RUNTIME_DIR": str(tmp / "rt"),
        "DSPY_TOP_CONFIG": str(tmp / "none.toml"),
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp),
    }
    env.pop("DSPY_TOP", None)
    with SimLM(latency_scale=0.0) as sim:
        env["SIM_URL"] = sim.base_url
        wrapper = f"{PY} {RECORD_JOB} --run 3 --threads 2 & {PY} {RECORD_JOB} --run 2; wait"
        result = dspy_top("run", "-b", "--json", "-d", "0.5", "--", "sh", "-c", wrapper, env=env)
        served = sim.stats()
    assert result.returncode == 0, result.stderr
    return {"env": env, "result": result, "served": served, "runs": tmp / "state" / "runs", "tmp": tmp}


@pytest.mark.slow
def test_run_records_every_process_of_the_job_and_keeps_its_log(recorded):
    runs_dir, result = recorded["runs"], recorded["result"]
    assert f"recording to {runs_dir}" in result.stderr
    files = sorted(runs_dir.glob("*.dtop"))
    logs = list(runs_dir.glob("*.log"))
    assert len(files) == 2 and len(logs) == 1
    assert logs[0].read_text().count("DONE") == 2  # the job's output, kept with its recordings
    hellos = []
    for path in files:
        with Recording(path) as recording:
            hellos.append(recording.hello)
            assert recording.end_state().complete
    assert hellos[0]["run_id"] == hellos[1]["run_id"] == logs[0].stem
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["totals"]["calls"] == recorded["served"]["requests"] == 10


def test_runs_lists_the_run_with_its_processes_calls_and_log(recorded):
    listed = dspy_top("runs", "--json", env=recorded["env"])
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert shown["directory"] == str(recorded["runs"]) and shown["unreadable"] == []
    (run,) = shown["runs"]
    served = recorded["served"]
    assert run["processes"] == 2 and run["calls"] == served["requests"] == 10
    assert run["state"] == "complete" and run["cost_usd"] > 0 and run["best_score"] is None
    assert run["log"] and Path(run["log"]).exists() and run["size"] > 0
    assert "record_job.py --run" in run["command"] and run["duration_s"] >= 0
    assert sorted(r["calls"] for r in run["recordings"]) == [4, 6]
    table = dspy_top("runs", env=recorded["env"])
    lines = table.stdout.splitlines()
    assert lines[1].split()[:3] == ["START", "DURATION", "PROCS"] and "record_job.py" in lines[2]
    assert lines[2].split()[3:5] == ["2", "10"]


@pytest.mark.slow
def test_export_jsonl_and_csv_rows_add_up_to_the_lm_servers_count(recorded):
    env, served = recorded["env"], recorded["served"]
    jsonl = dspy_top("export", "latest", env=env)
    assert jsonl.returncode == 0 and jsonl.stderr == ""
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(rows) == served["requests"] == 10 and list(rows[0]) == list(export.COLUMNS)
    assert sum(r["prompt_tokens"] for r in rows) == served["prompt_tokens"]
    assert sum(r["completion_tokens"] for r in rows) == served["completion_tokens"]
    assert len({r["pid"] for r in rows}) == 2 and all(r["model"] == "openai/gpt-4o-mini" for r in rows)
    threaded = [r for r in rows if r["eval"]]
    assert len(threaded) == 6 and {r["trial"] for r in threaded} == {1}  # a plain Evaluate is its own trial 1
    assert all(r["time"].startswith(r["time"][:4]) and r["latency_s"] >= 0 for r in rows)
    as_csv = dspy_top("export", "latest", "--format", "csv", env=env)
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(table) == 10 and tuple(table[0]) == export.COLUMNS
    assert sum(int(r["prompt_tokens"]) for r in table) == served["prompt_tokens"]
    assert sum(float(r["cost_usd"]) for r in table) == pytest.approx(sum(r["cost_usd"] for r in rows))
    with_payloads = dspy_top("export", "latest", "--payloads", env=env)
    full = [json.loads(line) for line in with_payloads.stdout.splitlines()]
    assert all(r["messages"][0]["role"] == "system" and "What is" in r["messages"][-1]["content"] for r in full)
    assert all("[[ ## " in r["response"][0] for r in full)


def test_export_inspect_prints_the_last_calls_as_dspy_does(recorded):
    shown = dspy_top("export", "latest", "--format", "inspect", "-n", "2", env=recorded["env"])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.count("System message:") == 2 and text.count("User message:") == 2
    assert text.count("Response:") == 2 and "[[ ## completed ## ]]" in text
    assert "\x1b[" not in text  # no colours in a pipe
    assert text.startswith("\n\n\n\n[") and text.rstrip("\n").endswith("]")


def written(path: Path, ticks: int, calls: int) -> None:
    """A recording of `ticks` writes of `calls` calls each, as the server thread writes them."""
    from dspy_top.instrumentation.recorder import Recorder

    recorder = Recorder()
    writer = RecordingWriter.create(path, {"t": "hello", "pid": 9})
    writer.add({"t": "snapshot", **recorder.snapshot()})
    for _ in range(ticks):
        for number in range(calls):
            recorder.finish(recorder.begin("P.predict", "Predict", ("P",), "m"), prompt_tokens=number, cost=0.1)
        events, stats = recorder.drain_and_stats()
        writer.add_events(events)
        writer.add({"t": "stats", **stats})
        writer.flush(force=True)
    writer.close({"t": "exit", "at": 1.0, "stats": recorder.stats()})


def test_export_names_a_damaged_or_foreign_file_and_writes_what_it_can(recorded, tmp_path):
    whole = tmp_path / "whole.dtop"
    written(whole, ticks=10, calls=30)
    data = whole.read_bytes()
    cut = tmp_path / "cut.dtop"
    cut.write_bytes(data[: len(data) // 2])
    with Recording(cut) as recording:
        list(recording.messages())
        between_frames = not recording.damage
    if between_frames:  # the half fell where one frame ends and the next begins (about one file in 200)
        cut.write_bytes(data[: len(data) // 2 + 1])  # a byte on: inside the frame, as a cut file mostly is
    env = recorded["env"]
    damaged = dspy_top("export", str(cut), env=env)
    assert damaged.returncode == 1 and "Traceback" not in damaged.stderr
    assert f"{cut}: the file ends inside a frame" in damaged.stderr and "(at byte " in damaged.stderr
    with Recording(cut) as recording:
        readable = sum(len(m["rows"]) for m in recording.messages() if m["t"] == "calls")
    assert 0 < len(damaged.stdout.splitlines()) == readable < 300  # what is before the damage, written
    foreign = tmp_path / "notes.dtop"
    foreign.write_text("just some notes\n")
    refused = dspy_top("export", str(foreign), env=env)
    assert refused.returncode == 1 and f"{foreign}: not a dspy-top recording" in refused.stderr
    assert "at byte 0" in refused.stderr and refused.stdout == ""
    unknown = dspy_top("export", "no-such-run", env=env)
    assert unknown.returncode == 2 and "neither a recording file nor a run id" in unknown.stderr


def test_export_says_when_the_rows_cannot_add_up_to_the_totals(tmp_path):
    """A recording begun mid-run (its snapshot counts calls made before it) is exported, and said so."""
    writer = RecordingWriter.create(tmp_path / "late.dtop", {"t": "hello", "pid": 7})
    writer.add({"t": "snapshot", "seq": 0, "calls": [], "stats": {"totals": {"calls": 100, "prompt_tokens": 900}}})
    writer.add(
        {
            "t": "calls",
            "fields": ["seq", "id", "start", "latency", "prompt_tokens"],
            "rows": [[1, 101, 1.0e9, 0.5, 9], [2, 102, 1.0e9, 0.25, 9]],
        }
    )
    writer.close({"t": "exit", "at": 1.0e9 + 1, "stats": {"totals": {"calls": 102, "prompt_tokens": 918}}})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = dspy_top("export", str(tmp_path / "late.dtop"), env=env)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    assert "do not add up to the process's totals (calls 2 in the rows, 102 in the process's totals" in done.stderr
    assert "the recording began after the process's first calls" in done.stderr


@pytest.mark.slow
def test_run_record_file_and_no_record(tmp_path):
    env = {
        **os.environ,
        "DSPY_TOP_STATE_DIR": str(tmp_path / "state"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DSPY_TOP_RUNTIME_DIR": str(tmp_path / "rt"),
        "DSPY_TOP_CONFIG": str(tmp_path / "none.toml"),
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp_path),
    }
    env.pop("DSPY_TOP", None)
    target = tmp_path / "mine.dtop"
    with SimLM(latency_scale=0.0) as sim:
        env["SIM_URL"] = sim.base_url
        done = dspy_top("run", "-b", "--record", str(target), "--", PY, str(RECORD_JOB), "--run", "2", env=env)
        assert done.returncode == 0, done.stderr
        with Recording(target) as recording:
            assert recording.end_state().totals["calls"] == 4 == sim.stats()["requests"]
        assert "DONE 4" in target.with_suffix(".log").read_text()
        again = dspy_top("run", "-b", "--record", str(target), "--", PY, str(RECORD_JOB), "--run", "1", env=env)
        assert again.returncode == 2 and f"{target} exists" in again.stderr
        assert sim.stats()["requests"] == 4  # refused before the job started
        off = dspy_top("run", "-b", "--no-record", "--", PY, str(RECORD_JOB), "--run", "1", env=env)
        assert off.returncode == 0 and "recording" not in off.stderr
    assert not list((tmp_path / "state").glob("runs/*"))


def test_a_runs_files_are_found_by_its_id_and_its_script_named_as_the_job_sees_it(recorded):
    from dspy_top.run import record

    files = sorted(recorded["runs"].glob("*.dtop"))
    with Recording(files[0]) as recording:
        run_id = recording.hello["run_id"]
    found = record.RunRecording(run_id, "1", recorded["runs"], None, started_at=0.0).files()
    assert sorted(found) == files and record.RunRecording("other", "1", recorded["runs"], None, 0.0).files() == []
    assert record.job_argv([PY, "-u", "-X", "dev", "job.py", "--x"]) == ["job.py", "--x"]
    assert record.job_argv(["python3.11", "-m", "pkg.mod"]) == ["-m", "pkg.mod"]
    assert record.job_argv(["./run_eval.sh", "a"]) == ["./run_eval.sh"]
    assert record.new_run_id(["python", "demos/optimize.py"]).endswith(f"-{os.getpid()}-optimize")


def test_a_copy_of_a_process_file_is_listed_as_a_copy_and_never_counted_twice(recorded, tmp_path):
    """A backup of one process's file and a copy of the other taken while it was written (cut part
    way) beside the originals: the run still has 2 processes and the LM server's 10 calls, export
    of the run writes each call once, and its replay (`latest`, or the directory) shows each
    process once."""
    copied = tmp_path / "copied"
    copied.mkdir()
    originals = sorted(recorded["runs"].glob("*.dtop"))
    for path in [*originals, *recorded["runs"].glob("*.log")]:
        (copied / path.name).write_bytes(path.read_bytes())
    backup = copied / f"backup-{originals[0].name}"
    backup.write_bytes(originals[0].read_bytes())
    data = originals[1].read_bytes()
    partial = copied / f"partial-{originals[1].name}"
    partial.write_bytes(data[: len(data) * 3 // 5])
    env = recorded["env"]
    listed = dspy_top("runs", "--dir", str(copied), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)["runs"]
    assert run["processes"] == 2 and run["calls"] == recorded["served"]["requests"] == 10
    assert sorted(r["calls"] for r in run["recordings"]) == [4, 6]
    assert sorted(Path(r["path"]).name for r in run["recordings"]) == [p.name for p in originals]
    assert sorted(run["copies"]) == sorted([str(backup), str(partial)])
    exported = dspy_top("export", run["run_id"], "--dir", str(copied), env=env)
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == 10 and len({r["pid"] for r in rows}) == 2
    table = dspy_top("runs", "--dir", str(copied), env=env)
    assert table.stdout.splitlines()[2].split()[3:5] == ["2", "10"]
    # `latest` names the newest file, here the partial copy: its run is replayed, each process once.
    assert max(copied.glob("*.dtop"), key=lambda p: p.stat().st_mtime) == partial
    replayed = dspy_top("replay", "latest", "--dir", str(copied), "-b", "-n", "1", "--json", env=env)
    assert replayed.returncode == 0, replayed.stderr
    end = json.loads(replayed.stdout.strip().splitlines()[-1])
    assert sorted(p["calls"] for p in end["processes"]) == [4, 6] and end["totals"]["calls"] == 10
    # The directory itself, replayed: each process once too (its four files, two of them copies).
    whole = dspy_top("replay", str(copied), "-b", "-n", "1", "--json", env=env)
    assert whole.returncode == 0, whole.stderr
    end = json.loads(whole.stdout.strip().splitlines()[-1])
    assert sorted(p["calls"] for p in end["processes"]) == [4, 6] and end["totals"]["calls"] == 10
