"""SVG snapshots of the main screens at 80x24 and 120x40, clock pinned, data scripted.

Every picture is taken once the screen is steady (tests/helpers/steady.py), never after a fixed
pause: keys pressed before the main screen is up would be dropped on a loaded machine.
Update with `pytest tests/test_viewer_snapshots.py --snapshot-update` after a deliberate change.
"""

from __future__ import annotations

import pytest

from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.screens.confirm import ConfirmStop
from dspy_top.viewer.screens.help import HelpScreen
from dspy_top.viewer.screens.inspect import InspectScreen
from tests.helpers.scripted import RUNTIME_DIR, ScriptedCollector, scripted_fleet
from tests.helpers.steady import keys, steady

pytestmark = [pytest.mark.usefixtures("utc"), pytest.mark.slow]  # times on screen in UTC


def make_app(**fleet_options) -> TopApp:
    fleet, _clock = scripted_fleet(**fleet_options)
    # A long delay: the pinned fleet never changes, and no timer fires mid-capture.
    return TopApp(fleet, ScriptedCollector(fleet), delay=3600, watching=str(RUNTIME_DIR))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_main_screen(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=keys())


def test_paused_narrow(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=keys("space", ready=lambda app: app.paused))


def test_nothing_attached(snap_compare):
    assert snap_compare(make_app(empty=True), terminal_size=(80, 24), run_before=keys())


def test_broken_process_and_process_list(snap_compare):
    assert snap_compare(
        make_app(broken=True),
        terminal_size=(120, 40),
        run_before=keys("p", ready=lambda app: isinstance(app.focused, ProcessTable)),
    )


def test_inspect_call(snap_compare):
    async def open_call(pilot):
        await steady(pilot)
        pilot.app.query_one(HistoryTable).focus()
        await pilot.press("up", "enter")  # the call before the newest
        await steady(pilot, lambda app: isinstance(app.screen, InspectScreen) and app.screen.answer is not None)

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=open_call)


def test_help(snap_compare):
    assert snap_compare(
        make_app(),
        terminal_size=(80, 24),
        run_before=keys("question_mark", ready=lambda app: isinstance(app.screen, HelpScreen)),
    )


def test_stop_question_over_the_screen(snap_compare):
    assert snap_compare(
        make_app(processes=1),
        terminal_size=(120, 40),
        run_before=keys("k", ready=lambda app: isinstance(app.screen, ConfirmStop)),
    )


def test_zoomed_history(snap_compare):
    async def zoom(pilot):
        await steady(pilot)
        pilot.app.query_one(HistoryTable).focus()
        await pilot.press("z")
        await steady(pilot, lambda app: app.screen.has_class("-zoomed"))

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=zoom)
