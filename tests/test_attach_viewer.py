"""The viewer's process list offers DSPy jobs started without dspy-top, and `A` attaches one (issue 17).

Real plain DSPy jobs against the simulated LM, the real viewer (Pilot) on a real runtime
directory, /proc as it is, and real gdb for the attach itself.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading

import pytest

from dspy_top.attach.offers import AttachOffers
from dspy_top.model import Fleet
from dspy_top.simlm import SimLM
from dspy_top.sources.collector import Collector
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.attach_offers import KEY_PREFIX, AttachOffering
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.screens.confirm import ConfirmAttach
from tests.helpers.jobs import runtime_dir, start_job
from tests.helpers.live_app import run_app as run_viewer_app
from tests.helpers.plain_jobs import PlainJob
from tests.helpers.waiting import pilot_wait, wait_until

needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def directory():
    path = runtime_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_app(directory, script):
    """The viewer on `directory`'s sockets, offering what `A` can attach to there."""
    run_viewer_app(directory, script, offer_attach=directory)


async def wait_for(pilot, predicate, timeout=30.0, what="condition"):
    return await pilot_wait(pilot, predicate, what=what, timeout=timeout)


def row(app, key):
    """The process list's row `key` as plain strings, or None."""
    table = app.screen_stack[0].query_one(ProcessTable)
    if key not in table.keys:
        return None
    return [str(cell).strip() for cell in table.get_row(key)]


def state(app, key):
    cells = row(app, key)
    return cells[2] if cells else None  # mark, pid, state, …


def process(app, pid):
    return next((p for p in app.snapshot.processes if p.pid == pid), None) if app.snapshot else None


def notifications(app):
    return [n.message for n in app._notifications]


async def select(app, pilot, key):
    await pilot.press("p")
    table = app.query_one(ProcessTable)
    table.move_cursor(row=table.keys.index(key))
    await pilot.pause()


def test_the_poller_finds_a_plain_dspy_process_from_proc_alone(directory):
    # A Python process whose command line names dspy: offered, and nothing of it touched.
    named = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "dspy"], stdin=subprocess.PIPE)
    plain = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    changes = []
    offers = AttachOffers(directory, every=0.1, on_change=lambda: changes.append(1))
    try:
        offers.start()
        wait_until(lambda: named.pid in {c.pid for c in offers.latest()}, timeout=10, what="the offer")
        candidate = next(c for c in offers.latest() if c.pid == named.pid)
        assert candidate.evidence == "command line names dspy"
        assert plain.pid not in {c.pid for c in offers.latest()}
        assert changes and offers.error is None
        named.stdin.close()
        named.wait(10)
        wait_until(lambda: named.pid not in {c.pid for c in offers.latest()}, timeout=10, what="the offer gone")
    finally:
        offers.stop()
        for proc in (named, plain):
            proc.kill()
            proc.wait(10)


def test_the_row_says_attaching_until_the_attach_has_answered(directory, tmp_path, monkeypatch):
    """The attach runs on its own thread; until its answer is taken (here held back), the row says so."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no gdb: the attach is refused, without touching the process
    named = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "dspy"], stdin=subprocess.PIPE)
    offering = AttachOffering(directory)
    offering.poller = AttachOffers(directory)
    answered, release = [], threading.Event()

    def done(pid, line, ok):
        release.wait(30)
        answered.append((pid, line, ok))

    try:
        wait_until(
            lambda: offering.poller.scan_now() or offering.candidate(f"{KEY_PREFIX}{named.pid}"), what="the offer"
        )
        states = lambda: {o.pid: o.state for o in offering.offers(None)}  # noqa: E731
        assert states()[named.pid] == "unattached"
        offering.attach(offering.candidate(f"{KEY_PREFIX}{named.pid}"), done)
        assert states()[named.pid] == "attaching…" and offering.attaching(named.pid)
        release.set()
        wait_until(lambda: answered, what="the answer")
        assert states()[named.pid] == "attaching…"  # until the app takes the answer
        ((pid, line, ok),) = answered
        assert (pid, ok) == (named.pid, False) and line.startswith("gdb is not installed")
        offering.finished(pid, ok)
        assert states()[named.pid] == "unattached" and not offering.attaching(named.pid)
    finally:
        named.kill()
        named.wait(10)


@pytest.mark.slow
def test_a_refused_attach_says_why_and_the_row_stays_offered(directory, tmp_path, monkeypatch):
    """`A` then `y` with no gdb on PATH: the notification is `dspy-top attach`'s own line, the job untouched.
    `n` leaves it alone; `A` on an instrumented process and `enter` or `x` on an offer say why not."""
    monkeypatch.setenv("PATH", str(tmp_path))  # the viewer's: no gdb to find (the jobs were started before)
    with SimLM(latency_scale=0.0) as sim:
        job = PlainJob("sequential", 3, sim.base_url, directory)
        instrumented = start_job(directory)
        try:
            truth = instrumented.run(2)
            job.result()
            key = f"{KEY_PREFIX}{job.pid}"

            async def script(app, pilot):
                await wait_for(
                    pilot,
                    lambda: (
                        state(app, key) == "unattached"
                        and process(app, instrumented.proc.pid)
                        and app.snapshot.totals.calls == truth["totals"]["calls"]
                    ),
                    what="the offer and the instrumented process's calls",
                )
                cells = row(app, key)
                assert cells[3:6] == ["-", "-", "-"]  # no figures: nothing is known of it
                assert cells[6].startswith("plain_job.py ") and cells[6].endswith(
                    " · imports dspy (plain_job.py) · A attaches"
                )
                # Not a process of the fleet: in no total, and not counted in the title's.
                assert app.snapshot.totals.calls == truth["totals"]["calls"]
                assert f"{truth['totals']['calls']:,} calls" in str(app.query_one(Header).render())
                assert job.pid not in {p.pid for p in app.snapshot.processes}
                assert "1 live of 1 · " in app.query_one(ProcessTable)._title_wanted
                assert " to attach (A)" in app.query_one(ProcessTable)._title_wanted

                await select(app, pilot, instrumented.socket_path.as_posix())
                await pilot.press("A")
                assert "is instrumented already" in notifications(app)[-1]
                await select(app, pilot, key)
                await pilot.press("enter")
                assert "not attached yet" in notifications(app)[-1] and app.focus_key is None
                await pilot.press("x")
                assert "nothing to dismiss" in notifications(app)[-1]

                await pilot.press("A")
                assert isinstance(app.screen, ConfirmAttach)
                assert f"Attach to pid {job.pid} (" in app.screen.question
                await pilot.press("n")
                assert not isinstance(app.screen, ConfirmAttach)
                assert state(app, key) == "unattached"

                await pilot.press("A", "y")
                await wait_for(
                    pilot, lambda: any("gdb is not installed" in m for m in notifications(app)), what="the refusal"
                )
                refusal = next(m for m in notifications(app) if "gdb is not installed" in m)
                assert "\n" not in refusal
                await wait_for(pilot, lambda: state(app, key) == "unattached", what="offered again")
                assert app.snapshot.totals.calls == truth["totals"]["calls"]

            run_app(directory, script)
            assert not (directory / f"{job.pid}.sock").exists()
            assert job.proc.poll() is None  # the job runs on, untouched
        finally:
            job.close()
            instrumented.proc.kill()
            instrumented.proc.wait(10)


@pytest.mark.slow
@needs_gdb
def test_A_then_y_attaches_an_offered_job_and_its_row_becomes_a_live_process(directory):
    with SimLM(latency_scale=0.0) as sim:
        job = PlainJob("sequential", 10, sim.base_url, directory)
        instrumented = start_job(directory)
        try:
            truth = instrumented.run(2)
            job.result()  # its 20 calls are done: all of them are in DSPy's history
            served = sim.stats()["requests"]
            key = f"{KEY_PREFIX}{job.pid}"

            async def script(app, pilot):
                await wait_for(
                    pilot,
                    lambda: state(app, key) == "unattached" and process(app, instrumented.proc.pid),
                    what="the offer",
                )
                await select(app, pilot, key)
                await pilot.press("A")
                assert isinstance(app.screen, ConfirmAttach)
                await pilot.press("y")  # the row says `attaching…` meanwhile (the next test holds it there)
                await wait_for(
                    pilot,
                    lambda: (
                        (p := process(app, job.pid)) is not None and p.state == "running" and p.totals.calls == served
                    ),
                    timeout=60,
                    what="the attached job, live",
                )
                attached = process(app, job.pid)
                assert attached.before_attach is not None and attached.before_attach.calls == served
                await wait_for(pilot, lambda: row(app, key) is None, what="the offer gone")
                live = row(app, attached.key)
                assert live[2] == "running" and f"{served:,} before attach" in live[6]
                assert app.snapshot.totals.calls == served + truth["totals"]["calls"]
                assert any(
                    m.startswith(f"attached to pid {job.pid} (") and "calls before attach, from DSPy's history" in m
                    for m in notifications(app)
                )

            run_app(directory, script)
        finally:
            job.close()
            instrumented.proc.kill()
            instrumented.proc.wait(10)


def test_without_offers_A_says_why_nothing_happens(directory):
    async def main():
        fleet = Fleet()
        app = TopApp(fleet, Collector(fleet, []), delay=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("A")
            assert "dspy-top attach PID" in notifications(app)[-1]

    asyncio.run(main())
