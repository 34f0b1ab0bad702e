"""A process whose connection broke before its exit message is never shown as final (issue 20, item 6).

Real jobs: one killed with SIGKILL (no exit frame), one that exits normally. The process row, the
header, the status line, batch text and batch JSON must tell them apart.
"""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest

from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.viewer import batch
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.components.status_line import StatusLine
from tests.helpers.jobs import runtime_dir, start_job
from tests.helpers.screen import screen_text

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_a_killed_job_says_its_final_numbers_were_not_received_and_an_exited_one_does_not():
    directory = runtime_dir()
    killed, finished = start_job(directory), start_job(directory)
    try:
        killed.run(2)
        finished.run(1)

        async def main():
            fleet = Fleet()
            app = TopApp(fleet, Collector(fleet, [local_sockets(directory=directory, rescan_every=0.2)]), delay=0.2)
            async with app.run_test(size=(140, 40)) as pilot:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and not (app.snapshot and app.snapshot.totals.calls >= 6):
                    await pilot.pause(0.1)
                killed.kill()  # SIGKILL: no exit frame
                finished.exit()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and not (
                    app.snapshot and {p.state for p in app.snapshot.processes} == {"lost", "ended"}
                ):
                    await pilot.pause(0.1)
                rows = {p.pid: p for p in app.snapshot.processes}
                assert rows[killed.pid].state == "lost" and rows[killed.pid].final_numbers == "not received"
                assert rows[finished.pid].state == "ended" and rows[finished.pid].final_numbers == "received"
                await pilot.pause(0.3)
                header = str(app.query_one(Header).render())
                assert f"final numbers not received from pid {killed.pid}" in header
                assert "final numbers not received" in str(app.query_one(StatusLine).render())
                await pilot.press("p")
                await pilot.pause(0.2)
                table = app.query_one(ProcessTable)
                notes = {key: str(table.get_row(key)[-1]) for key in table.keys}
                assert "final numbers not received" in notes[str(killed.socket_path)]
                assert "final numbers not received" not in notes[str(finished.socket_path)]
                assert "final numbers not received" in screen_text(app)

        asyncio.run(main())
    finally:
        killed.kill()
        finished.kill()


def test_batch_text_and_json_say_final_numbers_were_not_received():
    directory = runtime_dir()
    job = start_job(directory)
    try:
        truth = job.run(2)
        fleet = Fleet()
        collector = Collector(fleet, [local_sockets(directory=directory, rescan_every=0.2)]).start()
        try:
            assert collector.wait_settled(20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and fleet.snapshot().totals.calls < truth["totals"]["calls"]:
                time.sleep(0.05)
            job.kill()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and fleet.snapshot().processes[0].state != "lost":
                time.sleep(0.05)
            snapshot = fleet.snapshot(history_limit=0)
        finally:
            collector.stop()
        text = batch.snapshot_text(snapshot)
        assert f"Final numbers not received from pid {job.pid}" in text
        assert "final numbers not received" in text.split("COMMAND / STATUS")[1]
        (process,) = batch.snapshot_json(snapshot)["processes"]
        assert process["final_numbers"] == "not received" and process["calls"] == truth["totals"]["calls"]
        json.dumps(batch.snapshot_json(snapshot))
    finally:
        job.kill()


def test_batch_json_claims_no_final_numbers_while_a_process_runs():
    directory = runtime_dir()
    job = start_job(directory)
    try:
        job.run(1)
        out = io.StringIO()
        assert batch.run([local_sockets(pids=[job.pid], directory=directory)], iterations=1, as_json=True, out=out) == 0
        assert json.loads(out.getvalue())["processes"][0]["final_numbers"] is None  # live: nothing final yet
    finally:
        job.exit()
