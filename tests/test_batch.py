"""`dspy-top -b`: text like `top -b`, JSON per docs/batch-json.md, exit status says whether anything attached."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dspy_top import cli
from tests.helpers.jobs import REPO, runtime_dir, start_job

pytestmark = pytest.mark.timeout(90)


def dspy_top(directory, *args, timeout=30):
    env = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(directory), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def job():
    directory = runtime_dir()
    process = start_job(directory, lm="sim", cache=True, errors=3)
    truth = process.run(6)
    yield directory, process, truth
    process.kill()


@pytest.mark.slow
def test_json_snapshot_holds_the_jobs_exact_numbers(job):
    directory, process, truth = job
    result = dspy_top(directory, "-b", "-n", "1", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert [p["pid"] for p in data["processes"]] == [process.pid]
    totals = data["totals"]
    for name in ("calls", "prompt_tokens", "completion_tokens", "cache_hits", "errors", "retries"):
        assert totals[name] == truth["totals"][name], name
    assert totals["cost_usd"] == pytest.approx(truth["totals"]["cost_usd"])
    assert totals["cache_hits"] > 0 and totals["calls"] == 12
    modules = {m["path"]: m for m in data["modules"]}
    assert set(modules) == {m["path"] for m in truth["modules"]}
    for entry in truth["modules"]:
        assert modules[entry["path"]]["calls"] == entry["calls"]
        assert modules[entry["path"]]["cost_usd"] == pytest.approx(entry["cost_usd"])
    models = {m["model"]: m for m in data["models"]}
    assert models["openai/gpt-4o-mini"]["calls"] == truth["totals"]["calls"]
    assert models["openai/gpt-4o-mini"]["cache_hits"] == truth["totals"]["cache_hits"]


@pytest.mark.slow
def test_text_frames_like_top_b_and_pid_selection(job):
    directory, process, truth = job
    result = dspy_top(directory, "-b", "-n", "2", "-d", "0.2", "-p", str(process.pid))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("dspy-top - ") == 2
    assert f"{truth['totals']['calls']:,} calls" in out
    assert "RAG.generate_query.predict" in out and "openai/gpt-4o-mini" in out
    assert str(process.pid) in out


def test_nothing_attached_exits_1_and_says_how_to_start_a_job():
    result = dspy_top(runtime_dir(), "-b", "-n", "1", "--json")
    assert result.returncode == 1
    assert "dspy-top run" in result.stderr
    assert json.loads(result.stdout)["processes"] == []


def test_help_is_complete_and_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "-p PID",
        "--socket PATH",
        "-d SECONDS",
        "-b, --batch",
        "-n N",
        "--json",
        "dspy-top run",
        "dspy-top demo",
        "DSPY_TOP_RUNTIME_DIR",
    ):
        assert option in text, option
    for bad in (["-n", "0", "-b"], ["--json"], ["-d", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(bad)
        assert exit_info.value.code == 2


def test_subcommands_dispatch_lazily(monkeypatch):
    """`dspy-top run ...` and `dspy-top demo ...` hand their arguments to the subcommand's main, imported only then."""
    import dspy_top.demo
    import dspy_top.run

    monkeypatch.setattr(dspy_top.run, "main", lambda argv: 7 if argv == ["--", "python", "job.py"] else 0)
    monkeypatch.setattr(dspy_top.demo, "main", lambda argv: 5 if argv == ["--speed", "0"] else 0)
    assert cli.main(["run", "--", "python", "job.py"]) == 7
    assert cli.main(["demo", "--speed", "0"]) == 5
    code = (
        "import sys; from dspy_top import cli; cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('dspy_top.run', 'dspy_top.demo'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_one_snapshot_of_a_busy_job_reads_its_recent_rates_not_zero():
    """`dspy-top -b -n 1`: the first frame's recent calls give the rates (issue 18)."""
    import json
    import os
    import subprocess
    import sys

    from tests.helpers.jobs import REPO, runtime_dir, start_job

    directory = runtime_dir()
    job = start_job(directory, lm="sim")  # the simulated LM: real token counts and prices
    try:
        job.run(10)
        result = subprocess.run(
            [sys.executable, "-m", "dspy_top", "-b", "-n", "1", "--json", "-p", str(job.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "DSPY_TOP_RUNTIME_DIR": str(directory)},
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        rates = data["rates"]  # over the last minute: the calls just made
        assert rates["tokens_per_sec"] > 0 and rates["cost_per_min"] > 0
        assert data["totals"]["calls"] == 20
        (model,) = data["models"]
        assert "output_tokens_per_sec" in model and "output_tokens_per_sec" in data["totals"]
    finally:
        job.kill()
