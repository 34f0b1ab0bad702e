"""Escape sequences from a job or an LM stay inert (issue 20, item 10), and text fits the terminal (item 9).

A fake process (a real socket, the real framing) puts ESC, OSC, CSI (also the one-byte \\x9b), BEL,
NUL, DEL and a bidi override in every string it sends: its command line, module paths, classes,
models, errors, optimizer labels and parameters, budget alerts, a refusal reason and an LM
payload. The real app (Pilot), batch text, stderr and a real terminal (tmux) must show them as
visible stand-ins: the terminal's title and screen are left alone.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time

import pytest

from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.viewer import batch
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.screens.inspect import InspectScreen
from tests.helpers.fake_server import HOSTILE, FakeServer, counters, hello
from tests.helpers.jobs import REPO, runtime_dir
from tests.helpers.screen import assert_inert, screen_text
from tests.jobs.terminal import SKIP_REASON, Terminal

pytestmark = pytest.mark.timeout(120)

NAME = f"RAG{HOSTILE}.answer"


def hostile_messages(pid: int) -> list[dict]:
    now = time.time()
    scopes = [
        {
            "id": "compile-1",
            "kind": "compile",
            "state": "failed",
            "start": now - 20,
            "end": now,
            "class": f"MIPRO{HOSTILE}",
            "params": {"auto": HOSTILE},
            "error": HOSTILE,
            "usage": counters(2),
        },
        {
            "id": "eval-1",
            "kind": "eval",
            "state": "running",
            "start": now - 5,
            "total": 4,
            "done": 1,
            "score_sum": 1.0,
            "parent": "compile-1",
            "program": HOSTILE,
        },
    ]
    alert = {
        "at": now,
        "level": 100,
        "scope": "module",
        "name": NAME,
        "spent_usd": 2.0,
        "budget_usd": 1.0,
        "action": "warn",
        "message": f"budget {HOSTILE} spent",
    }
    stats = {
        "t": "stats",
        "at": now,
        "totals": counters(2),
        "modules": [{"path": NAME, "class": HOSTILE, "chain": [HOSTILE, HOSTILE], **counters(2)}],
        "models": [{"model": f"openai/{HOSTILE}", **counters(2)}],
        "scopes": scopes,
        "dropped_events": 0,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 0,
        "tool_errors": 0,
        "budget": {"on_exceed": "warn", "limits": [{"scope": "module", "name": NAME, "usd": 1.0}], "alerts": [alert]},
    }
    call = {
        "id": 1,
        "seq": 1,
        "start": now - 3,
        "latency": 0.5,
        "path": NAME,
        "module_class": HOSTILE,
        "model": f"openai/{HOSTILE}",
        "response_model": HOSTILE,
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.001,
        "cost_saved_usd": None,
        "cache_hit": False,
        "retries": 0,
        "error": f"Error{HOSTILE}",
        "error_message": HOSTILE,
        "scopes": ["compile-1", HOSTILE],
        "stream": False,
    }
    return [
        hello(pid, ["job.py", "--title", HOSTILE]),
        {"t": "snapshot", "seq": 1, "calls": [call], "stats": stats},
        {"t": "budget", **alert, "message": f"another {HOSTILE}"},
    ]


PAYLOAD = {
    "model": HOSTILE,
    "messages": [{"role": f"user{HOSTILE}", "content": f"Hi\n{HOSTILE}\r\nthere"}],
    "outputs": [
        {
            "text": f"answer {HOSTILE}",
            "reasoning_content": HOSTILE,
            "tool_calls": [{"function": {"name": HOSTILE, "arguments": HOSTILE}}],
        }
    ],
    "usage": {HOSTILE: 1},
    "options": {"x": HOSTILE},
    "error": HOSTILE,
}


@pytest.fixture
def hostile():
    directory = runtime_dir()
    fakes = [
        FakeServer(directory / "hostile.sock", hostile_messages(616161), payload=PAYLOAD),
        FakeServer(directory / "refusing.sock", [{"t": "error", "reason": f"go away {HOSTILE}"}]),
        FakeServer(directory / "garbled.sock", [hello(626262), {"t": "stats", "totals": {"calls": HOSTILE}}]),
    ]
    yield directory, fakes
    for fake in fakes:
        fake.stop()


@pytest.mark.slow
def test_every_widget_shows_hostile_strings_inert(hostile):
    directory, fakes = hostile

    async def main():
        fleet = Fleet()
        app = TopApp(
            fleet, Collector(fleet, [local_sockets(sockets=[f.path for f in fakes], rescan_every=0.2)]), delay=0.2
        )
        async with app.run_test(size=(140, 45)) as pilot:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (
                app.snapshot and app.snapshot.calls and len(app.snapshot.problems) == 2
            ):
                await pilot.pause(0.1)
            assert app.snapshot.calls and len(app.snapshot.problems) == 2
            await pilot.pause(0.3)
            screen = screen_text(app)
            assert_inert(screen, "the main screen")
            assert "␛]0;PWNED␇" in screen  # shown, visibly
            await pilot.press("p")
            await pilot.pause(0.2)
            assert_inert(screen_text(app), "the process list")
            await pilot.press("o")
            await pilot.pause(0.3)
            assert_inert(screen_text(app), "the optimizer view")
            await pilot.press("o")
            history = app.query_one(HistoryTable)
            history.focus()
            await pilot.press("end", "enter")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (isinstance(app.screen, InspectScreen) and app.screen.answer):
                await pilot.pause(0.1)
            assert isinstance(app.screen, InspectScreen) and app.screen.answer.payload is not None
            await pilot.pause(0.2)
            inspector = screen_text(app)
            assert_inert(inspector, "the inspector")
            assert "answer ␛]0;PWNED" in inspector
            await pilot.press("escape")
            await pilot.press("k")  # the stop confirmation quotes the command line
            await pilot.pause(0.2)
            assert_inert(screen_text(app), "the stop confirmation")

    asyncio.run(main())


def test_batch_text_and_stderr_show_hostile_strings_inert(hostile, capsys):
    directory, fakes = hostile
    out = io.StringIO()
    assert batch.run([local_sockets(sockets=[f.path for f in fakes])], iterations=1, out=out) == 0
    text, err = out.getvalue(), capsys.readouterr().err
    assert_inert(text, "batch text")
    assert_inert(err, "stderr")
    assert f"RAG{'␛'}]0;PWNED" in text and "go away ␛]0;PWNED" in err
    out = io.StringIO()
    batch.run([local_sockets(sockets=[fakes[0].path])], iterations=1, as_json=True, out=out)
    assert json.loads(out.getvalue())["modules"][0]["path"] == NAME  # JSON keeps the data, escaped as JSON does
    assert_inert(out.getvalue(), "batch JSON")


def test_batch_text_falls_back_to_ascii_when_stdout_cannot_encode_unicode(hostile):
    directory, fakes = hostile
    for encoding in ("ascii", "latin-1"):
        result = subprocess.run(
            [sys.executable, "-m", "dspy_top", "-b", "-n", "1", "--socket", str(fakes[0].path)],
            capture_output=True,
            cwd=REPO,
            timeout=60,
            env={**os.environ, "PYTHONIOENCODING": encoding, "LANG": "C", "LC_ALL": "C"},
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert b"Traceback" not in result.stderr
        text = result.stdout.decode(encoding)
        assert "Burn: $" in text and " - ~$" in text  # "·" became " - " (ascii) or stayed (latin-1)...
        assert "RAG^[]0;PWNED^G" in text  # ...and ␛ became ^[ (caret notation)
        assert_inert(text, f"batch text in {encoding}")


@pytest.mark.slow
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_a_real_terminal_keeps_its_title_and_screen(hostile, tmp_path):
    directory, fakes = hostile
    hostile_job = tmp_path / "job.py"
    hostile_job.write_text(f"import sys\nprint({HOSTILE!r})\nprint('JOB-DONE')\nsys.exit(3)\n")
    commands = {
        "batch": [
            sys.executable,
            "-m",
            "dspy_top",
            "-b",
            "-n",
            "1",
            "--socket",
            str(fakes[0].path),
            "--socket",
            str(fakes[1].path),
        ],
        "run": [sys.executable, "-m", "dspy_top", "run", "-b", "--", sys.executable, str(hostile_job)],
        "tui": [sys.executable, "-m", "dspy_top", "-d", "0.3", "--socket", str(fakes[0].path)],
    }
    for name, command in commands.items():
        term = Terminal(
            ["sh", "-c", 'echo MARK-BEFORE; "$@"; echo MARK-AFTER', "sh", *command],
            tmp_path / f"{name}.status",
            cwd=REPO,
            env={"DSPY_TOP_RUNTIME_DIR": str(directory)},
            width=120,
            height=40,
        )
        try:
            if name == "tui":
                term.wait_for(lambda s: "PWNED" in s and "Modules" in s, "the hostile process on screen")
                title = term.tmux("display-message", "-p", "-t", term.session, "#{pane_title}")
                assert "PWNED" not in title
                term.keys("q")
            screen = term.wait_for(lambda s: "MARK-AFTER" in s, f"{name} to finish")
            title = term.tmux("display-message", "-p", "-t", term.session, "#{pane_title}")
            assert "PWNED" not in title, (name, title)
            if name == "batch":  # its output stays on screen, the hostile names visible: nothing cleared it
                assert "MARK-BEFORE" in screen and "RAG␛]0;PWNED␇" in screen, screen
            if name == "run":  # the job's own output, quoted on stderr when it fails
                assert "MARK-BEFORE" in screen and "the end of its output" in screen and "JOB-DONE" in screen
            assert "Traceback" not in screen
        finally:
            term.close()


def test_the_job_log_pane_shows_a_jobs_hostile_output_inert(tmp_path):
    from dspy_top import run
    from dspy_top.viewer.components.job_log import JobLog

    job = run.start_job(
        [sys.executable, "-c", f"print({HOSTILE!r}); print('JOB-DONE')"],
        log_path=tmp_path / "job.log",
        runtime_dir=runtime_dir(),
    )

    async def main():
        app = TopApp(Fleet(), None, delay=0.1, job=job, start_collector=False)
        async with app.run_test(size=(120, 40)) as pilot:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "JOB-DONE" not in "\n".join(app.query_one(JobLog).lines):
                await pilot.pause(0.1)
            shown = "\n".join(app.query_one(JobLog).lines)
            assert "JOB-DONE" in shown and "evil" in shown
            assert_inert(shown, "the job log")
            assert_inert(screen_text(app), "the screen with the job log")

    try:
        asyncio.run(main())
    finally:
        job.stop()
        job.close()


def test_a_hosts_status_from_ssh_is_printed_inert_by_batch_text():
    # A host's status quotes ssh's stderr and the remote relay: the whole text is made inert in one place.
    from dataclasses import replace

    from dspy_top.model.hosts import HOST_DISCONNECTED, HostRow

    fleet = Fleet()
    host = HostRow("gpu-box", HOST_DISCONNECTED, f"ssh to gpu-box failed: {HOSTILE}", time.time(), time.time() + 5)
    snapshot = replace(fleet.snapshot(), hosts=(host,))
    text = batch.snapshot_text(snapshot)
    assert "Hosts: gpu-box disconnected: ssh to gpu-box failed:" in text
    assert_inert(text, "batch text's Hosts line")


def on_a_terminal(*args: str, env: dict[str, str]) -> tuple[str, str, int]:
    """`python -m dspy_top ARGS` with a real pseudo-terminal for its stdout: (what the terminal got, stderr, status)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 300, 0, 0))  # wide: no line cut short
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspy_top", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    os.close(slave)
    shown = bytearray()
    try:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            shown.extend(data)
        err = proc.stderr.read().decode("utf-8", "replace")
        status = proc.wait(60)
    finally:
        os.close(master)
        proc.kill()
        proc.stderr.close()
    return shown.decode("utf-8", "replace"), err, status


@pytest.fixture
def hostile_recording(tmp_path):
    """A recording of the hostile process (its payload too), alone in its runs directory."""
    from dspy_top.recording import RecordingWriter

    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    hello_message, snapshot, budget = hostile_messages(636363)
    writer = RecordingWriter.create(runs / "hostile.dtop", hello_message)
    writer.add(snapshot)
    writer.add(budget)
    writer.add_payload(1, PAYLOAD)
    writer.close({"t": "exit", "at": time.time(), "stats": snapshot["stats"]})
    return runs / "hostile.dtop"


def test_exports_runs_and_replay_meant_for_a_terminal_show_hostile_strings_inert(hostile_recording):
    """What the recording commands print on a terminal (export in each format, the runs table,
    replay -b) passes the job's and the LM's strings through the same inert rendering."""
    import re

    env = {**os.environ, "PYTHONPATH": str(REPO), "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    env.pop("DSPY_TOP", None)
    recording, runs = str(hostile_recording), hostile_recording.parent
    commands = {
        "export inspect": ["export", recording, "--format", "inspect"],
        "export jsonl": ["export", recording, "--payloads"],
        "export csv": ["export", recording, "--format", "csv", "--payloads"],
        "runs": ["runs", "--plain", "--dir", str(runs)],
        "replay -b": ["replay", "-b", "-n", "1", recording],
    }
    for name, command in commands.items():
        shown, err, status = on_a_terminal(*command, env=env)
        assert status == 0 and "Traceback" not in err, (name, err)
        assert "PWNED" in shown, (name, shown)  # the hostile strings were printed...
        own_colours = re.sub(r"\x1b\[[0-9;]*m", "", shown) if name == "export inspect" else shown
        assert_inert(own_colours, name)  # ...made inert (inspect's own colours aside)
        assert_inert(err, f"{name}'s stderr")


def test_exports_to_a_stream_that_cannot_take_unicode_fall_back_to_ascii(hostile_recording):
    """`dspy-top export ... | old-tool` under LANG=C: JSON lines stay the same JSON (non-ASCII as JSON
    escapes), CSV and inspect text get the ASCII stand-ins; never a UnicodeEncodeError."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DSPY_TOP", None)

    def export(*args: str, encoding: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "dspy_top", "export", str(hostile_recording), *args],
            capture_output=True,
            cwd=REPO,
            timeout=60,
            env={**env, "PYTHONIOENCODING": encoding, "LANG": "C", "LC_ALL": "C"},
        )
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
        return done.stdout.decode(encoding)

    exact = [json.loads(line) for line in export("--payloads", encoding="utf-8").splitlines()]
    for encoding in ("ascii", "latin-1"):
        text = export("--payloads", encoding=encoding)
        assert text.isascii() and [json.loads(line) for line in text.splitlines()] == exact  # nothing lost
        assert "PWNED" in export("--format", "csv", "--payloads", encoding=encoding)
        assert "User" in export("--format", "inspect", encoding=encoding)


def test_serves_log_shows_a_jobs_hostile_command_inert():
    """`dspy-top serve` logs each job it sees (its command line) on stderr, often a terminal."""
    from tests.helpers.serve import Serve

    directory, pid = runtime_dir(), os.getpid()  # a live pid: the socket is not taken for a stale one
    fake = FakeServer(directory / f"{pid}.sock", hostile_messages(pid), payload=PAYLOAD)
    serve = Serve(directory, "--prometheus", "127.0.0.1:0")
    try:
        serve.expect(rf"job {pid} .* seen: ")
    finally:
        serve.stop()
        fake.stop()
    assert "PWNED" in serve.log()
    assert_inert(serve.log(), "serve's log")


def test_the_runs_list_and_the_replay_show_a_hostile_recording_inert(hostile_recording):
    """The live views over recordings: `dspy-top runs` on a terminal (its list) and `dspy-top replay`."""
    from dspy_top.recording.summary import group_runs, list_runs
    from dspy_top.viewer.replay.runs_list import RunsApp
    from tests.helpers import replay_app

    found = group_runs(list_runs(hostile_recording.parent)[0], hostile_recording.parent)

    async def runs_list():
        app = RunsApp(found, hostile_recording.parent)
        async with app.run_test(size=(200, 20)) as pilot:
            await pilot.press("down")
            await pilot.pause()
            shown = screen_text(app)
            assert "PWNED" in shown
            assert_inert(shown, "the runs list")

    asyncio.run(runs_list())

    async def script(pilot):
        shown = screen_text(pilot.app)
        assert "PWNED" in shown
        assert_inert(shown, "the replay")

    replay_app.run(replay_app.replay_app(hostile_recording), script, size=(200, 50))


def test_a_file_name_that_is_not_utf8_is_shown_by_its_bytes_escapes(tmp_path):
    """A recording named with a byte that is not UTF-8 (Python keeps it as a lone surrogate) is
    named in the commands' messages with that byte's escape, `\\xff`, the rest of the message in
    the terminal's Unicode: never `\\udcff`, never a UnicodeEncodeError."""
    from dspy_top.viewer.terminal import for_stream, inert

    assert inert("b\udcffd.dtop") == "b\\xffd.dtop" and inert("x\ud800y") == "x\\ud800y"
    assert inert("a\udce9\nb", multiline=True) == "a\\xe9\nb"
    assert for_stream(inert("b\udcffd.dtop · ok"), io.TextIOWrapper(io.BytesIO(), "utf-8")) == "b\\xffd.dtop · ok"
    damaged = tmp_path / os.fsdecode(b"b\xffd.dtop")
    damaged.write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}
    for command in (["replay", "-b", "-n", "1", str(damaged)], ["export", str(damaged)]):
        done = subprocess.run(
            [sys.executable, "-m", "dspy_top", *command], capture_output=True, cwd=REPO, timeout=60, env=env
        )
        err = done.stderr.decode("utf-8")
        assert done.returncode == 1 and "Traceback" not in err, (command, err)
        assert "b\\xffd.dtop: empty file" in err and "udcff" not in err, (command, err)
