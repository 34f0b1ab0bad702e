"""What the process list offers under `A`: the user's DSPy jobs started without dspy-top, and the attaches under way.

Kept apart from the fleet: an offered process sends nothing and counts in no total, header
figure, model or module. Its row says so (`unattached`, `attaching…`); once attached, the
local source finds its socket and the process is a fleet's process like any other, and its
offer goes. The poller (`dspy_top.attach.offers`) and the attach itself run on threads of
their own, started after the first frame, and tell the app through `post_message`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dspy_top.attach.discover import Candidate
    from dspy_top.attach.offers import AttachOffers
    from dspy_top.model import Snapshot

KEY_PREFIX = "attach:"  # an offer's row key in the process list (a socket's path never starts so)
SOCKET_WAIT = 15.0  # seconds an attached process's row waits for the local source to list it
LIVE = ("running", "connecting")


@dataclass(frozen=True)
class Offer:
    """One row the process list offers: a process `A` can attach to, or one being attached."""

    pid: int
    command: str
    evidence: str  # why it looks like a DSPy job: "imports dspy (job.py)"
    state: str  # "unattached", "attaching…" or "attached" (its socket not listed yet)

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{self.pid}"

    @property
    def script(self) -> str:
        """The command as an instrumented process's row shows it (its `sys.argv`): `job.py --n 40`, not
        `/usr/bin/python3 -u /home/me/job.py --n 40`."""
        words = self.command.split()
        if words and "python" in words[0].rsplit("/", 1)[-1]:
            words = words[1:]
            while words and words[0].startswith("-") and words[0] not in ("-m", "-c"):
                words = words[1:]
        return " ".join([words[0].rsplit("/", 1)[-1] or words[0], *words[1:]]) if words else self.command

    @property
    def note(self) -> str:
        if self.state == "unattached":
            return f"{self.evidence} · A attaches"
        if self.state == "attached":
            return f"{self.evidence} · attached, its socket comes next"
        return f"{self.evidence} · attaching (dspy-top attach {self.pid})"


class AttachOffering:
    """The offers shown now and the attaches under way, for one viewer watching `runtime_dir`."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.poller: AttachOffers | None = None
        self._attaching: dict[int, Candidate] = {}
        self._attached: dict[int, tuple[Candidate, float]] = {}  # until its socket is listed, or a deadline

    def start(self, on_change: Callable[[], None]) -> None:
        """Start looking (imports the attach package: after the first frame)."""
        from dspy_top.attach.offers import AttachOffers

        self.poller = AttachOffers(self.runtime_dir, on_change=on_change)
        self.poller.start()

    def stop(self) -> None:
        if self.poller is not None:
            self.poller.stop()

    def offers(self, snapshot: Snapshot | None) -> tuple[Offer, ...]:
        """The rows to show below the fleet's processes, by pid; none for a pid the fleet shows live."""
        live = {p.pid for p in snapshot.processes if p.state in LIVE} if snapshot is not None else set()
        now = time.monotonic()
        for pid, (_, deadline) in list(self._attached.items()):
            if pid in live or now > deadline:
                del self._attached[pid]
        rows: dict[int, Offer] = {}
        for candidate in self.poller.latest() if self.poller is not None else ():
            rows[candidate.pid] = Offer(candidate.pid, candidate.command, candidate.evidence, "unattached")
        for pid, (candidate, _) in self._attached.items():
            rows[pid] = Offer(pid, candidate.command, candidate.evidence, "attached")
        for pid, candidate in self._attaching.items():
            rows[pid] = Offer(pid, candidate.command, candidate.evidence, "attaching…")
        return tuple(rows[pid] for pid in sorted(rows) if pid not in live)

    def candidate(self, key: str | None) -> Candidate | None:
        """The offered process a row key names, if it is offered now."""
        if key is None or not key.startswith(KEY_PREFIX) or self.poller is None:
            return None
        pid = int(key.removeprefix(KEY_PREFIX))
        return next((c for c in self.poller.latest() if c.pid == pid), None)

    def attaching(self, pid: int) -> bool:
        return pid in self._attaching

    def attach(self, candidate: Candidate, done: Callable[[int, str, bool], None]) -> None:
        """Attach to `candidate` on a thread of its own (gdb takes a second or more); `done(pid, line, ok)`
        is called from that thread with the one line `dspy-top attach` would print."""
        self._attaching[candidate.pid] = candidate
        threading.Thread(
            target=self._attach, args=(candidate, done), name=f"dspy-top-attach-{candidate.pid}", daemon=True
        ).start()

    def finished(self, pid: int, ok: bool) -> None:
        """On the app's thread, once `done` was told: an attached process waits for its socket; a refused one
        is offered again."""
        candidate = self._attaching.pop(pid, None)
        if ok and candidate is not None:
            self._attached[pid] = (candidate, time.monotonic() + SOCKET_WAIT)
        if self.poller is not None:
            self.poller.scan_soon()

    def _attach(self, candidate: Candidate, done: Callable[[int, str, bool], None]) -> None:
        from dspy_top.attach.describe import describe_attached
        from dspy_top.attach.refusals import AttachRefused
        from dspy_top.attach.session import attach

        try:
            outcome = attach(candidate.pid, runtime_dir=self.runtime_dir)
        except AttachRefused as refusal:
            done(candidate.pid, str(refusal), False)
            return
        except Exception as exc:  # the viewer's own fault: said, never raised into the app
            done(candidate.pid, f"pid {candidate.pid}: the attach failed: {type(exc).__name__}: {exc}", False)
            return
        if outcome.status == "already":
            done(candidate.pid, f"pid {candidate.pid} is already instrumented", True)
        else:
            done(candidate.pid, describe_attached(outcome), True)
