"""The viewer driven by Pilot against real instrumented DSPy jobs: what it shows equals the job's truth."""

from __future__ import annotations

import asyncio
import time

import pytest

from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.viewer import format as fmt
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.module_table import ModuleTable
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.screens.confirm import ConfirmDismiss
from dspy_top.viewer.screens.inspect import InspectScreen
from tests.helpers.jobs import runtime_dir, start_job
from tests.helpers.live_app import run_app

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

COUNTERS = (
    "calls",
    "errors",
    "retries",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "unpriced_calls",
    "in_flight",
)


async def wait_for(pilot, predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def shown_totals(app):
    return app.snapshot.totals if app.snapshot else None


def assert_matches_truth(totals, truth):
    for name in COUNTERS:
        assert getattr(totals, name) == truth["totals"][name], name
    assert totals.cost_usd == pytest.approx(truth["totals"]["cost_usd"], rel=1e-9, abs=1e-12)
    assert totals.cost_saved_usd == pytest.approx(truth["totals"]["cost_saved_usd"], rel=1e-9, abs=1e-12)


async def header_text(app) -> str:
    return str(app.query_one(Header).render())


def test_screen_totals_equal_the_jobs_truth_and_sort_filter_pause_tree_work():
    directory = runtime_dir()
    job = start_job(directory, lm="sim", cache=True, errors=4)
    try:
        truth = job.run(9)
        assert truth["totals"]["cache_hits"] > 0 and truth["totals"]["retries"] > 0

        async def script(app, pilot):
            await wait_for(
                pilot,
                lambda: shown_totals(app) and shown_totals(app).calls == truth["totals"]["calls"],
                what="the snapshot's totals",
            )
            assert_matches_truth(shown_totals(app), truth)
            header = await header_text(app)
            assert f"{truth['totals']['calls']:,} calls" in header
            assert fmt.cost(shown_totals(app)) in header
            models = {row.model: row.counters for row in app.snapshot.models}
            assert models["openai/gpt-4o-mini"].calls == truth["totals"]["calls"]

            # Live: more calls arrive while the viewer watches.
            later = await asyncio.to_thread(job.run, 4)
            await wait_for(pilot, lambda: shown_totals(app).calls == later["totals"]["calls"], what="live totals")
            assert_matches_truth(shown_totals(app), later)
            history = app.query_one(HistoryTable)
            assert history.row_count == later["totals"]["calls"]

            modules = app.query_one(ModuleTable)
            assert modules.keys[:4] == ["RAG", "RAG.generate_query", "RAG.generate_query.predict", "RAG.answer"]
            truth_modules = {m["path"]: m for m in later["modules"]}
            node = next(n for n in app.snapshot.modules if n.path == "RAG")
            assert node.counters.calls == sum(m["calls"] for m in truth_modules.values())

            # Sort: direct keys, < and >, reverse.
            await pilot.press("C")
            assert modules.sort_key == "calls" and modules.descending
            await pilot.press("R")
            assert not modules.descending
            await pilot.press("N")
            assert modules.sort_key == "module"
            assert modules.keys[1:3] == ["RAG.answer", "RAG.generate_query"]
            await pilot.press("greater_than_sign")
            assert modules.sort_key == "state"
            await pilot.press("less_than_sign", "dollar_sign")
            assert modules.sort_key == "cost"

            # Tree: collapse the root with enter, flat mode with t.
            modules.focus()
            modules.move_cursor(row=0)
            await pilot.press("enter")
            assert modules.keys == ["RAG"]
            await pilot.press("enter")
            assert len(modules.keys) == 4
            await pilot.press("t")
            assert sorted(modules.keys) == ["RAG.answer", "RAG.generate_query.predict"]
            await pilot.press("t")

            # Filter with /: modules and history narrow to what matches (a free word would also search
            # prompts and responses: module: names the module).
            await pilot.press("slash", *"module:answer", "enter")
            assert modules.keys == ["RAG", "RAG.answer"]
            assert history.row_count == later["modules"][-1]["calls"] or all(
                c.path == "RAG.answer" for c in app.snapshot.calls
            )
            assert all(c.path == "RAG.answer" for c in app.snapshot.calls)
            await pilot.press("slash", "escape")
            await wait_for(pilot, lambda: len(modules.keys) == 4, what="the filter to clear")

            # Pause: the screen freezes while collection goes on.
            await pilot.press("space")
            frozen = shown_totals(app).calls
            more = await asyncio.to_thread(job.run, 2)
            await wait_for(
                pilot,
                lambda: app.fleet.snapshot().totals.calls == more["totals"]["calls"],
                what="collection during pause",
            )
            await pilot.pause(0.5)
            assert shown_totals(app).calls == frozen
            assert app.screen.has_class("-paused")
            assert "PAUSED" in await header_text(app)
            await pilot.press("space")
            assert shown_totals(app).calls == more["totals"]["calls"]

        run_app(directory, script)
    finally:
        job.kill()


def test_attach_inspect_fetch_gone_payload_and_a_process_ending():
    directory = runtime_dir()
    jobs = []

    async def script(app, pilot):
        # Nothing running: the screen says how to start a job and keeps watching.
        await pilot.pause(0.3)
        assert app.screen.has_class("-empty")
        job = await asyncio.to_thread(start_job, directory, history=2)
        jobs.append(job)
        await wait_for(
            pilot,
            lambda: app.snapshot.processes and app.snapshot.processes[0].state == "running",
            what="the new process to be attached",
        )
        assert not app.screen.has_class("-empty")
        truth = await asyncio.to_thread(job.run, 3)
        await wait_for(
            pilot,
            lambda: (
                app.query_one(HistoryTable).row_count == truth["totals"]["calls"]
                and app.snapshot.totals.calls == truth["totals"]["calls"]
            ),
            what="history rows and totals",
        )

        # Inspect the newest call: its payload is fetched from the process.
        history = app.query_one(HistoryTable)
        history.focus()
        await pilot.press("end", "enter")
        assert isinstance(app.screen, InspectScreen)
        text = app.screen.query_one("#inspect-text")
        await wait_for(pilot, lambda: "System message" in str(text.render()), what="the fetched payload")
        body = str(text.render())
        assert "User message" in body and "Response" in body and "[[ ## answer ## ]]" in body
        facts = str(app.screen.query_one("#inspect-facts").render())
        assert "RAG.answer" in facts and "RAG > Predict" in facts

        # Step back past what the process keeps (history=2): that payload is gone.
        await pilot.press("left", "left", "left")
        await wait_for(pilot, lambda: app.screen.has_class("-gone"), what="a gone payload")
        assert "gone" in str(text.render())
        await pilot.press("right", "right", "right")
        await wait_for(pilot, lambda: "System message" in str(text.render()), what="the cached payload again")
        await pilot.press("escape")
        assert not isinstance(app.screen, InspectScreen)

        # The process exits: it stays, ended, with its final numbers, until dismissed.
        code = await asyncio.to_thread(job.exit)
        assert code == 0
        await wait_for(pilot, lambda: app.snapshot.processes[0].state == "ended", what="the process to end")
        assert app.snapshot.totals.calls == truth["totals"]["calls"]
        await pilot.press("p")
        assert app.query_one(ProcessTable).has_focus
        await pilot.press("x")  # asks first: its numbers would leave the screen
        assert isinstance(app.screen, ConfirmDismiss)
        await pilot.press("n")
        assert app.snapshot.processes and app.snapshot.totals.calls == truth["totals"]["calls"]
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: not app.snapshot.processes, what="the dismissal")
        assert app.screen.has_class("-empty")

    try:
        # The viewer keeps no payload of its own here (kept_payloads=0): what the process no longer
        # keeps is gone (tests/test_history_pane.py: what the screen showed is kept).
        run_app(directory, script, size=(100, 30), kept_payloads=0)
    finally:
        for job in jobs:
            job.kill()


def test_focus_one_of_two_processes_and_back_to_all():
    directory = runtime_dir()
    first, second = start_job(directory), start_job(directory)
    try:
        one, two = first.run(2), second.run(3)

        async def script(app, pilot):
            await wait_for(pilot, lambda: app.snapshot.totals.calls == 10, what="both processes")
            assert len(app.snapshot.processes) == 2
            await pilot.press("p")
            table = app.query_one(ProcessTable)
            table.move_cursor(row=[p.pid for p in app.snapshot.processes].index(second.pid))
            await pilot.press("enter")
            assert app.snapshot.totals.calls == two["totals"]["calls"]
            assert {c.pid for c in app.snapshot.calls} == {second.pid}
            await pilot.press("a")
            assert app.snapshot.totals.calls == one["totals"]["calls"] + two["totals"]["calls"]

        run_app(directory, script)
    finally:
        first.kill()
        second.kill()


class FakeJob:
    """The `dspy-top run` side of the Job protocol, around a real instrumented process."""

    def __init__(self, process, log_path):
        self.pid = process.pid
        self.command = ["python", "job.py"]
        self.log_path = log_path
        self.process = process
        self.code = None
        self.interrupts = 0
        self.pending = "starting job\nREADY\n"

    def returncode(self):
        return self.code

    def interrupt(self):
        self.interrupts += 1

    def read_new_output(self):
        text, self.pending = self.pending, ""
        return text


def test_run_mode_attaches_to_the_job_only_tails_its_log_and_forwards_ctrl_c(tmp_path):
    from dspy_top.viewer.components.job_log import JobLog
    from dspy_top.viewer.job import Job

    directory = runtime_dir()
    job_process, bystander = start_job(directory), start_job(directory)
    try:
        truth = job_process.run(2)
        bystander.run(1)
        job = FakeJob(job_process, tmp_path / "job.log")
        assert isinstance(job, Job)

        async def main():
            fleet = Fleet()
            collector = Collector(fleet, [local_sockets(directory=directory, pids=[job.pid], rescan_every=0.2)])
            app = TopApp(fleet, collector, delay=0.2, job=job)
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for(pilot, lambda: app.snapshot.totals.calls == truth["totals"]["calls"], what="the job")
                assert [p.pid for p in app.snapshot.processes] == [job.pid]  # not the bystander
                log = app.query_one(JobLog)
                await wait_for(pilot, lambda: "READY" in "\n".join(log.lines), what="the job's output")
                await pilot.press("ctrl+c")
                assert job.interrupts == 1 and app.is_running
                job.pending = "KeyboardInterrupt\n"
                job.code = 130
                await wait_for(pilot, lambda: app.screen.has_class("-job-ended"), what="the job's end")
                assert "exited with code 130" in "\n".join(log.lines)
                await pilot.press("ctrl+c")  # the job is over: one press quits
                await pilot.pause(0.1)
                assert not app.is_running

        asyncio.run(main())
    finally:
        job_process.kill()
        bystander.kill()
