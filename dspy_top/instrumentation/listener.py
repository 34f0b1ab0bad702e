"""The job's listening socket: created private, accepting viewers in bursts, pausing while descriptors are short.

Only this user's viewers may connect (the socket file is 0600 from the start, and the peer's
credentials are checked); a viewer is refused with a reason when the job has too many or is
close to its limit of open files. Running out of descriptors pauses accepting (doubling up to
a limit) instead of spinning on a listener that stays readable.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# Connections waiting to be accepted: a burst of viewers (a script starting many) must
# not find the queue full. The kernel caps it (net.core.somaxconn).
LISTEN_BACKLOG = max(128, socket.SOMAXCONN)
ACCEPT_BURST = 64  # connections taken per wake-up
# A viewer is refused when its descriptor would leave the job fewer than this many free.
FD_RESERVE = 32
# Out of descriptors: stop accepting for a while (doubling up to the last) instead of spinning.
ACCEPT_PAUSE = (0.05, 2.0)


class Listener:
    """The bound socket, registered on the server's selector (with `None` as its data) while accepting."""

    def __init__(self, path: Path, selector: selectors.BaseSelector, count_error: Callable[[], None]) -> None:
        if path.exists() or path.is_symlink():
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Created 0600 from the start: no window in which another user could connect.
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        self.sock: socket.socket | None = sock
        self.selector = selector
        self.count_error = count_error
        self.listening = False
        self.paused_until = 0.0
        self.pause = ACCEPT_PAUSE[0]
        self.listen(True)

    def listen(self, on: bool) -> None:
        try:
            if on:
                self.selector.register(self.sock, selectors.EVENT_READ, None)
            else:
                self.selector.unregister(self.sock)
            self.listening = on
        except (KeyError, ValueError, OSError):
            pass

    def resume_if_due(self) -> None:
        """Accept again once a pause for want of descriptors is over."""
        if not self.listening and time.monotonic() >= self.paused_until:
            self.listen(True)

    def accept(self) -> Iterator[socket.socket]:
        """The connections waiting, up to a burst, each yielded as accepted (the caller admits it
        before the next is taken)."""
        for _ in range(ACCEPT_BURST):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The connection stays queued and the listener stays readable: polling it
                    # again at once would spin. Leave it until descriptors may be free again.
                    self.listen(False)
                    self.paused_until = time.monotonic() + self.pause
                    self.pause = min(2 * self.pause, ACCEPT_PAUSE[1])
                else:
                    self.count_error()
                return
            self.pause = ACCEPT_PAUSE[0]
            yield sock

    def close(self) -> None:
        if self.sock is not None:
            quiet_close(self.sock)
        self.sock = None


def refusal(sock: socket.socket, attached: int, max_viewers: int) -> str | None:
    """Why a new viewer cannot be taken (told to it before closing), or None."""
    if attached >= max_viewers:
        return f"too many viewers: {attached} are attached to this process (DSPY_TOP_MAX_VIEWERS={max_viewers})"
    if sock.fileno() >= open_file_limit() - FD_RESERVE:
        return "this process is close to its limit of open files; try again later"
    return None


def open_file_limit() -> int:
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 1 << 30
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def same_user(sock: socket.socket) -> bool:
    """Peer credentials: only this user's viewers may attach."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        return True  # the socket file's 0600 mode already limits who can connect
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return False
    return uid == os.getuid()


def quiet_close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
