"""The live viewer: a Textual app that renders `Fleet.snapshot()` on a timer (never per event).

The collector's thread folds messages into the fleet; the app wakes every `delay` seconds,
takes one snapshot under the fleet's lock and hands it to the screen in front (screens/),
which updates its widgets, diffed by key. The app owns the fleet and the collector, the
refresh timer, payload answers, the job, quitting, and which screen is in front; each
screen owns its panes and keys. Threads reach the app only through `post_message`.
Styling lives in app.tcss.

The first frame comes before any collection: `dspy-top` builds the model and the collector
(`connect`) and starts collecting once it is on screen, and what the first frame does not show
(the model, the other screens) is imported after it.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding

from dspy_top.model.budget import BudgetAlarm
from dspy_top.model.calls import HISTORY, CallQuery
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.viewer import format as fmt
from dspy_top.viewer.attach_offers import AttachOffering
from dspy_top.viewer.components.job_log import MAX_LINES
from dspy_top.viewer.job import Job, JobTranscript
from dspy_top.viewer.messages import AttachDone, Notice, OffersChanged, PayloadArrived
from dspy_top.viewer.payload_search import PayloadSearch
from dspy_top.viewer.screens.main import MainScreen
from dspy_top.viewer.screens.view import FleetScreen
from dspy_top.viewer.shown_payloads import KEPT_CHARS, ShownPayloads
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from dspy_top.model import CallSummary, Fleet, ProcessRow, Snapshot
    from dspy_top.pricing import Price
    from dspy_top.sources.base import Source
    from dspy_top.sources.collector import Collector
    from dspy_top.viewer.screens.optimizers import OptimizersScreen


# Screens the first frame does not need are imported when first shown: the first frame comes sooner.
def _optimizers_screen() -> OptimizersScreen:
    from dspy_top.viewer.screens.optimizers import OptimizersScreen

    return OptimizersScreen()


def _is(screen: object, name: str) -> bool:
    """Whether `screen` is of the screen class `name` (or a subclass: a replay's), without importing a module
    the start does not need."""
    return any(cls.__name__ == name for cls in type(screen).__mro__)


DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds between refreshes that `d` steps through (like top's d)
ALERTS_SHOWN = 3  # new budget alerts shown as notifications per refresh; the rest are counted in one more
QUIET_REDRAW = 5.0  # seconds: with no new data, the tables are redrawn this often (rates decay)


class TopApp(App):
    """`dspy-top`: the top-style view of every attached DSPy process."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "dspy-top"
    ENABLE_COMMAND_PALETTE = False
    SCREENS = {"optimizers": _optimizers_screen}  # made on the first `o`, then kept (its sort and cursor)

    # Every other key belongs to a screen (screens/); ctrl+c answers on all of them.
    BINDINGS = [Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True)]

    def __init__(
        self,
        fleet: Fleet | None,
        collector: Collector | None = None,
        *,
        delay: float = 1.0,
        job: Job | None = None,
        watching: str | None = None,
        history_rows: int | None = None,
        start_collector: bool = True,
        notice: str | None = None,
        connect: Callable[[], tuple[Fleet, Collector]] | None = None,
        kept_payloads: int = KEPT_CHARS,
        offer_attach: Path | None = None,
    ) -> None:
        """`fleet` and `collector`, or `connect` to make them once the first frame is on screen. With
        `offer_attach` (a runtime directory) the process list also offers this user's DSPy jobs started
        without dspy-top, and `A` attaches to one (their sockets then come to that directory)."""
        super().__init__()
        self.fleet = fleet
        self.collector = collector
        self._connect = connect
        self.delay = delay
        self.job = job
        self.job_output = JobTranscript(MAX_LINES) if job is not None else None
        self.watching = watching or (collector.where if collector else ".")  # said while nothing is attached
        self._history_rows = history_rows
        self.start_collector = start_collector
        self.start_notice = notice  # said once the screen is up (why the runtime directory is not the usual one)
        # What every screen shows alike: set on one screen, followed by the others.
        self.paused = False
        self.focus_key: str | None = None
        self.call_query = CallQuery("")
        self.log_hidden = False
        self.snapshot: Snapshot | None = None
        self.shown_payloads = ShownPayloads(kept_payloads)
        self._interrupts = 0
        self._version = -1
        self._full_at = 0.0
        self.budget_alarm = BudgetAlarm()
        self._alerts_seen: set[tuple[str, str, str, str]] = set()
        self._stop_target_key: str | None = None
        self._stopping: dict[str, int] = {}  # processes asked to stop (k, or a job's stop alert): key -> pid
        self._stopped: set[int] = set()  # pids whose end after a stop was said
        self._refresh_timer = None
        self.search = PayloadSearch()  # `/` with free words: prompts and responses read for it
        self.offering = AttachOffering(offer_attach) if offer_attach is not None else None
        if collector is not None:
            collector.on_payload = self._payload_from_thread
            collector.on_notice = self._notice_from_thread

    @property
    def history_rows(self) -> int:
        """Every call the fleet holds is in the history pane (a line-API view draws only what is on screen)."""
        if self._history_rows is not None:
            return self._history_rows
        return self.fleet.history.capacity if self.fleet is not None else HISTORY

    def get_default_screen(self) -> MainScreen:
        # The main screen composes itself while the app starts; the app does not wait for it (as a
        # Textual mode would: the first frame came 0.1 s of CPU later). A key pressed before its
        # panes exist is ignored (FleetScreen.check_action).
        return MainScreen()

    @asynccontextmanager
    async def run_test(self, *args, **kwargs) -> AsyncIterator[Pilot]:
        """As Textual's, once the main screen is composed: a test may query its panes at once."""
        async with super().run_test(*args, **kwargs) as pilot:
            while not self.screen_stack[0].is_mounted:
                await pilot.pause(0.01)
            yield pilot

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every notification as plain, inert text (never markup): many quote what a job sent."""
        super().notify(inert(message, multiline=True), title=inert(title), severity=severity, timeout=timeout,
                       markup=markup)

    def on_load(self) -> None:
        """A fleet given up front (tests, `dspy-top run`): its first snapshot, which the first frame shows."""
        if self.fleet is None:
            return
        with self.fleet.lock:
            self._version = self.fleet.version
            self.snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        self._full_at = time.monotonic()

    def on_mount(self) -> None:
        self._follow_job()
        if self.snapshot is not None:
            self.apply(self.snapshot)  # on screen already: the alerts it brings
        # Collecting starts once the first frame is on screen: attaching and folding never delay it.
        self.call_after_refresh(self._start_collecting)
        self._refresh_timer = self.set_interval(self.delay, self.refresh_from_model)
        if self.start_notice:
            self.notify(self.start_notice, severity="warning", timeout=20)

    def _start_collecting(self) -> None:
        if self.fleet is None and self._connect is not None:
            self.fleet, self.collector = self._connect()
            self.collector.on_payload = self._payload_from_thread
            self.collector.on_notice = self._notice_from_thread
        if self.collector is not None and self.start_collector:
            self.collector.start()
        if self.offering is not None:
            self.offering.start(lambda: self.post_message(OffersChanged()))
        self.refresh_now()
        # A quick second look once the collector has attached, then the steady pace.
        self.set_timer(0.25, self.refresh_from_model)

    def on_unmount(self) -> None:
        if self.collector is not None:
            self.collector.stop()
        if self.offering is not None:
            self.offering.stop()

    @property
    def view(self) -> FleetScreen | None:
        """The live screen in front, or under the modal or inspect screen in front (it keeps refreshing)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, FleetScreen):
                return screen if screen.is_mounted else None
        return None

    # --- the refresh loop -------------------------------------------------------------

    def refresh_from_model(self) -> None:
        if not self.is_running or self.fleet is None:
            return  # shutting down (a timer that fired as the widgets went away), or not collecting yet
        self._follow_job()
        self.keep_shown_payloads()  # what the screen shows (paused or not) opens after its process ended
        if self.paused and self.snapshot is not None:
            return
        with self.fleet.lock:
            version = self.fleet.version
            snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        quiet = version == self._version and time.monotonic() - self._full_at < QUIET_REDRAW
        view = self.view
        if quiet and self.snapshot is not None:
            # Nothing arrived: only the clock moved. Tables wait (rates decay on the next full redraw).
            self.snapshot = snapshot
            if view is not None:
                view.show_clock(snapshot)
            return
        self._version = version
        self._full_at = time.monotonic()
        self.apply(snapshot)

    def apply(self, snapshot: Snapshot) -> None:
        """Hand `snapshot` to the screen in front, and say the budget alerts it brings."""
        self._search_step()
        self.snapshot = snapshot
        view = self.view
        if view is not None and view.snapshot is not snapshot:
            view.show(snapshot)
        self._money_alerts(snapshot)
        self._stops_done(snapshot)
        self.update_stop_binding()

    def refresh_now(self) -> None:
        if self.fleet is None:
            return
        with self.fleet.lock:
            snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        self.apply(snapshot)

    def _money_alerts(self, snapshot: Snapshot) -> None:
        """The viewer's budget at 80% and 100%, and each job's budget alerts: each said once."""
        for level in self.budget_alarm.crossed(snapshot.budget):
            self.notify(snapshot.budget.message(level), title="dspy-top budget",
                        severity="error" if level >= 100 else "warning", timeout=15)
        fresh = [alert for job in snapshot.job_budgets for alert in job.alerts if alert.key not in self._alerts_seen]
        self._alerts_seen.update(alert.key for alert in fresh)
        # A few at a time: a job that sends thousands of alerts must not bury the screen in toasts.
        for alert in fresh[:ALERTS_SHOWN]:
            if alert.level == "stop" and alert.scope == "viewer":  # a stop asked for with `k`, not a budget
                rows = [p for p in snapshot.processes if p.pid == alert.pid]
                live = [p for p in rows if p.state in ("running", "connecting")]
                if live:
                    self._stopping.update((p.key, p.pid) for p in live)
                    self.notify(f"{alert.message.removeprefix('dspy-top: ')}: its next LM call ends the run",
                                title=f"pid {alert.pid} stopping", severity="warning", timeout=10)
                elif alert.pid not in self._stopped:  # its word on the stop came with (or after) its end
                    self._said_stopped(alert.pid, rows[0].status if rows else "")
                continue
            severity = "warning" if alert.level == "80" else "error"
            self.notify(alert.message.removeprefix("dspy-top: "), title=f"pid {alert.pid} budget",
                        severity=severity, timeout=15)
        if len(fresh) > ALERTS_SHOWN:
            self.notify(f"and {len(fresh) - ALERTS_SHOWN:,} more budget alerts (dspy-top -b lists them all)",
                        title="budget", severity="warning", timeout=15)

    # --- the job (dspy-top run) -----------------------------------------------------------

    def _follow_job(self) -> None:
        job, transcript = self.job, self.job_output
        if job is None or transcript is None:
            return
        ended = transcript.exit_code is not None
        try:
            transcript.add(job.read_new_output())
        except Exception as exc:  # the log file went away: say so once
            if not ended:
                transcript.add(f"\n[dspy-top: cannot read the job's output: {exc}]\n")
        code = job.returncode()
        if code is not None and not ended:
            transcript.exit_code = code
        if code is not None and self.fleet is not None:
            with self.fleet.lock:
                self.fleet.exit_status(job.pid, code)  # the job's process row says how it exited
        view = self.view
        if view is not None:
            view.sync_job()

    def job_note(self) -> str | None:
        """The job's state in the status line, as the process list says it: its exit message ends it there."""
        if self.job is None:
            return None
        code = self.job.returncode()
        if code is not None:
            return f"job exited with code {code} · q quits"
        snapshot = self.snapshot
        row = next((p for p in snapshot.processes if p.pid == self.job.pid), None) if snapshot else None
        if row is not None and row.state == "ended":
            return f"job pid {self.job.pid} ended its run (final numbers received) · exiting"
        return f"job pid {self.job.pid} running · ctrl+c interrupts it"

    def action_interrupt(self) -> None:
        """ctrl+c: with a running job, the first one interrupts the job, the second quits."""
        job = self.job
        if job is None or job.returncode() is not None or self._interrupts >= 1:
            self.exit()
            return
        self._interrupts += 1
        try:
            job.interrupt()
        except Exception as exc:
            self.notify(f"cannot interrupt the job: {exc}", severity="error")
            return
        self.notify("sent SIGINT to the job · ctrl+c again quits", timeout=4)

    # --- payloads ---------------------------------------------------------------------

    def _payload_from_thread(self, answer: PayloadAnswer) -> None:
        self.post_message(PayloadArrived(answer))

    def _notice_from_thread(self, text: str) -> None:
        self.post_message(Notice(text))

    def fetch_payload(self, call: CallSummary) -> None:
        cached = self.shown_payloads.get(call.key)
        if cached is not None:
            self.call_after_refresh(self._forward_answer, cached)
            return
        if self.collector is None:
            self.call_after_refresh(self._forward_answer, PayloadAnswer(
                call.process, call.id, None, "this viewer is not connected to the process"))
            return
        self.collector.request_payload(call.process, call.id)

    def forget_payload(self, call: CallSummary) -> None:
        self.shown_payloads.forget(call.key)

    def keep_shown_payloads(self) -> None:
        """Ask the processes for the payloads of the calls on screen, to keep (shown_payloads.py)."""
        view = self.view
        if self.collector is None or self.fleet is None or view is None:
            return
        shown = view.shown_calls()
        if not shown:
            return
        with self.fleet.lock:
            kept_by = self.fleet.payloads_kept()
        for process, call_id in self.shown_payloads.wanted(shown, kept_by):
            self.collector.request_payload(process, call_id)

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity="error", timeout=10)

    def _search_step(self) -> None:
        if self.collector is not None and (self.call_query.words or self.search.active):
            self.search.step(self.fleet, self.call_query, self.focus_key, self.collector.request_payload)

    def on_payload_arrived(self, message: PayloadArrived) -> None:
        answer = message.answer
        if self.fleet is not None:
            with self.fleet.lock:  # its text joins what `/` searches, whoever asked for it
                self.fleet.payload_read(answer, searching=bool(self.call_query.words))
        if self.search.answered((answer.process, answer.call_id)) and self.call_query.words:
            self._search_step()
        self.shown_payloads.add(answer)  # kept, whoever asked: it opens after its process ended
        self._forward_answer(answer)

    def _forward_answer(self, answer: PayloadAnswer) -> None:
        # An answer can come as the app shuts down (a shown call's, asked for a moment before): no screen then.
        if self.screen_stack and _is(self.screen, "InspectScreen"):
            self.screen.show_answer(answer)

    def module_chains(self) -> dict[str, tuple[str, ...]]:
        """Each module path's chain of classes (`RAG > ChainOfThought > Predict`), for the inspect screen."""
        if self.fleet is None:
            return {}
        with self.fleet.lock:
            return self.fleet.module_chains()

    # --- what every screen shows alike ------------------------------------------------------

    def set_query(self, text: str) -> None:
        """The history (and module) filter, on every screen."""
        self.call_query = CallQuery(text)
        self.refresh_now()

    def filter_history_to(self, pid: int, scope_id: str) -> None:
        """Enter on a trial or optimizer: the history shows its calls (enter again shows all)."""
        text = f"pid:{pid} scope:{scope_id}"
        self.set_query("" if self.call_query.text == text else text)

    def set_focus_process(self, key: str | None) -> None:
        self.focus_key = key
        self.refresh_now()

    def action_focus_all(self) -> None:
        self.set_focus_process(None)

    def ask_dismiss(self, key: str) -> None:
        """`x`: forget an ended or broken process once the user said yes (its numbers leave the totals)."""
        snapshot = self.snapshot
        row = next((p for p in snapshot.processes if p.key == key), None) if snapshot else None
        if row is None:
            return
        if row.state in ("running", "connecting"):
            self.notify("only an ended or broken process can be dismissed", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss_process(key)

        from dspy_top.viewer.screens.confirm import ConfirmDismiss

        script = fmt.command(row.argv) if row.argv else row.command
        self.push_screen(ConfirmDismiss(row.pid, script, row.totals.calls), answered)

    def dismiss_process(self, key: str) -> bool:
        """Forget an ended or broken process; False when it is live."""
        if self.collector is not None:
            dismissed = self.collector.dismiss(key)
        elif self.fleet is None:
            return False
        else:
            with self.fleet.lock:
                dismissed = self.fleet.dismiss(key)
        if dismissed:
            if self.focus_key == key:
                self.focus_key = None
            self.refresh_now()
        return dismissed

    def action_delay(self) -> None:
        """`d`: the next refresh interval of DELAYS (as top's d sets it)."""
        later = [d for d in DELAYS if d > self.delay + 1e-9]
        self.delay = later[0] if later else DELAYS[0]
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
        self._refresh_timer = self.set_interval(self.delay, self.refresh_from_model)
        self.notify(f"refreshing every {self.delay:g} s (d changes it)", timeout=3)

    def action_pause(self) -> None:
        self.paused = not self.paused
        view = self.view
        if view is not None:
            view.show_paused()
        if not self.paused:
            self.refresh_now()

    # --- switching screens -------------------------------------------------------------------

    def action_optimizers(self) -> None:
        """`o`: the optimizer screen, or back from it."""
        if _is(self.screen, "OptimizersScreen"):
            self.pop_screen()
        else:
            self.push_screen("optimizers")

    def show_main(self) -> MainScreen:
        """Back to the main screen (from the optimizer screen); the main screen."""
        if _is(self.screen, "OptimizersScreen"):
            self.pop_screen()
        main = self.screen_stack[0]
        assert isinstance(main, MainScreen)
        return main

    def action_help(self) -> None:
        from dspy_top.viewer.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # --- attaching to a job started without dspy-top (A) ------------------------------------

    def offers(self) -> tuple:
        """The process list's offered rows (attach_offers.py): never part of the snapshot or its totals."""
        return self.offering.offers(self.snapshot) if self.offering is not None else ()

    def on_offers_changed(self, message: OffersChanged) -> None:
        view = self.view
        if view is not None:
            view.show_offers()

    def ask_attach(self, key: str | None) -> None:
        """`A` on the process list's row `key`: attach to the offered process there after a y/n, or say why not."""
        offering = self.offering
        if offering is None:
            self.notify("this viewer offers no process to attach to (plain `dspy-top` does); use "
                        "`dspy-top attach PID`", severity="warning", timeout=6)
            return
        offer = next((o for o in self.offers() if o.key == key), None)
        candidate = offering.candidate(key) if offer is not None and offer.state == "unattached" else None
        if candidate is None:
            row = next((p for p in self.snapshot.processes if p.key == key), None) if self.snapshot else None
            if offer is not None:
                self.notify(f"pid {offer.pid}: {offer.state} already", timeout=4)
            elif row is not None:
                self.notify(f"pid {row.pid} is instrumented already: A attaches a process the list offers "
                            "(state unattached)", severity="warning", timeout=5)
            elif not self.offers():
                self.notify("no DSPy job started without dspy-top is running (dspy-top looks every 3 s)",
                            severity="warning", timeout=5)
            else:
                self.notify("A attaches the process under the process list's cursor: p, then ↑/↓ to one that "
                            "says unattached", severity="warning", timeout=6)
            return

        def answered(yes: bool | None) -> None:
            if yes and self.offering is not None:
                self.offering.attach(candidate, lambda pid, line, ok: self.post_message(AttachDone(pid, line, ok)))
                view = self.view
                if view is not None:
                    view.show_offers()

        from dspy_top.viewer.screens.confirm import ConfirmAttach

        self.push_screen(ConfirmAttach(candidate.pid, candidate.command, candidate.evidence), answered)

    def on_attach_done(self, message: AttachDone) -> None:
        if self.offering is None:
            return
        self.offering.finished(message.pid, message.ok)
        if message.ok:
            self.notify(message.line, title=f"pid {message.pid} attached", timeout=10)
        else:
            self.notify(message.line, title=f"pid {message.pid} not attached", severity="error", timeout=15)
        view = self.view
        if view is not None:
            view.show_offers()

    # --- stopping a job (k) ----------------------------------------------------------------

    def stop_target(self) -> ProcessRow | None:
        """The running process `k` would stop: the focused one, the one under the process list's cursor,
        or else the only one running (`dspy-top run`'s job)."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        key = self.focus_key
        if key is None:
            screen = self.screen
            key = screen.process_at_cursor() if isinstance(screen, FleetScreen) else None
        if key is None:
            running = [p for p in snapshot.processes if p.state == "running"]
            key = running[0].key if len(running) == 1 else None
        row = next((p for p in snapshot.processes if p.key == key), None)
        return row if row is not None and row.state == "running" else None

    def update_stop_binding(self) -> None:
        """Show `k` in the footer exactly while there is something to stop."""
        if not self.screen_stack:
            return  # shutting down: a late table event
        if not isinstance(self.screen, FleetScreen):
            # A modal is up; the footer is redrawn from check_action when it closes: look again then.
            self._stop_target_key = "(another screen)"
            return
        target = self.stop_target()
        key = target.key if target is not None else None
        if key != self._stop_target_key:
            self._stop_target_key = key
            self.refresh_bindings()

    def on_descendant_focus(self, event) -> None:
        self.update_stop_binding()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_job":
            return self.stop_target() is not None
        return True

    def action_stop_job(self) -> None:
        target = self.stop_target()
        if target is None:
            self.notify("several processes run: choose one in the process list first (p)", severity="warning")
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self.request_stop(target)

        from dspy_top.viewer.screens.confirm import ConfirmStop

        self.push_screen(ConfirmStop(target.pid, fmt.command(target.argv) if target.argv else target.command),
                         answered)

    def request_stop(self, target: ProcessRow) -> None:
        if self.collector is None or not hasattr(self.collector, "request_stop"):
            self.notify("this viewer is not connected to the process", severity="error")
            return
        self.collector.request_stop(target.key, f"stop requested from the viewer (dspy-top pid {os.getpid()})")
        self._stopping[target.key] = target.pid
        self.notify(f"asked pid {target.pid} to stop: its next LM call ends the run", timeout=8)

    def _stops_done(self, snapshot: Snapshot) -> None:
        """A process asked to stop has ended: what said it was stopping goes, and its end is said instead."""
        for key, pid in list(self._stopping.items()):
            row = next((p for p in snapshot.processes if p.key == key), None)
            if row is not None and row.state in ("running", "connecting"):
                continue
            del self._stopping[key]
            self._said_stopped(pid, row.status if row is not None else "")

    def _said_stopped(self, pid: int, status: str) -> None:
        self._stopped.add(pid)
        self._forget_notices(pid)
        self.notify(f"pid {pid} stopped as asked: {status or 'ended'}", title=f"pid {pid} stopped", timeout=8)

    def _forget_notices(self, pid: int) -> None:
        """Take the "stopping" notifications of `pid` off the screen: once it ended they are stale. (Textual
        has no public way to remove one notification; without it they time out on their own.)"""
        try:
            stale = [n for n in self._notifications if n.title == f"pid {pid} stopping"
                     or n.message.startswith(f"asked pid {pid} to stop")]
            for notification in stale:
                self._unnotify(notification, refresh=False)
            if stale:
                self._refresh_notifications()
        except AttributeError:
            pass


def run_viewer(
    sources: Sequence[Source] | Callable[[], Sequence[Source]],
    *,
    watching: str | None = None,
    delay: float = 1.0,
    clock: Callable[[], float] = time.time,
    prices: dict[str, Price] | None = None,
    budget_usd: float | None = None,
    notice: str | None = None,
    history: int = HISTORY,
    offer_attach: Path | None = None,
) -> int:
    """Run the interactive viewer on `sources` until the user quits; the return value is the exit status.

    `sources` may be a function that makes them: it is called once the first frame is on screen
    (then `watching` says what they watch, for the screen with nothing attached). With `offer_attach`, the
    process list offers the user's DSPy jobs started without dspy-top, and `A` attaches to one."""

    def connect() -> tuple[Fleet, Collector]:  # once the first frame is on screen
        from dspy_top.model import Fleet
        from dspy_top.sources.collector import Collector

        fleet = Fleet(clock, prices=prices, budget_usd=budget_usd, history_capacity=history)
        return fleet, Collector(fleet, sources() if callable(sources) else sources)

    if watching is None and not callable(sources):
        watching = ", ".join(source.where for source in sources)
    app = TopApp(None, delay=delay, notice=notice, watching=watching, connect=connect,
                 offer_attach=offer_attach)
    app.run()
    return 0
