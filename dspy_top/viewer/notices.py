"""What the viewer says in notifications: the collector's notices, budget alerts, and taking stale ones down.

Mixed into `TopApp` (app.py). Every notification is plain, inert text: many quote what a job
sent. Budget alerts (the viewer's own budget at 80% and 100%, and each job's alerts) are said
once each and a few at a time, so a job that sends thousands cannot bury the screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dspy_top.viewer.messages import Notice
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.model import Snapshot

ALERTS_SHOWN = 3  # new budget alerts shown as notifications per refresh; the rest are counted in one more


class Notices:
    """Notifications: inert text, the collector's notices, budget alerts said once."""

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity="information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every notification as plain, inert text (never markup): many quote what a job sent."""
        super().notify(
            inert(message, multiline=True), title=inert(title), severity=severity, timeout=timeout, markup=markup
        )

    def _notice_from_thread(self, text: str) -> None:
        self.post_message(Notice(text))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity="error", timeout=10)

    def say_alerts(self, snapshot: Snapshot) -> None:
        """The viewer's budget at 80% and 100%, and each job's budget alerts: each said once."""
        for level in self.budget_alarm.crossed(snapshot.budget):
            self.notify(
                snapshot.budget.message(level),
                title="dspy-top budget",
                severity="error" if level >= 100 else "warning",
                timeout=15,
            )
        fresh = [alert for job in snapshot.job_budgets for alert in job.alerts if alert.key not in self._alerts_seen]
        self._alerts_seen.update(alert.key for alert in fresh)
        # A few at a time: a job that sends thousands of alerts must not bury the screen in toasts.
        for alert in fresh[:ALERTS_SHOWN]:
            if alert.level == "stop" and alert.scope == "viewer":  # a stop asked for with `k`, not a budget
                self.heard_stop(alert, snapshot)
                continue
            severity = "warning" if alert.level == "80" else "error"
            self.notify(
                alert.message.removeprefix("dspy-top: "), title=f"pid {alert.pid} budget", severity=severity, timeout=15
            )
        if len(fresh) > ALERTS_SHOWN:
            self.notify(
                f"and {len(fresh) - ALERTS_SHOWN:,} more budget alerts (dspy-top -b lists them all)",
                title="budget",
                severity="warning",
                timeout=15,
            )

    def forget_notices(self, pid: int) -> None:
        """Take the "stopping" notifications of `pid` off the screen: once it ended they are stale. (Textual
        has no public way to remove one notification; without it they time out on their own.)"""
        try:
            stale = [
                n
                for n in self._notifications
                if n.title == f"pid {pid} stopping" or n.message.startswith(f"asked pid {pid} to stop")
            ]
            for notification in stale:
                self._unnotify(notification, refresh=False)
            if stale:
                self._refresh_notifications()
        except AttributeError:
            pass
