"""The replay's screen in the real Textual app (Pilot and SVG snapshots): its keys, its bar, and every
live key still working, over a recording made by the real Recorder and writer on a fake clock.
"""

from __future__ import annotations

import sys

import pytest

from dspy_top.recording import Recording
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.replay.bar import ReplayBar
from dspy_top.viewer.replay.help import ReplayHelpScreen
from dspy_top.viewer.replay.screens import ReplayMainScreen, ReplayOptimizersScreen
from dspy_top.viewer.screens.confirm import ConfirmStop
from dspy_top.viewer.screens.inspect import InspectScreen
from tests.helpers.replay_app import bar, replay_app, run, settled
from tests.helpers.replaying import stats_at
from tests.helpers.screen import screen_text
from tests.helpers.served_job import recorded
from tests.helpers.waiting import pilot_wait as until

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("utc"), pytest.mark.slow]  # times on screen in UTC


@pytest.fixture
def recording(tmp_path, small_checkpoints):
    """A job's recording: 1,200 calls, then an optimizer's three trials (scored 40, 50, 60), on a fake clock."""
    job = recorded(tmp_path)
    with Recording(job.writer.path) as reader:
        job.messages = list(reader.messages())
    return job


def test_it_opens_on_the_whole_run_and_says_what_it_replays(recording):
    app = replay_app(recording.writer.path)

    async def script(pilot):
        assert isinstance(app.screen, ReplayMainScreen)
        assert "END " in bar(app) and "100%" in bar(app)
        assert "complete recording of optimize.py --trials 3 (pid 4242," in bar(app)
        assert app.snapshot.totals.calls == 1320
        assert app.query_one(ReplayBar).has_class("-end")

    run(app, script)


@pytest.mark.slow
def test_keys_seek_by_share_time_trial_and_to_the_end(recording):
    app = replay_app(recording.writer.path)
    timeline = app.replay.timeline

    async def script(pilot):
        await pilot.press("0")
        await settled(pilot)
        assert app.snapshot.totals.calls == 0 and " 0%" in bar(app)
        await pilot.press("5")
        await settled(pilot)
        middle = timeline.start + 0.5 * (timeline.end - timeline.start)
        assert app.snapshot.totals.calls == stats_at(recording.messages, middle)["calls"] > 0
        assert "50%" in bar(app) and "PAUSED" in bar(app)
        await pilot.press("g", *"0:03", "enter")
        await settled(pilot)
        assert app.snapshot.totals.calls == stats_at(recording.messages, timeline.start + 3)["calls"]
        assert "0:03 / 0:13" in bar(app)
        await pilot.press("g", *"trial 2", "enter")
        await settled(pilot)
        scopes = {s.id: (s.state, s.score) for s in app.snapshot.scopes}
        assert scopes["eval-2"] == ("done", 50.0) and scopes.get("eval-3", ("running",))[0] == "running"
        await pilot.press("g", *"soon", "enter")
        await until(
            pilot, lambda: any("cannot tell where 'soon' is" in n.message for n in app._notifications), "the warning"
        )
        await pilot.press("e")
        await settled(pilot)
        assert app.snapshot.totals.calls == 1320 and "END " in bar(app)

    run(app, script)


def test_play_pause_and_speed(recording):
    app = replay_app(recording.writer.path, at=0.0)

    async def script(pilot):
        assert "PAUSED" in bar(app) and "1×" in bar(app)
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert app.replay.clock.playback().speed == 5.0
        await pilot.press("left_square_bracket")
        assert app.replay.clock.playback().speed == 2.0
        await pilot.press("space")
        await until(pilot, lambda: "PLAYING 2×" in bar(app), "the bar playing at 2x")
        assert app.query_one(ReplayBar).has_class("-playing")
        await until(pilot, lambda: app.replay.clock.position() > app.replay.timeline.start + 1, "the clock moving")
        await pilot.press("space")
        stopped = app.replay.clock.position()
        await pilot.pause(0.3)
        assert app.replay.clock.position() == stopped and "PAUSED" in bar(app)
        for _ in range(6):
            await pilot.press("right_square_bracket")
        await pilot.press("space")  # 100x: 13 s of recording play in a fraction of a second, then it stops
        await until(pilot, lambda: "END " in bar(app), "the end")
        await until(pilot, lambda: app.snapshot.totals.calls == 1320, "the final numbers", timeout=10)

    run(app, script, size=(120, 40))
    # The refresh timer of this app is an hour: the end's numbers came from the seek's own refresh.


def test_steps_show_one_call_more_or_less(recording):
    app = replay_app(recording.writer.path, at=0.5)

    async def script(pilot):
        held = len(app.fleet.history)
        await pilot.press("full_stop")
        await settled(pilot)
        assert len(app.fleet.history) == held + 1
        assert app.snapshot.calls[-1].id == max(c.id for c in app.snapshot.calls)
        await pilot.press("comma", "comma")
        await settled(pilot)
        assert len(app.fleet.history) == held - 1

    run(app, script)


@pytest.mark.slow
def test_the_live_keys_still_work_on_a_replay(recording):
    app = replay_app(recording.writer.path)

    async def script(pilot):
        await pilot.press("slash", *"module:plan", "enter")
        await until(
            pilot,
            lambda: app.snapshot.calls and all(c.path == "Solver.plan" for c in app.snapshot.calls),
            "the filtered history",
        )
        await pilot.press("slash", "escape")
        await until(pilot, lambda: any(c.path != "Solver.plan" for c in app.snapshot.calls), "the whole history")
        await pilot.press("o")
        await until(
            pilot,
            lambda: isinstance(app.screen, ReplayOptimizersScreen) and app.screen.query(ReplayBar),
            "the optimizer screen with its bar",
        )
        assert "BootstrapFewShotWithRandomSearch" in screen_text(app) and "END " in screen_text(app)
        await pilot.press("5")  # the replay's keys work there too
        await settled(pilot)
        assert "50%" in app.screen.query_one(ReplayBar)._drawn
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, ReplayMainScreen), "back on the main screen")
        assert "50%" in bar(app)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, ReplayHelpScreen), "the help")
        text = screen_text(app)
        assert "play / pause the replay" in text and "freeze the screen" not in text
        await pilot.press("escape")
        assert "Stop job" not in screen_text(app)
        await pilot.press("k")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmStop)

    run(app, script)


def test_a_calls_payload_opens_from_the_file(recording):
    app = replay_app(recording.writer.path)

    async def script(pilot):
        table = app.query_one(HistoryTable)
        table.focus()
        table.set_follow(False)
        table.move_cursor(row=table.row_count - 3)
        call = table.call_at_cursor()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, InspectScreen), "the inspect screen")
        question = recording.payloads[call.id]["messages"][1]["content"].splitlines()[-1]  # "What is N + 7?"
        await until(pilot, lambda: question in screen_text(app), "the payload")
        assert "is gone" not in screen_text(app) and "[[ ## answer ## ]]" in screen_text(app)

    run(app, script)


# --- snapshots -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_replay_screen(snap_compare, recording, size):
    assert snap_compare(replay_app(recording.writer.path, at=0.5), terminal_size=size, run_before=_bar_shown)


async def _bar_shown(pilot) -> None:
    await until(pilot, lambda: pilot.app.query(ReplayBar) and pilot.app.query_one(ReplayBar)._drawn, "the bar")
    await settled(pilot)
    await until(pilot, lambda: "SEEKING" not in bar(pilot.app), "the bar's state after the seek")


# --- a real terminal ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_dspy_top_replay_in_tmux_opens_seeks_and_exits_cleanly(recording, tmp_path):
    from tests.helpers.jobs import REPO
    from tests.jobs.terminal import SKIP_REASON, Terminal

    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    tmux = Terminal(
        [sys.executable, "-m", "dspy_top", "replay", str(recording.writer.path)],
        tmp_path / "status",
        cwd=REPO,
        env={"TZ": "UTC"},
        width=120,
        height=40,
    )
    try:
        screen = tmux.wait_for(lambda s: "1,320 calls" in s and "END " in s, "the recording's end state")
        assert "complete recording of optimize.py --trials 3" in screen
        tmux.keys("5")
        tmux.wait_for(lambda s: "50%" in s and "PAUSED" in s and "1,320 calls" not in s, "the middle")
        tmux.keys("e")
        tmux.wait_for(lambda s: "1,320 calls" in s and "100%" in s, "the end again")
        tmux.keys("q")
        assert tmux.exit_status(timeout=15) == 0
        screen = tmux.wait_for(lambda s: "recording of" not in s, "the shell after the viewer")
        assert "Traceback" not in screen
    finally:
        tmux.close()
