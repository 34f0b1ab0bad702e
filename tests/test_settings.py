"""Every setting is checked in one place: a bad one never raises into a job (it is said once on
stderr and ignored), while `dspy-top run`, `dspy-top demo` and the viewer refuse it up front."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dspy_top import config
from dspy_top.pricing import Price

REPO = Path(__file__).resolve().parents[1]
BAD_ENV = {
    "DSPY_TOP_VIEWER_BUFFER": "lots",
    "DSPY_TOP_BUDGET": "abc",
    "DSPY_TOP_ON_EXCEED": "explode",
    "DSPY_TOP_PRICES": "garbage",
    "DSPY_TOP_HISTORY": "-5",
    "DSPY_TOP_HISTORY_BYTES": "huge",
    "DSPY_TOP_QUEUE": "1e99",
    "DSPY_TOP_MAX_VIEWERS": "many",
    "DSPY_TOP_EXIT_WAIT": "soon",
}


def test_each_bad_setting_is_named_and_left_at_its_default():
    settings, problems = config.job_settings(environ=BAD_ENV, file={})
    assert settings == config.JobSettings()
    assert len(problems) == len(BAD_ENV)
    for name, value in BAD_ENV.items():
        assert any(problem.startswith(f"{name}={value!r}: ") for problem in problems), name


def test_good_settings_are_read_from_arguments_the_environment_and_the_file():
    environ = {
        "DSPY_TOP_VIEWER_BUFFER": "4MiB",
        "DSPY_TOP_MAX_VIEWERS": "8",
        "DSPY_TOP_BUDGET": "2.5",
        "DSPY_TOP_PRICES": "m/a=1/2, m/b=3/4/0.5",
        "DSPY_TOP_EXIT_WAIT": "3",
    }
    file = {"prices": {"m/a": "9/9", "m/c": [5, 6]}, "budget": {"usd": 7, "on_exceed": "stop", "modules": {"A.b": 1}}}
    settings, problems = config.job_settings({"history": 50, "prices": {"m/d": "1/1"}}, environ, file)
    assert problems == []
    assert settings.viewer_buffer == 4 * 1024 * 1024 and settings.max_viewers == 8 and settings.history == 50
    assert settings.exit_wait == 3.0 and settings.budget_usd == 2.5 and settings.on_exceed == "stop"
    assert settings.prices == {"m/a": Price(1, 2), "m/b": Price(3, 4, 0.5), "m/c": Price(5, 6), "m/d": Price(1, 1)}
    assert settings.module_budgets == {"A.b": 1.0}


def test_bad_values_in_the_config_file_are_named_with_where_they_are():
    file = {"prices": {"ok": "1/2", "bad": 5, "worse": "1/x"}, "budget": {"usd": "abc", "models": [1]}}
    settings, problems = config.job_settings(environ={}, file=file)
    assert settings.prices == {"ok": Price(1, 2)} and settings.budget_usd is None
    assert problems == [
        "config file [prices] 'bad'=5: price 5: expected \"IN/OUT\", (IN, OUT) or {input, output}",
        "config file [prices] 'worse'='1/x': price 'worse=1/x': rates must be numbers",
        "config file [budget] usd='abc': expected an amount in USD, e.g. 5 or 0.25",
        "config file [budget.models]=[1]: expected a table of name = USD",
    ]


JOB = """
import json, os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import dspy
from dspy.utils.dummies import DummyLM
import dspy_top
handle = dspy_top.instrument(**json.loads(sys.argv[1]))
handle = dspy_top.instrument(**json.loads(sys.argv[1]))  # twice: each warning still said once
dspy.configure(lm=DummyLM([{"answer": "4"}] * 10))
answer = dspy.Predict("question -> answer")(question="2 + 2?").answer
print(json.dumps({"answer": answer, "calls": handle.stats()["totals"]["calls"],
                  "serving": handle.socket_path is not None}))
"""


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {
            "on_exceed": "explode",
            "budget_usd": "abc",
            "prices": {"m": "x"},
            "history": "many",
            "module_budgets": {"A": "lots"},
        },
    ],
)
@pytest.mark.slow
def test_a_job_with_bad_settings_runs_instrumented_and_hears_of_each_once(tmp_path, arguments):
    config_file = tmp_path / "config.toml"
    config_file.write_text('[budget]\nusd = "abc"\n[prices]\n"m/x" = "1/2/3/4"\n')
    env = {
        **os.environ,
        **BAD_ENV,
        "DSPY_TOP": "1",
        "DSPY_TOP_CONFIG": str(config_file),
        "DSPY_TOP_RUNTIME_DIR": tempfile.mkdtemp(prefix="dt", dir="/tmp"),
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-c", JOB, json.dumps(arguments)], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"answer": "4", "calls": 1, "serving": True}
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("dspy-top: ignoring a bad setting: ")]
    assert len(warnings) == len(set(warnings)) >= len(BAD_ENV) + 2 + len(arguments)
    for name in BAD_ENV:
        assert any(f"{name}=" in line for line in warnings), name
    assert any("config file [budget] usd='abc'" in line for line in warnings)


def dspy_top(*args, env=None, cwd=None):
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop("DSPY_TOP", None)
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", *args], capture_output=True, text=True, env=environment, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize(
    "setting",
    [
        {"DSPY_TOP_BUDGET": "abc"},
        {"DSPY_TOP_ON_EXCEED": "explode"},
        {"DSPY_TOP_PRICES": "garbage"},
        {"DSPY_TOP_VIEWER_BUFFER": "lots"},
        {"DSPY_TOP_MAX_VIEWERS": "0"},
        "config file",
    ],
)
def test_run_and_demo_refuse_a_bad_setting_before_starting_anything(tmp_path, setting):
    marker = tmp_path / "started"
    env = {"DSPY_TOP_RUNTIME_DIR": str(tmp_path / "rt"), "DSPY_TOP_CONFIG": str(tmp_path / "none.toml")}
    if setting == "config file":
        (tmp_path / "config.toml").write_text('[budget]\non_exceed = "explode"\n')
        env["DSPY_TOP_CONFIG"] = str(tmp_path / "config.toml")
        said = "config file [budget] on_exceed='explode'"
    else:
        env.update(setting)
        ((name, value),) = setting.items()
        said = f"{name}={value!r}"
    done = dspy_top("run", "-b", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')", env=env)
    assert done.returncode == 2
    assert f"dspy-top run: bad setting: {said}" in done.stderr
    assert "Traceback" not in done.stderr and not marker.exists()
    demo = dspy_top("demo", "-b", "--speed", "0", env=env)
    assert demo.returncode == 2 and f"dspy-top demo: bad setting: {said}" in demo.stderr


def test_the_viewer_refuses_a_bad_price_up_front(tmp_path):
    done = dspy_top("-b", "-n", "1", env={"DSPY_TOP_PRICES": "garbage", "DSPY_TOP_RUNTIME_DIR": str(tmp_path)})
    assert done.returncode == 2 and "dspy-top: bad setting: DSPY_TOP_PRICES='garbage'" in done.stderr
