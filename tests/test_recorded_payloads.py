"""A call's payload opens in the live viewer after its process ended, read from the process's recording
(issue 16): a real DSPy job (tests/jobs/record_job.py on the simulated LM) records to a file, the
real viewer watches it over its socket, and a call the viewer never opened (nor kept) while the
job lived opens once the job exited normally, or was killed with SIGKILL, from the file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from dspy_top.model import Fleet
from dspy_top.recording import Recording
from dspy_top.simlm import SimLM
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.sources.recorded_payloads import RecordedPayloads
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.screens.inspect import InspectScreen
from tests.helpers.recorded import RecordJob

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def sim():
    with SimLM(latency_scale=0.0) as server:
        yield server


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_a_call_never_opened_while_the_job_lived_opens_from_its_recording(tmp_path, sim, ending):
    path = tmp_path / "job.dtop"
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(path)})
    try:

        async def main():
            fleet = Fleet()
            collector = Collector(fleet, [local_sockets(directory=job.socket_path.parent, rescan_every=0.2)])
            app = TopApp(fleet, collector, delay=0.2)
            async with app.run_test(size=(120, 16)) as pilot:  # a history pane of a few rows
                history = app.screen.query_one(HistoryTable)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60

                async def until(condition, what):
                    while not condition():
                        assert loop.time() < deadline, what
                        await pilot.pause(0.05)

                await until(
                    lambda: app.snapshot and app.snapshot.processes and app.snapshot.processes[0].state == "running",
                    "the attach",
                )
                calls = await asyncio.to_thread(job.run, 10)  # 20 LM calls: most scroll past unseen
                await until(lambda: history.row_count == calls, "the calls in the history")
                oldest = history.calls[0]
                await until(lambda: oldest not in history.calls_in_view(), "the oldest call scrolled past")
                app.forget_payload(oldest)  # the viewer keeps nothing of it (it was on screen at first)

                def on_disk():
                    with Recording(path) as recording:
                        return recording.payload(oldest.id)

                await until(on_disk, "the payload in the file")
                if ending == "exit":
                    await asyncio.to_thread(job.exit)
                    state = "ended"
                else:
                    job.proc.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(job.proc.wait, 10)
                    state = "lost"
                await until(lambda: app.snapshot.processes[0].state == state, "the process's end")
                history.focus()
                await pilot.press("home", "enter")
                screen = app.screen
                assert isinstance(screen, InspectScreen) and screen.call.key == oldest.key
                await until(lambda: screen.answer is not None, "the payload's answer")
                assert screen.answer.payload == on_disk() and not screen.has_class("-gone")
                assert screen.answer.payload["messages"][-1]["role"] == "user"
                assert "[[ ## answer ## ]]" in str(screen.query_one("#inspect-text").render())

        asyncio.run(main())
    finally:
        job.kill()


def test_a_file_that_is_not_the_processs_own_is_never_read(tmp_path, sim):
    """The hello names a file; it is used only when its own hello is that process's (pid and start)."""
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(tmp_path / "a.dtop")})
    try:
        job.run(1)
    finally:
        job.exit()
        job.proc.wait(30)
    with Recording(tmp_path / "a.dtop") as recording:
        hello, call_id = recording.hello, 1
        assert recording.payload(call_id) is not None
    recorded = RecordedPayloads(runs_dir=tmp_path / "none")
    recorded.saw_hello("p", hello["pid"], hello["started_at"] + 5.0, str(tmp_path / "a.dtop"))  # another start
    assert recorded.payload("p", call_id) == (None, None)
    recorded.saw_hello("q", hello["pid"], hello["started_at"], str(tmp_path / "a.dtop"))
    payload, why = recorded.payload("q", call_id)
    assert why is None and payload["messages"][-1]["role"] == "user"
    recorded.close()


def test_a_name_from_the_wire_that_is_no_recording_is_passed_over_at_once(tmp_path):
    """A FIFO, a name with a NUL: no payload, no hang, no exception into the collector's thread."""
    fifo = tmp_path / "pipe.dtop"
    os.mkfifo(fifo)
    recorded = RecordedPayloads(runs_dir=tmp_path / "none")
    recorded.saw_hello("fifo", 41, 1.0, str(fifo))
    recorded.saw_hello("nul", 42, 1.0, "a\x00b.dtop")
    answers: list = []
    asker = threading.Thread(
        target=lambda: answers.extend(recorded.payload(k, 1) for k in ("fifo", "nul")), daemon=True
    )
    asker.start()
    asker.join(10)
    assert not asker.is_alive(), "a FIFO named by a hello hung the payload lookup"
    assert answers == [(None, None), (None, None)]
