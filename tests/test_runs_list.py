"""`dspy-top runs` on a terminal: the runs as a list, newest first, with the table's columns; enter
replays the run under the cursor, q quits (Pilot, and a real terminal in tmux). Piped, the table
stays as it was (tests/test_runs_export.py). The recordings are written by the real Recorder and
RecordingWriter."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top.instrumentation.recorder import Recorder
from dspy_top.recording import RecordingWriter
from dspy_top.recording.command import replay_target, table_row
from dspy_top.recording.summary import group_runs, list_runs
from dspy_top.viewer.replay import command as replay_command
from dspy_top.viewer.replay.runs_list import RunsApp
from tests.helpers.jobs import REPO

pytestmark = pytest.mark.timeout(120)

STARTS = (1_790_000_000.0, 1_790_000_600.0, 1_790_001_200.0)  # three runs, ten minutes apart
CALLS = (3, 5, 7)


def write_run(directory: Path, number: int) -> Path:
    """One finished recording: `CALLS[number]` calls of a script named after its number."""
    recorder = Recorder(clock=lambda: STARTS[number] + 1.0)
    path = directory / f"run{number}.dtop"
    hello = {
        "t": "hello",
        "v": 2,
        "pid": 1000 + number,
        "ppid": 1,
        "argv": [f"job{number}.py"],
        "cwd": "/work",
        "started_at": STARTS[number],
        "history_capacity": 100,
        "run_id": f"run-{number}",
    }
    writer = RecordingWriter.create(path, hello, clock=lambda: STARTS[number] + 2.0)
    writer.add({"t": "snapshot", **recorder.snapshot()})
    for _ in range(CALLS[number]):
        record = recorder.begin("Job.predict", "Predict", ("Job",), "openai/gpt-4o-mini")
        recorder.finish(record, prompt_tokens=10, completion_tokens=2, cost=0.001)
    events, stats = recorder.drain_and_stats()
    writer.add_events(events)
    writer.add({"t": "stats", **stats})
    writer.close({"t": "exit", "at": STARTS[number] + 3.0, "stats": recorder.stats()})
    os.utime(path, (STARTS[number] + 3.0, STARTS[number] + 3.0))  # newest first is by the files' times
    return path


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    directory = tmp_path / "runs"
    directory.mkdir()
    for number in range(3):
        write_run(directory, number)
    return directory


def test_the_list_shows_the_tables_columns_newest_first_and_enter_picks_a_run(runs_dir):
    summaries, _ = list_runs(runs_dir)
    found = group_runs(summaries, runs_dir)
    assert [run.calls for run in found] == [7, 5, 3]  # newest first

    async def main():
        app = RunsApp(found, runs_dir)
        async with app.run_test(size=(120, 20)) as pilot:
            await pilot.pause()
            from textual.widgets import DataTable

            table = app.query_one(DataTable)
            assert table.row_count == 3
            shown = [[str(cell).strip() for cell in table.get_row_at(row)] for row in range(3)]
            assert shown == [[cell.strip() for cell in table_row(run)] for run in found]
            await pilot.press("down")
            assert "enter replays job1.py" in str(app.query_one("#runs-picked").render())
            await pilot.press("enter")
        return app.return_value

    chosen = asyncio.run(main())
    assert chosen is found[1] and chosen.command == "job1.py"
    # What enter replays is that run: its files, and its numbers in the replay's batch mode.
    target = replay_target(chosen)
    assert replay_command.recordings_named(target, runs_dir) == [runs_dir / "run1.dtop"]
    done = subprocess.run(
        [sys.executable, "-m", "dspy_top", "replay", target, "--dir", str(runs_dir), "-b", "-n", "1", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["calls"] == 5


def test_q_quits_the_list_without_replaying(runs_dir):
    summaries, _ = list_runs(runs_dir)

    async def main():
        app = RunsApp(group_runs(summaries, runs_dir), runs_dir)
        async with app.run_test(size=(120, 20)) as pilot:
            await pilot.pause()
            await pilot.press("q")
        return app.return_value

    assert asyncio.run(main()) is None


def test_piped_output_is_the_plain_table(runs_dir):
    done = subprocess.run(
        [sys.executable, "-m", "dspy_top", "runs", "--dir", str(runs_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("recordings in") and lines[1].split()[0] == "START"
    assert [line.split()[-1] for line in lines[2:]] == ["job2.py", "job1.py", "job0.py"]


@pytest.mark.slow
def test_in_a_terminal_enter_replays_the_run_under_the_cursor(runs_dir, tmp_path):
    from tests.jobs.terminal import SKIP_REASON, Terminal

    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    tmux = Terminal(
        [sys.executable, "-m", "dspy_top", "runs", "--dir", str(runs_dir)],
        tmp_path / "status",
        cwd=REPO,
        env={"TZ": "UTC", "PYTHONPATH": str(REPO)},
        width=120,
        height=30,
    )
    try:
        screen = tmux.wait_for(lambda s: "job0.py" in s and "enter replays" in s, "the list of runs")
        assert screen.index("job2.py") < screen.index("job1.py") < screen.index("job0.py")
        tmux.wait_for(lambda s: "enter replays job2.py" in s, "the newest run under the cursor")
        tmux.keys("Down")
        tmux.wait_for(lambda s: "enter replays job1.py" in s, "the cursor on the next run")
        tmux.keys("Enter")
        screen = tmux.wait_for(lambda s: "recording of job1.py" in s and "5 calls" in s, "the replay of job1.py")
        assert "job2.py" not in screen and "Traceback" not in screen
        tmux.keys("q")
        assert tmux.exit_status(timeout=15) == 0
    finally:
        tmux.close()
