"""`dspy-top run`: a job instrumented with no code change, its output in a pane, its exit status passed on.

Pure tests for the helpers; batch mode (`-b`) end to end in a subprocess; the live view in
a real terminal (tmux) for a job that prints a lot, crashes, exits non-zero, or gets ctrl+c.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dspy_top import run
from tests.jobs.terminal import SKIP_REASON, Terminal

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
JOB = HERE / "jobs" / "run_job.py"


def dspy_top_run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# --- pure helpers ------------------------------------------------------------------------------


def test_split_command_at_double_dash_or_first_word():
    assert run.split_command(["-b", "--", "python", "job.py", "--", "-x"]) == (["-b"], ["python", "job.py", "--", "-x"])
    assert run.split_command(["-d", "2", "python", "-m", "pkg"]) == (["-d", "2"], ["python", "-m", "pkg"])
    assert run.split_command(["--log", "/tmp/x", "-b", "./wrap.sh", "-b"]) == (
        ["--log", "/tmp/x", "-b"],
        ["./wrap.sh", "-b"],
    )
    assert run.split_command(["-b"]) == (["-b"], [])
    assert run.split_command(["--budget", "5", "--on-exceed", "stop", "--price", "m=1/2", "python", "x.py"]) == (
        ["--budget", "5", "--on-exceed", "stop", "--price", "m=1/2"],
        ["python", "x.py"],
    )


def test_budget_and_prices_reach_the_jobs_environment_and_given_prices_win():
    args = run.build_parser().parse_args(
        ["--budget", "2.5", "--on-exceed", "raise", "--price", "openai/a=0.15/0.6", "--price", "openai/b=1/2/0.5"]
    )
    env = run.money_environment(args, {"DSPY_TOP_PRICES": "openai/a=9/9"})
    assert env["DSPY_TOP_BUDGET"] == "2.5" and env["DSPY_TOP_ON_EXCEED"] == "raise"
    # Parsed left to right, the later entry for a model wins: the command line beats the inherited value.
    assert env["DSPY_TOP_PRICES"] == "openai/a=9/9,openai/a=0.15/0.6,openai/b=1.0/2.0/0.5"
    assert run.money_environment(run.build_parser().parse_args([]), {"DSPY_TOP_PRICES": "x=1/1"}) == {}


def test_clean_output_drops_colours_and_shows_a_redrawn_line_once_finished():
    shown, held = run.clean_output("\x1b[31mred\x1b[0m\nbar  10%\rbar  50%\rbar 100%\nnext\r 3%")
    assert shown == "red\nbar 100%\n"
    assert held == "\r 3%"
    shown, held = run.clean_output(held + "\r 90%\rdone\n")
    assert (shown, held) == ("done\n", "")
    assert run.clean_output("partial line") == ("partial line", "")
    assert run.clean_output("crlf\r\nbell\x07\n") == ("crlf\nbell\n", "")


def test_exit_status_is_a_shells():
    assert run.exit_status(0) == 0
    assert run.exit_status(3) == 3
    assert run.exit_status(-signal.SIGINT) == 130
    assert run.exit_status(-signal.SIGKILL) == 137


def test_descends_from_follows_parents_to_the_job():
    parents = {30: 20, 20: 10, 10: 1, 40: 1, 50: 40}
    assert run.descends_from(30, 10, parent=parents.get)
    assert run.descends_from(10, 10, parent=parents.get)
    assert not run.descends_from(40, 10, parent=parents.get)
    assert run.descends_from(50, 10, known={40}, parent=parents.get)  # reparented, but known to be the job's
    assert not run.descends_from(99, 10, parent=parents.get)
    assert run.descends_from(os.getpid(), os.getppid())  # the real /proc


@pytest.mark.slow
def test_a_flood_of_output_is_skipped_to_its_tail_and_kept_whole_in_the_file(runtime, tmp_path):
    log = tmp_path / "job.log"
    job = run.start_job(
        [
            sys.executable,
            "-c",
            "import sys\nfor i in range(100000): print('line', i)\nsys.stdout.write('bar 1%\\rbar 99%')",
        ],
        log_path=log,
    )
    try:
        assert job.wait(30) == 0
        first = job.read_new_output()
        assert f"this output is also in {log}" in first
        assert "of output skipped here" in first
        assert len(first) < 2 * run.READ_CHUNK
        rest = ""
        for _ in range(10):
            rest += job.read_new_output()
        assert "line 99999\n" in first + rest
        assert (
            "bar" not in (first + rest).split("skipped here", 1)[1]
        )  # an unfinished redrawn line waits for its newline
        assert log.read_bytes().count(b"\n") == 100000
        assert os.stat(log).st_mode & 0o777 == 0o600
    finally:
        job.close()


def test_the_shim_instruments_without_the_pth_file_and_runs_the_shadowed_sitecustomize(tmp_path):
    """`python -S` skips the .pth files: the shim alone must load dspy_top, from its fallback copy."""
    site = run.prepare_work_dir(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("print('CHAINED')\n")
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import sitecustomize; "
        "print('dspy_top.autoload' in sys.modules, "
        "any(type(f).__name__ == '_AfterDspyImport' for f in sys.meta_path), sys.modules['dspy_top'].__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site), str(other)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**os.environ, "DSPY_TOP": "1"},
    )
    assert result.returncode == 0, result.stderr
    chained, loaded = result.stdout.splitlines()
    assert chained == "CHAINED"
    assert loaded.startswith("True True ") and "fallback" in loaded


def test_run_and_demo_leave_dspy_litellm_and_textual_out_of_the_viewer_process():
    code = (
        "import sys, dspy_top.run, dspy_top.demo; dspy_top.run.build_parser(); dspy_top.demo.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dspy', 'litellm', 'openai', 'textual')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- batch mode, end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_batch_mode_prints_the_final_numbers_and_exits_with_the_jobs_status(runtime):
    result = dspy_top_run("-b", "--json", "-d", "0.5", "--", sys.executable, str(JOB), "--calls", "3")
    assert result.returncode == 0, result.stderr
    final = last_json(result.stdout)
    assert final["totals"]["calls"] == 6
    assert {m["path"] for m in final["modules"]} >= {"Pipeline.draft", "Pipeline.check.predict"}
    assert [p["state"] for p in final["processes"]] == ["ended"]
    assert "the job exited with status 0" in result.stderr


@pytest.mark.slow
def test_the_runs_own_log_goes_at_exit_and_a_given_log_stays(runtime, tmp_path):
    """Issue 18: no `dspy-top-run-*/job.log` left behind. A recorded run (the default) keeps its output
    beside its recording; without a recording the run's own log goes at exit; a --log file stays."""
    result = dspy_top_run("-b", "-d", "0.5", "--", sys.executable, str(JOB), "--calls", "1")
    assert result.returncode == 0, result.stderr
    said = result.stderr.splitlines()[0]
    log = Path(said.rsplit("its output goes to ", 1)[1].strip())
    assert "recording to " in said and log.name.endswith(".log") and "CALLS DONE" in log.read_text()
    assert result.stderr.strip().splitlines()[-1].endswith(f"its output is in {log}")
    assert not list(tmp_path.glob("dspy-top-run-*"))
    result = dspy_top_run("-b", "-d", "0.5", "--no-record", "--", sys.executable, str(JOB), "--calls", "1")
    assert result.returncode == 0, result.stderr
    said = result.stderr.splitlines()[0]
    log = Path(said.rsplit("its output goes to ", 1)[1].strip())
    assert "until the run ends (--log FILE keeps it)" in said
    assert not log.exists() and not log.parent.exists()  # nothing left in the temp dir
    assert not list(tmp_path.glob("dspy-top-run-*"))
    assert result.stderr.strip().splitlines()[-1].endswith("its log was removed with the run (--log FILE keeps one)")
    kept = tmp_path / "kept.log"
    result = dspy_top_run("-b", "-d", "0.5", "--log", str(kept), "--", sys.executable, str(JOB), "--calls", "1")
    assert result.returncode == 0 and "CALLS DONE" in kept.read_text()
    assert result.stderr.strip().splitlines()[-1].endswith(f"its output is in {kept}")


@pytest.mark.slow
def test_batch_text_says_how_the_job_exited(runtime):
    result = dspy_top_run("-b", "-d", "0.5", "--", sys.executable, str(JOB), "--calls", "1")
    assert result.returncode == 0, result.stderr
    final = result.stdout.split("dspy-top - ")[-1]
    assert "[ended (exit 0)]" in final


def test_a_bad_configuration_is_said_before_the_job_starts(runtime, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[budget]\nusd = 1\non_exceed = "explode"\n')
    marker = tmp_path / "started"
    result = dspy_top_run(
        "-b", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')", env={"DSPY_TOP_CONFIG": str(config)}
    )
    assert result.returncode == 2 and not marker.exists()
    assert "dspy-top run: bad setting: config file [budget] on_exceed='explode'" in result.stderr
    result = dspy_top_run("-b", "--", sys.executable, "-c", "pass", env={"DSPY_TOP_BUDGET": "five"})
    assert result.returncode == 2 and "bad setting: DSPY_TOP_BUDGET='five'" in result.stderr
    config.write_text('[prices]\n"openai/x" = "cheap"\n')
    result = dspy_top_run("-b", "--", sys.executable, "-c", "pass", env={"DSPY_TOP_CONFIG": str(config)})
    assert (
        result.returncode == 2
        and "config file [prices] 'openai/x'='cheap': price 'openai/x=cheap': expected IN/OUT" in result.stderr
    )


def test_a_socket_that_is_not_there_fails_at_once_with_the_reason(runtime):
    result = subprocess.run(
        [sys.executable, "-m", "dspy_top", "-b", "-n", "1", "--socket", "/nonexistent.sock"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1
    # Failed at once (as -p of a gone pid), said on stderr: not a row "connecting" after a 4 s wait.
    assert "no socket at /nonexistent.sock" in result.stderr and "failed" in result.stdout


@pytest.mark.slow
def test_batch_mode_prints_the_jobs_final_numbers_once(runtime):
    # Snapshots every 0.2 s: several fall between the job's exit message and its process ending.
    result = dspy_top_run("-b", "--json", "-d", "0.2", "--", sys.executable, str(JOB), "--calls", "2")
    assert result.returncode == 0, result.stderr
    snapshots = [json.loads(line) for line in result.stdout.splitlines()]
    ended = [s for s in snapshots if s["processes"] and all(p["state"] == "ended" for p in s["processes"])]
    assert len(ended) == 1 and ended[0] is snapshots[-1]
    assert ended[0]["totals"]["calls"] == 4
    assert [s["iteration"] for s in snapshots] == list(range(1, len(snapshots) + 1))


@pytest.mark.parametrize(
    ("then", "status", "said"),
    [
        ("exit:3", 3, "exited with status 3"),
        ("crash", 1, "RuntimeError: the job crashed on purpose"),
    ],
)
@pytest.mark.slow
def test_batch_mode_passes_on_a_failure(runtime, then, status, said):
    result = dspy_top_run("-b", "--json", "--", sys.executable, str(JOB), "--calls", "2", "--then", then)
    assert result.returncode == status, result.stderr
    assert said in result.stderr
    assert last_json(result.stdout)["totals"]["calls"] == 4


@pytest.mark.slow
def test_batch_mode_attaches_through_a_shell_wrapper_and_a_console_script(runtime, tmp_path):
    script = tmp_path / "bin" / "my-dspy-job"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv = [{str(JOB)!r}, '--calls', '2']\n"
        f"runpy.run_path({str(JOB)!r}, run_name='__main__')\n"
    )
    script.chmod(0o755)
    wrapper = "echo wrapper; my-dspy-job; echo wrapped; exit 4"
    env = {"PATH": f"{script.parent}{os.pathsep}{os.environ['PATH']}"}
    result = dspy_top_run("-b", "--json", "-d", "0.5", "--", "sh", "-c", wrapper, env=env)
    assert result.returncode == 4, result.stderr
    final = last_json(result.stdout)
    # Only the python grandchild is shown: the shell never served, and it is no longer waited for.
    assert [(p["state"], p["calls"]) for p in final["processes"]] == [("ended", 4)], result.stderr
    assert "waiting for pid" not in result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_batch_mode_runs_python_dash_m(runtime):
    result = dspy_top_run(
        "-b", "--json", "--", sys.executable, "-m", "dspy_top.demos.rag_react", "--speed", "0", "--questions", "2"
    )
    assert result.returncode == 0, result.stderr
    assert last_json(result.stdout)["totals"]["calls"] >= 8


BUDGET_JOB = """
import os
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import dspy
dspy.configure(lm=dspy.LM("openai/sim-unlisted", api_base=os.environ["SIM_URL"], api_key="sim", cache=False))
program = dspy.Predict("question -> answer")
for i in range(100):
    program(question=f"What is {i} + 10?")
print("ALL 100 DONE", flush=True)
"""


@pytest.mark.slow
def test_run_prices_the_job_and_its_budget_stops_it(runtime, tmp_path):
    from dspy_top.simlm import SimLM

    job = tmp_path / "budget_job.py"
    job.write_text(BUDGET_JOB)
    with SimLM(latency_scale=0.0) as sim:
        result = dspy_top_run(
            "-b",
            "--json",
            "--budget",
            "1.0",
            "--on-exceed",
            "stop",
            "--price",
            "openai/sim-unlisted=1000/2000",
            "--",
            sys.executable,
            str(job),
            env={"SIM_URL": sim.base_url, "DSPY_TOP_CONFIG": str(tmp_path / "none.toml")},
            timeout=120,
        )
        served = sim.stats()
    assert result.returncode == 1, result.stderr  # the budget stopped it: a clean exit 1, with the reason
    assert "ALL 100 DONE" not in result.stderr and "the run stops at its next LM call" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("; stopped the run")
    assert "Traceback" not in result.stderr
    totals = last_json(result.stdout)["totals"]
    # litellm has no price for this model: every call is priced by --price, in the job, exactly.
    assert totals["unpriced_calls"] == 0
    assert totals["calls"] == served["requests"] < 100
    assert (
        totals["prompt_tokens"] == served["prompt_tokens"]
        and totals["completion_tokens"] == served["completion_tokens"]
    )
    assert totals["cost_usd"] == pytest.approx(
        (served["prompt_tokens"] * 1000 + served["completion_tokens"] * 2000) / 1e6, rel=1e-12
    )
    # The call that crossed $1 was the last one: the next was refused before it started.
    last_call = totals["cost_usd"] / totals["calls"]
    assert 1.0 <= totals["cost_usd"] < 1.0 + 2 * last_call
    budget = last_json(result.stdout)["budget"]["jobs"]
    assert [(b["on_exceed"], [lim["usd"] for lim in b["limits"]]) for b in budget] == [("stop", [1.0])]
    assert [a["level"] for a in budget[0]["alerts"]][:2] == [80, 100]


def test_an_unknown_command_is_127_and_no_command_a_usage_error(runtime):
    assert dspy_top_run("-b", "--", "no-such-command-dspy-top").returncode == 127
    result = dspy_top_run("-b")
    assert result.returncode == 2 and "no command" in result.stderr


def _start_batch(*job_args: str, sigint_ignored: bool = False) -> tuple[subprocess.Popen, Path]:
    # sigint_ignored: dspy-top starts as a shell starts a background command in a script.
    # --log: the job's log is read after the run (the run's own log goes with it).
    log_file = Path(tempfile.mkdtemp(prefix="dtlog")) / "job.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dspy_top",
            "run",
            "-b",
            "-d",
            "0.5",
            "--log",
            str(log_file),
            "--",
            sys.executable,
            str(JOB),
            *job_args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=_ignore_sigint if sigint_ignored else _default_sigint,
    )
    first = process.stderr.readline()
    log = Path(first.rsplit("its output goes to ", 1)[1].strip())
    deadline = time.monotonic() + 30
    while "CALLS DONE" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the job never got going"
        time.sleep(0.05)
    return process, log


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_batch_mode_started_with_sigint_ignored_still_passes_ctrl_c_to_the_job(runtime):
    # An ignored signal stays ignored across exec: the job must not inherit it from dspy-top.
    process, log = _start_batch("--then", "wait", sigint_ignored=True)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "GOT SIGINT" in log.read_text()
    assert "the job exited with status 130" in err


@pytest.mark.slow
def test_batch_mode_ctrl_c_interrupts_the_job_and_a_second_stops_it(runtime):
    process, log = _start_batch("--then", "wait")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "GOT SIGINT" in log.read_text()

    process, log = _start_batch("--then", "ignore-sigint")
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while "sent SIGINT" not in (err := process.stderr.readline()):
        assert time.monotonic() < deadline
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "calls" in out and "the job exited with status 143" in err


# --- the live view in a real terminal -------------------------------------------------------------------

terminal = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


def _live(runtime: Path, tmp_path: Path, *job_args: str, extra: tuple[str, ...] = ()) -> Terminal:
    command = [
        sys.executable,
        "-m",
        "dspy_top",
        "run",
        "-d",
        "0.3",
        "--log",
        str(tmp_path / "job.log"),
        *extra,
        "--",
        sys.executable,
        str(JOB),
        *job_args,
    ]
    return Terminal(
        command,
        tmp_path / "status",
        cwd=REPO,
        env={"DSPY_TOP_RUNTIME_DIR": str(runtime), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )


@pytest.mark.slow
@terminal
@pytest.mark.timeout(120)
def test_live_view_of_a_job_that_prints_a_lot_then_gets_ctrl_c(runtime, tmp_path):
    term = _live(runtime, tmp_path, "--calls", "3", "--lines", "200000", "--then", "wait")
    try:
        screen = term.wait_for(lambda s: "6 calls" in s and "CALLS DONE 6" in s, "the calls and the job's output")
        assert "Pipeline" in screen and "Job output" in screen
        term.keys("C-c")
        screen = term.wait_for(lambda s: "exited with code 130" in s, "the job ending on SIGINT")
        assert "GOT SIGINT" in screen and "6 calls" in screen  # the final numbers stay
        term.keys("q")
        assert term.exit_status() == 130
        assert (tmp_path / "job.log").read_text().count("\n") >= 200000
    finally:
        term.close()


@pytest.mark.slow
@terminal
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("then", "code", "marker"), [("crash", 1, "RuntimeError"), ("exit:3", 3, "CALLS DONE")])
def test_live_view_stays_after_a_failed_job_until_q(runtime, tmp_path, then, code, marker):
    term = _live(runtime, tmp_path, "--calls", "2", "--then", then)
    try:
        screen = term.wait_for(lambda s: f"exited with code {code}" in s, "the exit status")
        assert marker in screen and "4 calls" in screen
        if then != "crash":  # (a traceback pushes it out of the pane)
            assert "this output is also in" in screen  # the log file, named on screen
        assert not term.status_file.exists()  # still showing it
        term.keys("q")
        assert term.exit_status() == code
    finally:
        term.close()


@pytest.mark.slow
@terminal
@pytest.mark.timeout(120)
def test_live_view_second_ctrl_c_quits_and_stops_the_job(runtime, tmp_path):
    term = _live(runtime, tmp_path, "--calls", "2", "--then", "ignore-sigint")
    try:
        screen = term.wait_for(lambda s: "4 calls" in s and "CALLS DONE" in s and "running" in s, "the job")
        pid = int(screen.split("job pid ", 1)[1].split()[0])
        term.keys("C-c")
        term.wait_for(lambda s: "ctrl+c again quits" in s, "the first ctrl+c noted")
        term.keys("C-c")
        assert term.exit_status() == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert "Traceback" not in term.screen()
    finally:
        term.close()
