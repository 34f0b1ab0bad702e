"""What the user does to a process from the viewer: stop it (`k`), dismiss it (`x`), attach to it (`A`).

Mixed into `TopApp` (app.py). Each asks a y/n first (screens/confirm.py, imported when first
asked: the first frame does not need it); the work is then the collector's (a stop request to
the job, forgetting an ended process) or the attach worker's (attach_offers.py), which tells
the app how it went through `post_message`. `k` shows in the footer exactly while there is
something to stop, and a stopped process's end is said once, in place of its "stopping" notice.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dspy_top.viewer import format as fmt
from dspy_top.viewer.messages import AttachDone, OffersChanged
from dspy_top.viewer.screens.view import FleetScreen

if TYPE_CHECKING:
    from dspy_top.model import ProcessRow, Snapshot
    from dspy_top.model.budget import BudgetAlert


class ProcessActions:
    """`k`, `x` and `A`: the confirmations, and what follows a yes."""

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

        self.push_screen(ConfirmStop(target.pid, fmt.command(target.argv) if target.argv else target.command), answered)

    def request_stop(self, target: ProcessRow) -> None:
        if self.collector is None or not hasattr(self.collector, "request_stop"):
            self.notify("this viewer is not connected to the process", severity="error")
            return
        self.collector.request_stop(target.key, f"stop requested from the viewer (dspy-top pid {os.getpid()})")
        self._stopping[target.key] = target.pid
        self.notify(f"asked pid {target.pid} to stop: its next LM call ends the run", timeout=8)

    def heard_stop(self, alert: BudgetAlert, snapshot: Snapshot) -> None:
        """The job's word on a stop asked for with `k` (an alert of level "stop"): stopping, or stopped."""
        rows = [p for p in snapshot.processes if p.pid == alert.pid]
        live = [p for p in rows if p.state in ("running", "connecting")]
        if live:
            self._stopping.update((p.key, p.pid) for p in live)
            self.notify(
                f"{alert.message.removeprefix('dspy-top: ')}: its next LM call ends the run",
                title=f"pid {alert.pid} stopping",
                severity="warning",
                timeout=10,
            )
        elif alert.pid not in self._stopped:  # its word on the stop came with (or after) its end
            self._said_stopped(alert.pid, rows[0].status if rows else "")

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
        self.forget_notices(pid)
        self.notify(f"pid {pid} stopped as asked: {status or 'ended'}", title=f"pid {pid} stopped", timeout=8)

    # --- dismissing an ended process (x) ------------------------------------------------------

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
            self.notify(
                "this viewer offers no process to attach to (plain `dspy-top` does); use `dspy-top attach PID`",
                severity="warning",
                timeout=6,
            )
            return
        offer = next((o for o in self.offers() if o.key == key), None)
        candidate = offering.candidate(key) if offer is not None and offer.state == "unattached" else None
        if candidate is None:
            row = next((p for p in self.snapshot.processes if p.key == key), None) if self.snapshot else None
            if offer is not None:
                self.notify(f"pid {offer.pid}: {offer.state} already", timeout=4)
            elif row is not None:
                self.notify(
                    f"pid {row.pid} is instrumented already: A attaches a process the list offers (state unattached)",
                    severity="warning",
                    timeout=5,
                )
            elif not self.offers():
                self.notify(
                    "no DSPy job started without dspy-top is running (dspy-top looks every 3 s)",
                    severity="warning",
                    timeout=5,
                )
            else:
                self.notify(
                    "A attaches the process under the process list's cursor: p, then ↑/↓ to one that says unattached",
                    severity="warning",
                    timeout=6,
                )
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
