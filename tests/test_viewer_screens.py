"""The viewer's screens (viewer/screens/): each binds its own keys; the view state the app holds follows them.

Pilot on a scripted fleet (tests/helpers/optimizer_script.py) and a scripted job: fast and deterministic.
"""

from __future__ import annotations

import asyncio

import pytest

from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.filter_bar import FilterBar
from dspy_top.viewer.components.job_log import JobLog
from dspy_top.viewer.components.module_table import ModuleTable
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.components.trial_table import TrialTable
from dspy_top.viewer.screens.help import HelpScreen
from dspy_top.viewer.screens.main import MainScreen
from dspy_top.viewer.screens.optimizers import OptimizersScreen
from tests.helpers.optimizer_script import KEY, optimizer_fleet
from tests.helpers.scripted import RUNTIME_DIR, ScriptedCollector

pytestmark = pytest.mark.slow  # every test here starts a job, a terminal or the real app


class ScriptedJob:
    """The `Job` protocol with output and an exit status the test sets."""

    pid = 41822
    command = ["python", "optimize.py"]
    log_path = "/tmp/optimize.log"

    def __init__(self) -> None:
        self.pending = "epoch 1\n"
        self.code: int | None = None

    def returncode(self) -> int | None:
        return self.code

    def interrupt(self) -> None:
        pass

    def read_new_output(self) -> str:
        text, self.pending = self.pending, ""
        return text


def run_app(script, job=None, size=(120, 40)):
    async def main():
        fleet, _clock = optimizer_fleet()
        app = TopApp(fleet, ScriptedCollector(fleet), delay=0.05, watching=str(RUNTIME_DIR), job=job)
        async with app.run_test(size=size) as pilot:
            await script(app, pilot)

    asyncio.run(main())


def footer_keys(app) -> set[str]:
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show}


def test_o_opens_the_optimizer_screen_with_its_own_keys_and_o_or_escape_goes_back():
    async def script(app, pilot):
        await pilot.pause(0.1)
        assert isinstance(app.screen, MainScreen)
        assert {"t", "p", "m", "o", "less_than_sign"} <= footer_keys(app)
        modules = app.screen.query_one(ModuleTable)
        await pilot.press("o")
        screen = app.screen
        assert isinstance(screen, OptimizersScreen) and app.focused is screen.query_one("#optimizer-runs")
        keys = footer_keys(app)
        assert {"o", "less_than_sign", "greater_than_sign", "f"} <= keys and not {"t", "p", "m"} & keys
        trials = screen.query_one(TrialTable)
        await pilot.press("greater_than_sign", "t")  # < > sort the trials here; t is not this screen's key
        assert trials.sort_key == "kind" and modules.sort_key == "cost" and modules.tree_mode
        await pilot.press("o")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("o")
        assert app.screen is screen and trials.sort_key == "kind"  # the same screen, its sort kept
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("greater_than_sign")
        assert modules.sort_key == "p50" and trials.sort_key == "kind"  # the module table's next column

    run_app(script)


def test_only_the_screen_in_front_is_refreshed_and_a_screen_coming_back_catches_up():
    async def script(app, pilot):
        await pilot.pause(0.1)
        main = app.screen
        await pilot.press("o")
        shown = main.snapshot
        for done in (13, 14):  # new data: the next ticks redraw the tables
            with app.fleet.lock:
                app.fleet.fold(KEY, {"t": "eval_progress", "id": "eval-16", "done": done, "score_sum": 9.0})
            await pilot.pause(0.2)
        assert app.snapshot.scopes != shown.scopes
        assert app.screen.snapshot.scopes == app.snapshot.scopes and main.snapshot is shown
        await pilot.press("o")
        assert main.snapshot.scopes == app.snapshot.scopes

    run_app(script)


def test_pause_filter_hidden_log_and_the_jobs_output_follow_every_screen():
    job = ScriptedJob()

    async def script(app, pilot):
        await pilot.pause(0.1)
        await pilot.press("o")
        optimizers = app.screen
        log = optimizers.query_one(JobLog)
        assert log.lines[0] == "epoch 1"  # written before this screen existed
        job.pending = "epoch 2\n"
        await pilot.pause(0.2)
        assert log.lines[:2] == ["epoch 1", "epoch 2"]
        await pilot.press("space", "l")
        assert optimizers.has_class("-paused") and optimizers.has_class("-hide-log")
        await pilot.press("tab", "down", "enter")  # trial 6: the history filters to its calls
        assert app.call_query.text == "pid:41822 scope:eval-15"
        await pilot.press("p")  # the process list lives on the main screen
        await pilot.pause(0.1)
        main = app.screen
        assert isinstance(main, MainScreen) and app.focused is main.query_one(ProcessTable)
        assert main.has_class("-paused") and main.has_class("-hide-log") and main.has_class("-filtering")
        assert main.query_one(FilterBar).value == "pid:41822 scope:eval-15"
        assert main.query_one(ModuleTable).filter_query.text == "pid:41822 scope:eval-15"
        assert all("eval-15" in call.scopes for call in main.snapshot.calls)
        await pilot.press("space", "l")
        job.code = 3
        await pilot.pause(0.2)
        main_log = main.query_one(JobLog)
        assert main_log.lines[:2] == ["epoch 1", "epoch 2"] and main.has_class("-job-ended")
        await pilot.press("o")
        assert not optimizers.has_class("-paused") and not optimizers.has_class("-hide-log")
        for pane in (log, main_log):
            assert sum("exited with code 3" in line for line in pane.lines) == 1
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "m")  # m: the models pane, on the main screen
        await pilot.pause(0.1)
        assert app.screen is main and not main.has_class("-hide-bottom")

    run_app(script, job=job)


def test_the_job_transcript_is_bounded_and_a_pane_that_fell_behind_starts_afresh():
    from dspy_top.viewer.job import JobTranscript

    transcript = JobTranscript(max_lines=4)
    transcript.add("a\nb\n")
    seen = transcript.end
    transcript.add("c\n")
    assert transcript.since(seen) == ("c\n", False)
    transcript.add("d\ne\nf\n")  # over 4 lines: the oldest chunks go
    assert transcript.since(0) == ("c\nd\ne\nf\n", True)
    assert transcript.since(transcript.end) == ("", False)
