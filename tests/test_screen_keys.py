"""The screen a top user expects (issue 18): columns that never touch, names cut in the middle, keys that
always answer (k, x, Home/End, z, escape, F1/F10, d), the cursor kept on its row, the inspector opening on
the response, one consistent job state. Pilot on scripted fleets, and real jobs where the bug needs one."""

from __future__ import annotations

import asyncio
import time

import pytest

from dspy_top.model import Fleet
from dspy_top.viewer import format as fmt
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.keyed_table import GAP, KeyedTable
from dspy_top.viewer.components.module_table import ModuleTable
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.components.status_line import StatusLine
from dspy_top.viewer.components.trial_table import TrialTable
from dspy_top.viewer.screens.confirm import ConfirmDismiss, ConfirmStop
from dspy_top.viewer.screens.help import HelpScreen
from dspy_top.viewer.screens.inspect import InspectScreen
from dspy_top.viewer.screens.main import MainScreen
from tests.helpers.jobs import runtime_dir, start_job
from tests.helpers.optimizer_script import KEY, optimizer_fleet, optimizer_scopes
from tests.helpers.screen import screen_text
from tests.helpers.scripted import NOW, RUNTIME_DIR, ScriptedCollector, _call, _hello, _stats, counters, scripted_fleet

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def run(fleet, script, size=(120, 40), job=None, collector=None):
    async def main():
        app = TopApp(fleet, collector or ScriptedCollector(fleet), delay=0.05, watching=str(RUNTIME_DIR), job=job)
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.1)
            await script(app, pilot)

    asyncio.run(main())


async def wait_for(pilot, predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


# --- numbers that read right, in columns that never touch ----------------------------------------------


def extreme_fleet() -> Fleet:
    """Values at the edge of every format: millions of calls, tiny and large costs, long names."""
    fleet, clock = scripted_fleet(processes=1)
    key = "/run/user/1000/dspy-top/41822.sock"
    big = counters(
        1_234_567,
        987_654_321,
        123_456_789,
        12_345.67,
        hits=654_321,
        errors=99_999,
        saved=0.000017,
        unpriced=3,
        latencies=(0.0004, 125.0, 3_700.0),
    )
    modules = [
        {
            "path": "AVeryLongProgramName.with_a_long_submodule_name.and_another_predictor.predict",
            "class": "ChainOfThoughtWithHints",
            "chain": [],
            **big,
        },
        {
            "path": "Small",
            "class": "Predict",
            "chain": ["Small"],
            **counters(3, 10, 2, 0.000017, hits=1, saved=0.000017),
        },
        # The widest money texts: a sub-micro-dollar cost, and a sub-cent one with unpriced calls.
        {"path": "Tiny", "class": "Predict", "chain": ["Tiny"], **counters(1, 1, 1, 0.0000004, saved=0.0000004)},
        {"path": "Cheap", "class": "Predict", "chain": ["Cheap"], **counters(2, 5, 1, 0.000032, unpriced=1)},
    ]
    models = [
        {"model": "openrouter/anthropic/claude-3.5-sonnet-20241022-with-a-long-suffix", **big},
        {"model": "tiny", **counters(1, 1, 1, 0.000032, unpriced=1)},
    ]
    calls = [
        _call(
            900 + i,
            "AVeryLongProgramName.with_a_long_submodule_name.and_another_predictor.predict",
            NOW - 5 + i,
            1234.5,
            987_654,
            123_456,
            0.0000004 if i == 2 else 0.000017,
            cache=i == 1,
            error="RateLimitError" if i else None,
            retries=12,
        )
        for i in range(3)
    ]
    with fleet.lock:
        for call in calls:
            fleet.fold(key, call)
        fleet.fold(key, _stats(big, modules, models))
    return fleet


def assert_columns_apart(table: KeyedTable) -> None:
    """Every number fits its column whole, with the gap before it; every text starts after the gap."""
    columns = table.table_columns
    for row_index in range(table.row_count):
        for index, (column, cell) in enumerate(zip(columns, table.get_row_at(row_index))):
            if column.right:  # drawn right-justified in width + gap: it leaves the gap blank, and is not cut
                assert cell.cell_len <= column.width and "…" not in cell.plain, (column.key, cell.plain)
            elif index:
                assert cell.plain.startswith(" " * GAP), (column.key, cell.plain)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_no_column_touches_its_neighbour_at_any_width(size):
    async def script(app, pilot):
        await pilot.press("m")  # at 80 columns the models and processes step aside: bring them back
        await pilot.pause(0.1)
        for table in app.screen.query(KeyedTable):
            assert_columns_apart(table)
        history = app.screen.query_one(HistoryTable)
        header = "".join(s.text for s in history.render_line(0)).split()
        assert header[:2] == ["TIME", "MODULE"]  # the time never runs into the module
        text = screen_text(app)
        assert "<$0.000001" in text and "$0.000032+?" in text  # the widest money texts, whole
        assert "0     6$" not in text and "…" in text  # long names are cut, not run together
        for line in text.splitlines():
            assert "ms1" not in line and "s$" not in line  # a latency never runs into a cost

    run(extreme_fleet(), script, size=size)


def test_every_money_text_fits_the_columns_made_for_it():
    from types import SimpleNamespace

    for value in (0.0000004, 0.0000032, 0.000032, 0.00099, 0.0043, 1.5, 99.99, 123_456.0, 999_999.0, 9_999_999.0):
        assert len(fmt.dollars(value)) <= fmt.DOLLARS_WIDTH, value
        for unpriced in (0, 1):
            if value < 1_000_000 or not unpriced:
                text = fmt.cost(SimpleNamespace(cost_usd=value, unpriced_calls=unpriced))
                assert len(text) <= fmt.COST_WIDTH, text
    # Less than a millionth of a dollar priced, and calls with no price: unknown, not `<$0.000001+?`.
    assert fmt.cost(SimpleNamespace(cost_usd=0.0000004, unpriced_calls=2)) == "?"


def test_long_names_are_cut_in_the_middle_and_a_process_shows_its_script():
    assert fmt.middle("RAG.generate_query.predict", 15) == "RAG.gen…predict"
    assert fmt.middle("short", 15) == "short"
    assert fmt.command(["/home/me/src/project/jobs/optimize.py", "--auto", "light"]) == "optimize.py --auto light"

    async def script(app, pilot):
        rows = {key: app.query_one(ProcessTable).get_row(key) for key in app.query_one(ProcessTable).keys}
        (command,) = [row[-1].plain for row in rows.values()]
        assert command.strip() == "optimize.py --auto light"

    run(scripted_fleet(processes=1)[0], script)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_what_is_said_of_an_ended_process_is_never_cut_for_its_command_line(size):
    fleet, clock = scripted_fleet(processes=1)
    key = "/run/user/1000/dspy-top/41990.sock"
    argv = ["/home/me/src/project/jobs/evaluate_all.py", *(f"--option-{i} value-{i}" for i in range(12)), "--last"]
    with fleet.lock:
        fleet.attach(key, 41990)
        fleet.connected(key, _hello(41990, argv, NOW - 100))
        fleet.fold(key, {"t": "exit", "at": NOW - 1, "stats": _stats(counters(5, 500, 50, 0.01), [], [])})
        fleet.exit_status(41990, 3)

    async def script(app, pilot):
        await pilot.press("p")
        await pilot.pause(0.1)
        table = app.screen.query_one(ProcessTable)
        cell = table.get_row("/run/user/1000/dspy-top/41990.sock")[-1].plain.strip()
        # The script whole where there is room for it and a little more; its start where there is not.
        assert cell.endswith(" · ended (exit 3)") and cell.startswith("evaluate_all.py " if size[0] > 100 else "eval")
        assert "…" in cell and cell.removesuffix(" · ended (exit 3)").endswith("-last")
        assert len(cell) <= table.table_columns[-1].width
        assert "ended (exit 3)" in screen_text(app)

    run(fleet, script, size=size)


def test_the_header_leaves_zero_retries_and_drops_out_under_100_columns():
    from dspy_top.viewer.components.header import Header

    fleet, _ = scripted_fleet(processes=1)
    snapshot = fleet.snapshot()
    wide = Header.render_text(Header(), snapshot, 120, False).plain
    narrow = Header.render_text(Header(), snapshot, 80, False).plain
    assert "3 retries" in wide and "0 dropped" in wide
    assert "3 retries" in narrow and "dropped" not in narrow  # a count that is not 0 stays
    quiet = Header.render_text(Header(), scripted_fleet(empty=True)[0].snapshot(), 80, False).plain
    assert "0 err" in quiet and "retries" not in quiet  # two lines of numbers and the charts, at 80x24
    assert len(quiet.splitlines()) == 3 and all(len(line) <= 80 for line in quiet.splitlines())


def test_a_line_cut_at_the_edge_says_so():
    """The header's optimizer line leaves its last parts out whole (never a lone `~`); the job's log ends a
    line longer than the pane with `…` (never `Trial 8 / 2` for `Trial 8 / 20`)."""
    assert fmt.whole_parts("trial 7/20 · best 95.0% · ~$0.02 to finish", 30) == "trial 7/20 · best 95.0%"
    assert fmt.whole_parts("a very long first part", 10) == "a very lo…"

    class TalkingJob(LingeringJob):
        said = False

        def read_new_output(self):
            if self.said:
                return ""
            self.said = True
            return "INFO dspy.teleprompt.mipro_optimizer_v2: " + "=" * 30 + " Trial 8 / 20 =====\nshort line\n"

    async def script(app, pilot):
        await wait_for(pilot, lambda: "short line" in screen_text(app), "the job's output")
        lines = screen_text(app).splitlines()
        (cut,) = [line for line in lines if "mipro_optimizer_v2" in line]
        assert cut.rstrip().endswith("…") and "Trial 8 / 2" not in cut
        (progress,) = [line for line in lines if line.startswith(" MIPROv2")]
        assert progress.rstrip()[-1] not in "~·" and "~" not in progress.rsplit("·", 1)[-1].strip()[:1]

    run(optimizer_fleet()[0], script, size=(80, 24), job=TalkingJob())


@pytest.mark.parametrize("width", [120, 80])
def test_each_chart_says_its_unit_its_peak_and_its_span(width):
    import re

    from dspy_top.viewer.components.header import Header

    snapshot = scripted_fleet(processes=1)[0].snapshot()
    text = Header.render_text(Header(), snapshot, width, False).plain
    (line,) = [line for line in text.splitlines() if line.startswith(" tok/s ")]
    found = re.fullmatch(r" tok/s ([▁-█]+) peak (\S+)  \$/min ([▁-█]+) peak (\$\S+)  last (\d+)s.*", line)
    assert found, line
    tokens, token_peak, dollars, dollar_peak, span = found.groups()
    assert len(tokens) == len(dollars) == int(span)  # one bar a second, as many as it says
    assert token_peak == fmt.rate(max(snapshot.token_series[-int(span) :]))
    per_minute = [60 * v / snapshot.series_bucket for v in snapshot.cost_series[-int(span) :]]
    assert dollar_peak == fmt.dollars(max(per_minute))
    assert len(line) <= width


def test_a_module_of_unknown_cost_has_an_unknown_share_not_0_percent():
    async def script(app, pilot):
        modules = app.screen.query_one(ModuleTable)
        columns = [c.key for c in modules.table_columns]
        row = modules.get_row("(direct)")
        assert row[columns.index("cost")].plain.strip() == "?" and row[columns.index("share")].plain.strip() == "?"
        judge = modules.get_row("Judge")
        assert judge[columns.index("share")].plain.strip() == "16%"

    run(scripted_fleet()[0], script)


def test_the_header_and_the_trials_pane_count_trials_alike():
    """One count at one instant: the header's `trial 7/20` is the trials pane's, which also counts the
    evaluations it lists (MIPROv2 numbers its baseline 0: 8 evaluations of 21 planned)."""
    import re

    async def script(app, pilot):
        await pilot.press("o")
        await wait_for(pilot, lambda: app.screen.query(TrialTable), "the optimizer screen")
        trials = app.screen.query_one(TrialTable)
        await wait_for(pilot, lambda: trials.row_count > 0, "the trials")
        header = next(line for line in screen_text(app).splitlines() if line.startswith(" MIPROv2"))
        title = str(trials.border_title)
        assert re.search(r"trial (\d+/\d+)", header)[1] == re.search(r"trial (\d+/\d+)", title)[1] == "7/20"
        listed, planned = map(int, re.search(r"(\d+) of (\d+) evaluations planned", title).groups())
        assert listed == trials.row_count == 8 and planned == 21

    run(optimizer_fleet()[0], script)


def test_the_replay_bar_says_where_it_cut_its_title():
    from dspy_top.sources.replay_clock import Playback
    from dspy_top.viewer.replay.bar import ReplayBar

    playback = Playback(position=106.0, start=100.0, end=113.0, speed=1.0, playing=False, following=False)
    title = "complete recording of optimize.py --trials 3 (pid 4242, 2027-01-15 08:00)"
    for width in (80, 120):
        line = ReplayBar.render_text(playback, False, title, width).plain
        assert len(line) <= width and line.endswith("…") and "complete recording of optimize.py" in line


def test_one_score_format_everywhere():
    from dspy_top.viewer.batch import snapshot_text

    fleet, _ = optimizer_fleet()
    text = snapshot_text(fleet.snapshot())
    assert "best 90.0%" in text and "75.0%" in text and " 90.0 " not in text

    async def script(app, pilot):
        await pilot.press("o")
        await pilot.pause(0.1)
        screen = screen_text(app)
        assert "best 90.0%" in screen and "90.0%" in screen
        assert "best 90.0 " not in screen and " 90.0 " not in screen

    run(optimizer_fleet()[0], script)


def big_program_fleet() -> Fleet:
    """A job with 24 module paths (more rows than the screen has), its optimizer running."""
    fleet, _ = optimizer_fleet()
    paths = [f"Program.stage_{i}.predict" for i in range(24)]
    modules = [
        {
            "path": path,
            "class": "Predict",
            "chain": ["Program", "ChainOfThought", "Predict"],
            **counters(10 + i, 1_000, 100, 0.001 * (i + 1)),
        }
        for i, path in enumerate(paths)
    ]
    with fleet.lock:
        fleet.fold(KEY, _stats(counters(300, 24_000, 2_400, 0.3), modules, [], optimizer_scopes()))
    return fleet


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
@pytest.mark.parametrize("with_job", [False, True], ids=["attached", "run"])
def test_the_history_keeps_its_share_however_many_modules_and_every_pane_fits(size, with_job):
    """Panes sized by their rows: the modules take what they need of what is left, never the history's
    share; the models and processes panes keep no empty rows; nothing is pushed off the screen."""

    async def script(app, pilot):
        screen = app.screen
        if size[0] < 100:
            await pilot.press("m")  # the models and processes panes, which step aside at 80 columns
        await pilot.pause(0.2)
        main = screen.query_one("#main")
        history = screen.query_one(HistoryTable)
        modules = screen.query_one(ModuleTable)
        panes = [w for w in main.children if w.display and w.region.height]
        assert sum(w.outer_size.height for w in panes) <= main.size.height  # none pushed off the bottom
        assert history.region.height >= max(5, int(0.3 * main.size.height))
        assert history.region.bottom <= main.region.bottom
        assert modules.region.height >= 4 and modules.row_count > modules.region.height - 2  # it scrolls
        for table in screen.query(ProcessTable):
            assert table.region.height == 2 + table.row_count  # title, header and its rows: no empty row
        # The room the modules leave goes to the history, and z gives a pane all of it.
        modules.focus()
        await pilot.press("z")
        await pilot.pause(0.1)
        assert modules.region.height == main.size.height
        await pilot.press("z")
        await pilot.pause(0.1)
        assert history.region.height >= max(5, int(0.3 * main.size.height))

    run(big_program_fleet(), script, size=size, job=LingeringJob() if with_job else None)


# --- keys that always answer ---------------------------------------------------------------------------


def test_home_and_end_move_in_the_modules_pane():
    async def script(app, pilot):
        modules = app.screen.query_one(ModuleTable)
        modules.focus()
        assert modules.cursor_row == 0
        await pilot.press("end")
        assert modules.cursor_row == modules.row_count - 1 > 0
        await pilot.press("home")
        assert modules.cursor_row == 0

    run(scripted_fleet()[0], script)


def test_k_targets_the_only_running_job_and_asks_plainly():
    async def script(app, pilot):
        assert app.stop_target() is not None  # one process running, nothing focused
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmStop)
        text = str(app.screen.query_one("#confirm-text").render())
        assert "Stop pid 41822 (optimize.py --auto light)? y/n" in text
        assert "BudgetStop" not in text and "budget" not in text.lower()
        # The screen behind stays: the question is a box over it, not a blank screen.
        assert "Modules" in screen_text(app) and "History" in screen_text(app)
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen)

    run(scripted_fleet(processes=1)[0], script)


def test_escape_leaves_each_mode_in_turn_and_z_zooms_a_pane():
    async def script(app, pilot):
        screen = app.screen
        history = screen.query_one(HistoryTable)
        history.focus()
        await pilot.press("up", "z")  # paused scrolling, then zoom the history
        assert screen.has_class("-zoomed") and history.has_class("-zoom")
        assert not screen.query_one(ModuleTable).display or screen.query_one(ModuleTable).region.height == 0
        await pilot.press("space")  # paused
        await pilot.press("slash", *"module:answer", "enter")  # filtering
        assert app.call_query.text == "module:answer" and app.paused and not history.follow
        await pilot.press("escape")
        assert not screen.has_class("-zoomed") and app.call_query.text == "module:answer"
        await pilot.press("escape")
        assert app.call_query.text == "" and app.paused
        await pilot.press("escape")
        assert not app.paused and not history.follow
        await pilot.press("escape")
        assert history.follow
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)  # nothing left to leave

    run(scripted_fleet()[0], script)


def test_every_key_the_footer_shows_fits_at_120_columns():
    async def script(app, pilot):
        for screen in ("MainScreen", "OptimizersScreen"):
            await wait_for(
                pilot,
                lambda: type(app.screen).__name__ == screen and "q Quit" in screen_text(app),  # noqa: B023
                f"the footer of the {screen}",
            )
            footer = screen_text(app).splitlines()[-1]
            assert footer.rstrip().endswith("k Stop job"), footer  # the last one shown, whole
            assert "Sort" in footer and "Zoom" in footer
            await pilot.press("o")

    run(scripted_fleet(processes=1)[0], script, size=(120, 40))


def test_htop_keys_f1_to_f10_and_d():
    async def script(app, pilot):
        await wait_for(pilot, lambda: "q Quit" in screen_text(app), "the footer")
        footer = next(line for line in screen_text(app).splitlines() if "q Quit" in line)
        assert "? Help" in footer[:40]  # help stays in view at 80 columns
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, MainScreen)
        # htop's other function keys: F3/F4 search and filter, F5 tree, F6 sort, F9 stop (kill).
        await pilot.press("f3")
        assert app.focused is app.screen.query_one("#filter")
        await pilot.press("escape")
        app.screen.query_one(ModuleTable).focus()
        modules = app.screen.query_one(ModuleTable)
        tree, sort = modules.tree_mode, modules.sort_key
        await pilot.press("f5", "f6")
        assert modules.tree_mode is not tree and modules.sort_key != sort
        await pilot.press("f9")
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("n")
        delays = []
        for _ in range(5):
            await pilot.press("d")
            delays.append(app.delay)
        assert delays == [0.5, 1.0, 2.0, 5.0, 0.5]  # from the test's 0.05 s: each step, then round again
        await pilot.press("f10")
        await pilot.pause(0.1)
        assert not app.is_running

    run(scripted_fleet()[0], script, size=(80, 24))


def test_the_trial_cursor_stays_on_its_trial_as_new_trials_arrive_above_it():
    fleet, clock = optimizer_fleet()

    async def script(app, pilot):
        await pilot.press("o")
        trials = app.screen.query_one(TrialTable)
        trials.focus()
        assert trials.keys[0] == "eval-16"
        await pilot.press("down")  # trial 6
        chosen = trials.cursor_key
        assert chosen == "eval-15"
        scopes = optimizer_scopes()
        scopes.append(
            {
                "id": "eval-17",
                "kind": "eval",
                "state": "running",
                "start": NOW - 1,
                "parent": "compile-2",
                "total": 20,
                "done": 1,
                "score_sum": 1.0,
                "usage": counters(1, 900, 60, 0.0001),
            }
        )
        module = counters(247, 218_900, 15_260, 0.0233)
        with fleet.lock:
            fleet.fold(KEY, _stats(module, [], [], scopes))
        await wait_for(pilot, lambda: "eval-17" in trials.keys, "the new trial")
        assert trials.keys[0] == "eval-17" and trials.cursor_key == chosen
        await pilot.press("enter")
        assert app.call_query.text == "pid:41822 scope:eval-15"

    run(fleet, script)


# --- one consistent state as a job ends ---------------------------------------------------------------


class LingeringJob:
    """A `dspy-top run` job whose process sent its exit message and is still exiting."""

    pid = 41822
    command = ["python", "optimize.py"]
    log_path = "/tmp/optimize.log"
    code = None

    def returncode(self):
        return self.code

    def interrupt(self):
        pass

    def read_new_output(self):
        return ""


def test_once_the_job_sent_its_final_numbers_nothing_says_it_is_running():
    fleet, clock = scripted_fleet(processes=1)
    job = LingeringJob()

    async def script(app, pilot):
        key = "/run/user/1000/dspy-top/41822.sock"
        with fleet.lock:
            fleet.fold(key, {"t": "exit", "at": NOW, "stats": _stats(counters(3214, 2_230_000, 210_000, 2.87), [], [])})
        await wait_for(pilot, lambda: app.snapshot.processes[0].state == "ended", "the exit message")
        await pilot.pause(0.1)
        status = str(app.screen.query_one(StatusLine).render())
        assert "running" not in status and "ended its run" in status
        assert not any(node.active for node in app.snapshot.modules)
        job.code = 0
        await wait_for(pilot, lambda: app.snapshot.processes[0].status == "ended (exit 0)", "the exit status")
        assert "job exited with code 0" in str(app.screen.query_one(StatusLine).render())

    run(fleet, script, job=job)


def test_once_the_ended_job_is_dismissed_the_empty_screen_says_so_and_how_to_quit():
    fleet, clock = scripted_fleet(processes=1)
    job = LingeringJob()
    job.code = None

    async def script(app, pilot):
        key = "/run/user/1000/dspy-top/41822.sock"
        with fleet.lock:
            fleet.fold(key, {"t": "exit", "at": NOW, "stats": _stats(counters(3, 20, 2, 0.01), [], [])})
        job.code = 0
        await wait_for(pilot, lambda: app.snapshot.processes[0].status == "ended (exit 0)", "the exit status")
        await pilot.press("p", "x")
        assert isinstance(app.screen, ConfirmDismiss)
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.snapshot.processes, "the dismissal")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "The job ended (exit 0) and its process was dismissed." in text and "q quits" in text
        assert "Start one and it appears here" not in text and "dspy-top run --" not in text

    run(fleet, script, job=job)


def test_dismissing_the_ended_job_asks_first_and_leaves_no_ghost_row():
    """`x` on `dspy-top run`'s ended job (a named target): asked first, then gone for good, not back as
    `failed · no process N`."""
    from dspy_top.sources.collector import Collector
    from dspy_top.sources.local import local_sockets

    directory = runtime_dir()
    job = start_job(directory)
    try:
        truth = job.run(2)

        async def main():
            fleet = Fleet()
            source = local_sockets(pids=[job.pid], directory=directory, rescan_every=0.1)
            app = TopApp(fleet, Collector(fleet, [source]), delay=0.1)
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for(
                    pilot, lambda: app.snapshot and app.snapshot.totals.calls == truth["totals"]["calls"], "the job"
                )
                await asyncio.to_thread(job.exit)
                await wait_for(pilot, lambda: app.snapshot.processes[0].state == "ended", "the job's end")
                await pilot.press("p", "x")
                assert isinstance(app.screen, ConfirmDismiss)
                assert f"Its {truth['totals']['calls']:,} calls" in str(app.screen.query_one("#confirm-text").render())
                await pilot.press("y")
                await wait_for(pilot, lambda: not app.snapshot.processes, "the dismissal")
                scans = source.scans
                await wait_for(pilot, lambda: source.scans >= scans + 5, "more scans")
                await pilot.pause(0.3)
                assert not app.snapshot.processes, [p.status for p in app.snapshot.processes]

        asyncio.run(main())
    finally:
        job.kill()


# --- the inspector ------------------------------------------------------------------------------------


async def open_newest_call(app, pilot) -> InspectScreen:
    app.screen.query_one(HistoryTable).focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.answer, "the payload")
    return app.screen


def test_the_inspector_opens_on_the_response_jumps_between_sections_and_shows_inspect_history():
    async def script(app, pilot):
        screen = await open_newest_call(app, pilot)
        body = str(screen.query_one("#inspect-text").render())
        assert body.index("── Response ──") < body.index("── System message ──") < body.index("── User message ──")
        await pilot.press("i")
        exact = str(screen.query_one("#inspect-text").render())
        assert exact.startswith("[") and "System message:" in exact and "Response:\n\n[[ ## answer ## ]]" in exact
        assert exact.index("System message:") < exact.index("User message:") < exact.index("Response:")
        await pilot.press("i", "slash", *"17 + 25", "enter")
        assert screen._matches and screen._match == 0
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, MainScreen)

    run(scripted_fleet()[0], script, size=(100, 30))


def test_tab_jumps_from_section_to_section():
    async def script(app, pilot):
        scroll = (await open_newest_call(app, pilot)).query_one("#inspect-body")
        positions = []
        for _ in range(3):
            await pilot.press("tab")
            await pilot.pause(0.05)
            positions.append(round(scroll.scroll_y))
        assert positions == sorted(positions) and positions[-1] > positions[0]

    run(scripted_fleet()[0], script, size=(100, 16))
