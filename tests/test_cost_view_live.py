"""Cost you can trust, live: the viewer (Pilot) and batch mode against real jobs on the simulated LM.

Checked against the job's own counters and the simulated LM's token counts: unknown prices,
re-pricing, cache savings per module, budgets (the viewer's and the job's), the stop key.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from dspy_top.model import Fleet
from dspy_top.pricing import Price
from dspy_top.simlm import SimLM
from dspy_top.viewer import format as fmt
from tests.helpers.job_process import JobSubprocess
from tests.helpers.jobs import REPO, runtime_dir

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

LOCAL = "openai/sim-local"  # no price anywhere
MINI = "openai/gpt-4o-mini"  # priced by litellm's table

JOB = r"""
import json, os, sys
os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'
import dspy, dspy_top
handle = dspy_top.instrument()
def lm(model):
    return dspy.LM(model, api_base=os.environ['SIM_URL'], api_key='sim', cache=True)
class Pair(dspy.Module):
    def __init__(self):
        super().__init__()
        self.priced = dspy.Predict('question -> answer')
        self.local = dspy.Predict('question -> answer')
        self.priced.set_lm(lm('openai/gpt-4o-mini'))
        self.local.set_lm(lm('openai/sim-local'))
    def forward(self, question):
        self.priced(question=question)
        return self.local(question=question + ' (check)')
program = Pair()
print('READY', handle.socket_path, flush=True)
done = 0
for line in sys.stdin:
    words = line.split()
    if words and words[0] == 'run':
        for _ in range(int(words[1])):
            program(question=f'What is {done % 4 if done < 8 else done} + 7?')  # calls 5 to 8: cache hits
            done += 1
        print('TRUTH', json.dumps(handle.stats(), default=str), flush=True)
    elif words and words[0] == 'exit':
        break
"""


class Job(JobSubprocess):
    """A `Pair` program (gpt-4o-mini, priced; sim-local, unpriced) on its own sim, driven over stdin."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.sim = SimLM(latency_scale=0.0).start()
        self.directory = runtime_dir()
        super().__init__(
            [sys.executable, "-c", textwrap.dedent(JOB)],
            drop=("DSPY_TOP", "DSPY_TOP_BUDGET", "DSPY_TOP_PRICES", "DSPY_TOP_ON_EXCEED"),
            env={
                "SIM_URL": self.sim.base_url,
                "DSPY_TOP_RUNTIME_DIR": str(self.directory),
                "DSPY_CACHEDIR": str(self.directory / "cache"),
                "PYTHONPATH": str(REPO),
                "DSPY_TOP_CONFIG": str(self.directory / "none.toml"),
                **(env or {}),
            },
        )
        self.next("READY")

    def run(self, calls: int) -> dict:
        self.send(f"run {calls}")
        return json.loads(self.answer("TRUTH"))

    def close(self) -> None:
        self.kill()
        self.sim.stop()


@pytest.fixture(scope="module")
def job():
    # The job's own guard: a tiny budget that warns (never refuses), so its alerts reach the viewer.
    process = Job(env={"DSPY_TOP_BUDGET": "0.00002", "DSPY_TOP_ON_EXCEED": "warn"})
    yield process
    process.close()


def run_app(directory, script, size=(120, 40), **fleet_options):
    from dspy_top.sources.collector import Collector
    from dspy_top.sources.local import local_sockets
    from dspy_top.viewer.app import TopApp

    async def main():
        fleet = Fleet(**fleet_options)
        app = TopApp(fleet, Collector(fleet, [local_sockets(directory=directory, rescan_every=0.2)]), delay=0.2)
        notes: list[tuple[str, str, str]] = []
        app.notify = lambda message, **kw: notes.append(
            (str(message), kw.get("severity", "information"), str(kw.get("title", "")))
        )
        async with app.run_test(size=size) as pilot:
            await script(app, pilot, notes)

    asyncio.run(main())


async def wait_for(pilot, predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def header(app) -> str:
    from dspy_top.viewer.components.header import Header

    return str(app.query_one(Header).render())


def by_path(truth, kind="modules", key="path"):
    return {entry[key]: entry for entry in truth[kind]}


def test_viewer_shows_unknown_cost_then_an_override_prices_it_exactly_with_savings_per_module(job):
    truth = job.run(6)  # 12 LM calls: 8 billed, 4 cache hits
    local = by_path(truth, "models", "model")[LOCAL]
    assert local["unpriced_calls"] == 4 and truth["totals"]["cache_hits"] == 4

    async def unpriced(app, pilot, notes):
        await wait_for(
            pilot,
            lambda: app.snapshot and app.snapshot.totals.calls == truth["totals"]["calls"],
            what="the job's calls",
        )
        totals = app.snapshot.totals
        assert totals.unpriced_calls == 4 and fmt.cost(totals).endswith("+?")
        assert f"{fmt.cost(totals)} (4 unpriced)" in header(app)
        models = {row.model: row for row in app.snapshot.models}
        assert fmt.cost(models[LOCAL].counters) == "?" and not models[LOCAL].price_override
        from dspy_top.viewer.components.module_table import ModuleTable

        table = app.query_one(ModuleTable)
        column = [c.key for c in table.table_columns]
        row = table.get_row("Pair.local")
        assert str(row[column.index("cost")]) == "?"  # unknown, never $0
        # Cache savings per module: the priced module's hits saved exactly what the job says.
        saved = by_path(truth)["Pair.priced"]["cost_saved_usd"]
        assert saved > 0 and str(table.get_row("Pair.priced")[column.index("saved")]) == fmt.dollars(saved)
        assert f"saved {fmt.dollars(truth['totals']['cost_saved_usd'])}" in header(app)

    run_app(job.directory, unpriced)

    price = Price(1.5, 6.0)
    sim = job.sim.stats()  # every billed call of this job reached this sim, and only those

    async def overridden(app, pilot, notes):
        await wait_for(
            pilot,
            lambda: app.snapshot and app.snapshot.totals.calls == truth["totals"]["calls"],
            what="the job's calls",
        )
        totals = app.snapshot.totals
        assert totals.unpriced_calls == 0 and totals.cost_known
        assert totals.prompt_tokens == sim["prompt_tokens"] and totals.completion_tokens == sim["completion_tokens"]
        assert totals.cost_usd == pytest.approx(price.cost(sim["prompt_tokens"], sim["completion_tokens"]), rel=1e-12)
        models = {row.model: row for row in app.snapshot.models}
        assert models[LOCAL].price_override
        assert models[LOCAL].counters.cost_usd == price.cost(local["prompt_tokens"], local["completion_tokens"])
        modules = {n.path: n.counters for n in app.snapshot.modules[0].children}
        for path, entry in by_path(truth).items():
            assert modules[path].cost_usd == pytest.approx(
                price.cost(entry["prompt_tokens"], entry["completion_tokens"]), rel=1e-12
            )
        history = [c for c in app.snapshot.calls if not c.cache_hit]
        assert history and all(c.cost_usd == price.cost(c.prompt_tokens, c.completion_tokens) for c in history)
        assert "* your price" in str(app.query_one("#models").border_title)

    run_app(job.directory, overridden, prices={LOCAL: price, MINI: price})


def test_budget_colours_the_header_and_warns_once_at_80_and_100_percent_and_shows_the_jobs_budget(job):
    truth = job.run(1)
    spent = truth["totals"]["cost_usd"]
    budget = spent / 0.85  # 85% now; a few more billed calls cross 100%

    async def script(app, pilot, notes):
        from dspy_top.viewer.components.header import Header

        await wait_for(
            pilot,
            lambda: app.snapshot and app.snapshot.totals.calls == truth["totals"]["calls"],
            what="the job's calls",
        )
        await wait_for(pilot, lambda: app.query_one(Header).has_class("-budget-warn"), what="-budget-warn")
        assert not app.query_one(Header).has_class("-budget-over")
        assert "of $" in header(app) and "(85%)" in header(app)
        viewer_notes = lambda: [n[:2] for n in notes if n[0].startswith(("80% of the", "budget $"))]  # noqa: E731
        assert viewer_notes() == [(app.snapshot.budget.message(80), "warning")]

        later = await asyncio.to_thread(job.run, 6)  # new questions: billed
        assert later["totals"]["cost_usd"] >= budget
        await wait_for(pilot, lambda: app.query_one(Header).has_class("-budget-over"), what="-budget-over")
        assert not app.query_one(Header).has_class("-budget-warn")
        await asyncio.to_thread(job.run, 2)
        await pilot.pause(0.6)  # several more refreshes
        assert [n[1] for n in viewer_notes()] == ["warning", "error"]  # once each, in order

        # The job's own guard: its limit, its alerts (each said once), in the header.
        (guard,) = app.snapshot.job_budgets
        assert guard.on_exceed == "warn" and guard.total.usd == 0.00002 and guard.total.fraction > 1
        assert [a.level for a in guard.alerts] == ["80", "100"]
        assert "job budget $0.000020" in header(app)
        job_notes = [n for n in notes if "total budget" in n[0] or "passed 80%" in n[0]]
        assert len(job_notes) == 2

    run_app(job.directory, script, budget_usd=budget)


def test_stop_key_asks_first_then_the_job_ends_and_says_why():
    from dspy_top.viewer.components.process_table import ProcessTable
    from dspy_top.viewer.screens.confirm import ConfirmStop

    stopped = Job()
    try:
        stopped.run(1)

        async def script(app, pilot, notes):
            await wait_for(pilot, lambda: app.snapshot and app.snapshot.attached, what="attach")
            # Nothing focused, but it is the only process running: k targets it, from any pane.
            assert app.check_action("stop_job", ()) is True
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmStop)
            await pilot.press("escape")
            await pilot.press("p")  # the process list, cursor on the job
            assert app.focused is app.query_one(ProcessTable)
            assert app.check_action("stop_job", ()) is True
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmStop)
            text = str(app.screen.query_one("#confirm-text").render())
            assert f"Stop pid {stopped.pid} (-c)? y/n" in text
            await pilot.press("n")  # no: nothing is sent
            assert not isinstance(app.screen, ConfirmStop)
            await asyncio.to_thread(stopped.run, 1)
            assert stopped.proc.poll() is None
            await pilot.press("k", "y")
            await pilot.pause(0.3)
            assert any("asked pid" in n[0] for n in notes)
            stopped.send("run 3")  # the next LM call ends the run
            code = await asyncio.to_thread(stopped.proc.wait, 30)
            assert code == 1
            await wait_for(pilot, lambda: app.snapshot.processes[0].state == "ended", what="the job's end")
            # The job's own word on the stop is a stop, not a budget alert: `stopping` while it runs, or, when
            # that word comes with its end, that it stopped (a `stopping` after the end would be stale).
            await wait_for(
                pilot,
                lambda: any(n[2] in (f"pid {stopped.pid} stopping", f"pid {stopped.pid} stopped") for n in notes),
                what="the stop notice",
            )
            assert not any("budget" in f"{n[0]} {n[2]}" for n in notes)
            stops = [a for j in app.snapshot.job_budgets for a in j.alerts if a.level == "stop"]
            assert [(a.scope, a.message.split(" (")[0]) for a in stops] == [
                ("viewer", "dspy-top: stop requested from the viewer")
            ]
            assert app.check_action("stop_job", ()) is False  # nothing left to stop: gone from the footer

        run_app(stopped.directory, script)
        stderr = stopped.stderr
        assert stderr.strip().splitlines()[-1].startswith("dspy-top: stop requested from the viewer (dspy-top pid ")
        assert "Traceback" not in stderr
    finally:
        stopped.close()


def test_once_a_stopped_job_ended_no_notice_says_it_is_stopping():
    """After `k`, `y` and the job's end, what the notifications say is that it stopped, not that it will."""
    from dspy_top.sources.collector import Collector
    from dspy_top.sources.local import local_sockets
    from dspy_top.viewer.app import TopApp
    from dspy_top.viewer.screens.confirm import ConfirmStop

    stopped = Job()
    try:
        stopped.run(1)

        async def main():
            fleet = Fleet()
            app = TopApp(
                fleet, Collector(fleet, [local_sockets(directory=stopped.directory, rescan_every=0.2)]), delay=0.2
            )
            shown = lambda: [f"{n.title}: {n.message}" for n in app._notifications]  # noqa: E731 (on screen now)
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for(pilot, lambda: app.check_action("stop_job", ()), what="the job to stop")
                await pilot.press("k")
                assert isinstance(app.screen, ConfirmStop)
                await pilot.press("y")
                assert any(f"asked pid {stopped.pid} to stop" in n for n in shown())
                stopped.send("run 3")  # the next LM call ends the run
                assert await asyncio.to_thread(stopped.proc.wait, 30) == 1
                await wait_for(
                    pilot,
                    lambda: any(f"pid {stopped.pid} stopped as asked: ended" in n for n in shown()),
                    what="the end said",
                )
                await pilot.pause(0.5)  # more refreshes: nothing stale comes back
                assert not any("asked pid" in n or "stopping" in n or "ends the run" in n for n in shown()), shown()

        asyncio.run(main())
    finally:
        stopped.close()


def dspy_top_batch(directory, *args):
    env = {
        **os.environ,
        "DSPY_TOP_RUNTIME_DIR": str(directory),
        "PYTHONPATH": str(REPO),
        "DSPY_TOP_CONFIG": str(directory / "none.toml"),
    }
    for name in ("DSPY_TOP_BUDGET", "DSPY_TOP_PRICES"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", "-b", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_batch_json_cost_fields_overrides_budget_warnings_and_exit_status(job):
    truth = job.run(0)
    totals = truth["totals"]
    result = dspy_top_batch(job.directory, "-n", "2", "-d", "0.3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.splitlines()[-1])
    assert data["totals"]["unpriced_calls"] == totals["unpriced_calls"] > 0
    assert data["totals"]["cost_known"] is False
    assert data["totals"]["cost_saved_usd"] == pytest.approx(totals["cost_saved_usd"]) and totals["cost_saved_usd"] > 0
    modules = {m["path"]: m for m in data["modules"]}
    for path, entry in by_path(truth).items():
        assert modules[path]["cost_saved_usd"] == pytest.approx(entry["cost_saved_usd"])
        assert modules[path]["unpriced_calls"] == entry["unpriced_calls"]
    rates = data["rates"]
    assert set(rates) >= {
        "window_s",
        "cost_per_min",
        "cost_per_min_avg",
        "cost_per_hour",
        "tokens_per_sec",
        "tokens_per_sec_avg",
        "eval_projection",
    }
    assert rates["cost_per_min_avg"] > 0 and rates["tokens_per_sec_avg"] > 0
    assert data["budget"]["viewer"] is None
    (guard,) = data["budget"]["jobs"]
    assert guard["pid"] == job.pid and guard["on_exceed"] == "warn"
    assert [a["level"] for a in guard["alerts"]] == [80, 100]
    assert guard["limits"][0]["spent_usd"] == pytest.approx(totals["cost_usd"])

    # --price: the unpriced model is priced from its exact token counts; the mark says so.
    result = dspy_top_batch(job.directory, "-n", "1", "--json", "--price", f"{LOCAL}=1.5/6")
    data = json.loads(result.stdout)
    local = by_path(truth, "models", "model")[LOCAL]
    assert data["totals"]["unpriced_calls"] == 0 and data["totals"]["cost_known"] is True
    models = {m["model"]: m for m in data["models"]}
    assert models[LOCAL]["price_override"] and not models[MINI]["price_override"]
    assert models[LOCAL]["cost_usd"] == pytest.approx(
        Price(1.5, 6).cost(local["prompt_tokens"], local["completion_tokens"])
    )
    assert data["totals"]["cost_usd"] == pytest.approx(totals["cost_usd"] + models[LOCAL]["cost_usd"])

    # --budget: past 80% only: one warning, status 0; past 100%: both, once each over three frames, status 3.
    spent = totals["cost_usd"]
    result = dspy_top_batch(job.directory, "-n", "3", "-d", "0.2", "--budget", str(spent / 0.9))
    assert result.returncode == 0, result.stderr
    assert [line.split(" of the")[0] for line in result.stderr.splitlines()] == ["dspy-top: 80%"]
    result = dspy_top_batch(job.directory, "-n", "3", "-d", "0.2", "--json", "--budget", str(spent / 2))
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("dspy-top: 80% of the") and lines[1].startswith("dspy-top: budget $")
    assert all("(at least: some calls have no known price)" in line for line in lines)
    viewer = json.loads(result.stdout.splitlines()[-1])["budget"]["viewer"]
    assert viewer["level"] == 100 and viewer["fraction"] == pytest.approx(2.0, rel=1e-6)
    assert dspy_top_batch(job.directory, "-n", "1", "--budget", "abc").returncode == 2
    assert dspy_top_batch(job.directory, "-n", "1", "--price", "x=1").returncode == 2
