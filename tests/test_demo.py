"""`dspy-top demo` and the demo scripts: real DSPy programs on the simulated LM, watched by dspy-top.

Small sizes at `--speed 0` finish in seconds; the live view is checked in tmux.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top import demo
from tests.jobs.terminal import SKIP_REASON, Terminal, header_numbers

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--speed", "0", "--questions", "4", "--train", "8", "--dev", "8"]


def dspy_top(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env=env or dict(os.environ),
    )


def test_a_known_providers_missing_key_is_named():
    assert demo.missing_key("openai/gpt-4o-mini", {}) == "OPENAI_API_KEY"
    assert demo.missing_key("openai/gpt-4o-mini", {"OPENAI_API_KEY": "k"}) is None
    assert demo.missing_key("gemini/gemini-2.0-flash", {"GOOGLE_API_KEY": "k"}) is None
    assert demo.missing_key("ollama_chat/llama3", {}) is None  # unknown providers are not second-guessed


def test_model_without_its_key_is_a_usage_error(runtime):
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    result = dspy_top("demo", "-b", "--model", "anthropic/claude-3-5-haiku-latest", env=env)
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_both_optimizers_on_the_simulated_lm(runtime, monkeypatch, tmp_path):
    monkeypatch.setenv("DSPY_TOP_STATE_DIR", str(tmp_path / "state"))
    result = dspy_top("demo", "-b", "--json", *SMALL)
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    totals = final["totals"]
    assert totals["calls"] > 100 and totals["cost_usd"] > 0 and totals["prompt_tokens"] > 0
    assert totals["cache_hits"] > 0  # optimizers repeat prompts; the in-memory cache answers them
    paths = {m["path"] for m in final["modules"]}
    assert {
        "WarehouseQA.write_query.predict",
        "WarehouseQA.agent.react",
        "Solver.plan",
        "Solver.solve.predict",
    } <= paths
    compiles = {s["label"] for s in final["scopes"] if s["kind"] == "compile"}
    assert {"BootstrapFewShot", "MIPROv2"} <= compiles
    assert any(s["kind"] == "eval" and s["done"] == 8 for s in final["scopes"])
    assert [p["state"] for p in final["processes"]] == ["ended"]
    # The optimizer view's data: MIPROv2 ran every trial it planned; the evaluations around it are runs too.
    runs = {o["class"]: o for o in final["optimizers"] if o["depth"] == 0}
    mipro = runs["MIPROv2"]
    assert mipro["state"] == "done" and mipro["trials_planned"] == len(mipro["trials"]) > 1
    assert mipro["best_score"] == max(t["score"] for t in mipro["trials"] if t["full"] and t["score"] is not None)
    assert runs["BootstrapFewShot"]["state"] == "done" and runs["Evaluate"]["trials"][0]["total"] == 8
    # Recorded by default, with its output: the same final numbers and the same best score, after the end.
    from dspy_top.recording.summary import list_runs

    (recording,), errors = list_runs(tmp_path / "state" / "runs")
    assert not errors and recording.state == "complete" and recording.best_score == mipro["best_score"]
    assert recording.calls == totals["calls"]
    assert recording.cost_usd == pytest.approx(totals["cost_usd"], rel=1e-12)  # summed in another order
    assert len(list((tmp_path / "state" / "runs").glob("*.log"))) == 1


@pytest.mark.parametrize(
    "script, args",
    [
        ("rag_react.py", ["--questions", "3"]),
        ("optimize.py", ["--train", "6", "--dev", "6", "--no-mipro"]),
        ("async_batch.py", ["--questions", "6"]),
    ],
)
@pytest.mark.slow
def test_each_demo_script_runs_under_dspy_top_run(runtime, script, args):
    result = dspy_top("run", "-b", "--json", "--", sys.executable, f"demos/{script}", "--speed", "0", *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["totals"]["calls"] > 0


@pytest.mark.slow
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
@pytest.mark.timeout(180)
def test_demo_live_view_in_a_terminal_grows_then_stays_until_q(runtime, tmp_path):
    command = [
        sys.executable,
        "-m",
        "dspy_top",
        "demo",
        "-d",
        "0.3",
        "--speed",
        "0.05",
        "--questions",
        "8",
        "--train",
        "8",
        "--dev",
        "8",
    ]
    term = Terminal(
        command,
        tmp_path / "status",
        cwd=REPO,
        env={"DSPY_TOP_RUNTIME_DIR": str(runtime), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    try:
        first = header_numbers(term.wait_for(lambda s: (header_numbers(s) or (0, 0))[0] > 0, "the first calls"))
        later = header_numbers(
            term.wait_for(
                lambda s: (header_numbers(s) or (0, 0))[0] > first[0] + 20 and header_numbers(s)[1] > first[1],
                "the call count and the cost growing",
            )
        )
        assert later[0] > first[0] and later[1] > first[1]
        screen = term.wait_for(lambda s: "exited with code 0" in s, "the demo finishing", timeout=150)
        assert "Solver" in screen and "demo finished" in screen
        term.keys("q")
        assert term.exit_status() == 0
    finally:
        term.close()
