"""`SshSource`: the instrumented processes of another machine, through `ssh HOST dspy-top relay`.

The user's own ssh (its config, keys and agent; `DSPY_TOP_SSH` or `--ssh` to give another
command) runs the relay there (relay/), which reports that machine's processes as its local
sockets show them; this source tells them to the sink under `HOST:<socket path>`, so each
row carries its host. One reader, ssh's stdout, carries every process of the host; payload
and stop requests go to ssh's stdin. A broken connection closes every process it carried
(lost: their last numbers shown, never as final), the host is shown disconnected with why,
and ssh runs again with backoff. Nothing here waits: ssh's pipes are non-blocking and read
in the collector's thread, and the relay's first frame names its version before anything
else is believed.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from dspy_top import protocol, schema
from dspy_top.model.hosts import HOST_CONNECTED, HOST_CONNECTING, HOST_DISCONNECTED
from dspy_top.model.states import CONNECTING_STATUS
from dspy_top.protocol import FrameReader, ProtocolError
from dspy_top.sources import relay_wire as wire
from dspy_top.sources.base import CannotRequest, Readable, Source
from dspy_top.sources.ssh_failures import Attempt, explain

RELAY_COMMAND = "dspy-top relay"
# Whatever the user's ssh config says, the relay needs no terminal, no prompt (it would write
# over the viewer's screen), no forwarding; and a dead network must end ssh, not hang it.
SSH_OPTIONS = (
    "-T",
    "-a",
    "-x",
    "-o",
    "BatchMode=yes",
    "-o",
    "ClearAllForwardings=yes",
    "-o",
    "ServerAliveInterval=5",
    "-o",
    "ServerAliveCountMax=3",
    "-o",
    "ConnectTimeout=15",
)
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # seconds before the next try, after 1, 2, ... failures in a row
HELLO_WITHIN = 30.0  # seconds the relay has to say hello once ssh runs (login included)
REAP_WITHIN = 2.0  # seconds ssh has to exit once its stdout closed, before it is killed
READ_BYTES = 1 << 20  # bytes taken from the relay per turn: one busy host must not hold the collector
STDERR_KEPT = 4096  # bytes of ssh's stderr kept to say why it ended
OUTBOX_MOST = 1 << 20  # requests waiting for ssh's stdin beyond which one is refused


class SshSource(Source):
    """The processes of `host` (`[USER@]HOST`, or an alias of the user's ssh config), over ssh."""

    settle_within = 20.0  # a login over a slow network, and the relay's start there

    def __init__(
        self,
        host: str,
        *,
        version: str,
        ssh: Sequence[str] = ("ssh",),
        relay_command: str = RELAY_COMMAND,
        backoff: Sequence[float] = BACKOFF,
        hello_within: float = HELLO_WITHIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.version = version  # this dspy-top's, named to the relay and in a version mismatch
        self.ssh = list(ssh)
        self.relay_command = relay_command
        self.backoff = tuple(backoff)
        self.hello_within = hello_within
        self.clock = clock  # wall time, for when the host is tried again (shown to the user)
        self.connections = 0  # relays that said hello, over the source's life
        self.failure: str | None = None  # why the last attempt ended
        self._proc: subprocess.Popen | None = None
        self._failures = 0  # attempts in a row that never got a relay's hello
        self._next_try = 0.0
        self._closed = False
        self._settled = False
        self._requests = itertools.count(1)
        self._reset()

    def _reset(self) -> None:
        """What one connection holds."""
        self._frames = FrameReader(wire.MAX_FRAME)
        self._negotiated = False
        self._output = bytearray()  # stdout's first bytes, until the relay's hello: shown if they are no relay
        self._stderr = bytearray()
        self._outbox = bytearray()  # requests not yet taken by ssh's stdin
        self._refusal: str | None = None  # the relay's `error`, or why its version will not do
        self._stdout_open = self._stderr_open = False
        self._launched_at = self._eof_at = 0.0
        self._carried: set[str] = set()  # keys of processes the relay attached and has not closed
        self._refused: set[str] = set()  # keys whose messages the collector refused: not read further

    @property
    def where(self) -> str:
        return f"{self.host} (over ssh)"

    @property
    def command(self) -> list[str]:
        """What is run: the user's ssh, the options the relay needs, the host, the relay."""
        return [*self.ssh, *SSH_OPTIONS, "--", self.host, self.relay_command]

    @property
    def ssh_pid(self) -> int | None:
        """The running ssh's pid (for a test that kills it)."""
        return self._proc.pid if self._proc is not None else None

    def readers(self) -> Sequence[Readable]:
        proc = self._proc
        if proc is None:
            return ()
        return [pipe for pipe, open_ in ((proc.stdout, self._stdout_open), (proc.stderr, self._stderr_open)) if open_]

    def wake_at(self) -> float | None:
        if self._closed:
            return None
        if self._proc is None:
            return self._next_try
        soon = time.monotonic() + 0.05
        if self._outbox or not self._stdout_open:
            return soon  # requests to hand to ssh, or ssh to reap
        if not self._negotiated:
            return self._launched_at + self.hello_within
        return None

    def settled(self) -> bool:
        """True once the relay has attached what it found, or the host could not be reached."""
        return self._settled

    def turn(self, ready: Sequence[Readable], now: float) -> None:
        proc = self._proc
        if proc is None:
            if now >= self._next_try and not self._closed:
                self._launch(now)
            return
        for pipe in ready:
            if pipe is proc.stdout:
                self._read_stdout(now)
            elif pipe is proc.stderr:
                self._read_stderr()
        if self._proc is None:
            return
        self._flush()
        if not self._negotiated and self._stdout_open and now - self._launched_at > self.hello_within:
            self._refusal = f"no answer from `{self.relay_command}` on {self.host} within {self.hello_within:g}s"
            self._kill()
        if not self._stdout_open:
            self._reap(now)

    # --- requests ---------------------------------------------------------------------------

    def request_payload(self, key: str, call_id: int) -> int:
        # A process that ended is asked too: the relay reads its recording, on that machine.
        remote = self._carrying(key, ended_too=True)
        request = next(self._requests)
        self._send({"t": wire.GET_PAYLOAD, "k": remote, "req": request, "id": call_id})
        return request

    def request_stop(self, key: str, reason: str) -> None:
        self._send({"t": wire.STOP, "k": self._carrying(key), "reason": reason})

    def forget(self, key: str) -> None:
        remote = self._remote(key)
        if remote is not None and self._negotiated:
            try:
                self._send({"t": wire.FORGET, "k": remote})
            except CannotRequest:
                pass  # the relay is not reading: it forgets everything when it ends anyway

    def close(self) -> None:
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        try:
            proc.stdin.close()  # the relay ends when its stdin closes, and ssh with it
        except OSError:
            pass
        try:
            proc.wait(0.5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_pipes(proc)
        self._proc = None

    def _carrying(self, key: str, ended_too: bool = False) -> str:
        remote = self._remote(key)
        if remote is None:
            raise CannotRequest(f"not a process of {self.host}")
        if not self._negotiated:
            raise CannotRequest(f"{self.host} is not connected")
        if key in self._refused or not (ended_too or key in self._carried):
            raise CannotRequest("not connected to the process (has it ended?)")
        return remote

    def _remote(self, key: str) -> str | None:
        prefix = f"{self.host}:"
        return key[len(prefix) :] if key.startswith(prefix) else None

    def _send(self, frame: dict[str, Any]) -> None:
        if self._proc is None or len(self._outbox) > OUTBOX_MOST:
            raise CannotRequest(f"the relay on {self.host} is not taking requests")
        try:
            self._outbox += wire.encode(frame, wire.MAX_REQUEST)
        except ProtocolError as exc:
            raise CannotRequest(str(exc)) from None
        self._flush()
        self.sink.wake()  # what did not fit is written on the next turn

    def _flush(self) -> None:
        proc = self._proc
        if not self._outbox or proc is None or proc.stdin.closed:
            return
        try:
            written = os.write(proc.stdin.fileno(), self._outbox)
        except BlockingIOError:
            return
        except OSError:
            self._outbox.clear()  # ssh is gone: its stdout's end says why
            return
        del self._outbox[:written]

    # --- one connection --------------------------------------------------------------------

    def _launch(self, now: float) -> None:
        self._reset()
        if self.connections == 0 and self._failures == 0:
            self.sink.host(self.host, HOST_CONNECTING, f"connecting over ssh ({self.relay_command})")
        try:
            proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
            )
        except OSError as exc:
            self._failed(
                f"cannot run {self.ssh[0]!r}: {exc.strerror or exc} (give your ssh command with --ssh or DSPY_TOP_SSH)",
                now,
                reachable=False,
            )
            return
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(pipe.fileno(), False)
        self._proc = proc
        self._stdout_open = self._stderr_open = True
        self._launched_at = now

    def _read_stdout(self, now: float) -> None:
        proc = self._proc
        taken = 0
        while taken < READ_BYTES and self._stdout_open:
            try:
                data = os.read(proc.stdout.fileno(), READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._stdout_open = False
                self._eof_at = now
                return
            taken += len(data)
            if not self._negotiated and len(self._output) < 200:
                self._output += data[: 200 - len(self._output)]
            try:
                frames = self._frames.feed(data)
            except ProtocolError as exc:
                self._garbage(f"the relay on {self.host} sent bad data: {exc}")
                return
            if not self._take(frames):
                return

    def _read_stderr(self) -> None:
        try:
            data = os.read(self._proc.stderr.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stderr_open = False
            return
        self._stderr += data
        del self._stderr[:-STDERR_KEPT]

    def _take(self, frames: list[dict[str, Any]]) -> bool:
        """Tell the sink what the frames say, in order; False once the connection is given up."""
        run_key: str | None = None
        run: list[dict[str, Any]] = []
        for frame in frames:
            kind = frame.get("t")
            if not self._negotiated:
                if not self._negotiate(frame):
                    return False
                continue
            key = frame.get("k")
            if kind == wire.MESSAGE:
                message = frame.get("message")
                if not _a_key(key) or not isinstance(message, dict):
                    self._garbage(f"the relay on {self.host} sent a malformed message frame")
                    return False
                if key != run_key:
                    self._pass_on(run_key, run)
                    run_key, run = key, []
                run.append(message)
                continue
            self._pass_on(run_key, run)
            run_key, run = None, []
            if kind == wire.SETTLED:
                self._settled = True
            elif kind == wire.ERROR:
                reason = frame.get("reason")
                self._refusal = f"the relay on {self.host} refused: {reason if isinstance(reason, str) else '?'}"
            elif kind in (wire.ATTACH, wire.CONNECTED, wire.CLOSED, wire.LET_GO):
                if not _a_key(key):
                    self._garbage(f"the relay on {self.host} sent a {kind} frame without a key")
                    return False
                self._process_frame(kind, f"{self.host}:{key}", frame)
            # other types are skipped: a newer relay may add some without a version change
        self._pass_on(run_key, run)
        return True

    def _negotiate(self, frame: dict[str, Any]) -> bool:
        """The relay's hello: answer with the version chosen; False (and ssh ended) when there is none."""
        if frame.get("t") != wire.RELAY:
            self._garbage(f"{self.host} did not answer as a dspy-top relay (its first frame: {frame.get('t')!r})")
            return False
        try:
            version = wire.check_relay_hello(frame, self.host, self.version)
        except wire.Incompatible as exc:
            self._refusal = str(exc)
            self._kill()
            return False
        self._outbox += wire.encode(
            {"t": wire.HELLO, "v": version, "client": f"dspy-top {self.version}"}, wire.MAX_REQUEST
        )
        self._flush()
        self._negotiated = True
        self._failures = 0
        self.connections += 1
        self.failure = None
        self.sink.host(self.host, HOST_CONNECTED, _connected_status(frame))
        return True

    def _process_frame(self, kind: str, key: str, frame: dict[str, Any]) -> None:
        sink = self.sink
        if kind == wire.ATTACH:
            pid, status = frame.get("pid"), frame.get("status")
            self._carried.add(key)
            self._refused.discard(key)
            sink.attach(
                key,
                pid if type(pid) is int and pid > 0 else None,
                status if isinstance(status, str) else CONNECTING_STATUS,
            )
        elif kind == wire.CONNECTED:
            if key not in self._carried:
                self._carried.add(key)
                self._refused.discard(key)
                sink.attach(key, None)
            try:
                hello = schema.hello(frame.get("hello") if isinstance(frame.get("hello"), dict) else {})
            except ProtocolError as exc:
                self._refused.add(key)
                sink.closed(key, str(exc), refused=True)
                return
            sink.connected(key, hello)
        elif kind == wire.CLOSED:
            if key in self._carried:
                self._carried.discard(key)
                if key not in self._refused:
                    reason = frame.get("reason")
                    sink.closed(
                        key, reason if isinstance(reason, str) else "connection closed", frame.get("refused") is True
                    )
        elif kind == wire.LET_GO:
            self._carried.discard(key)
            sink.let_go(key)

    def _pass_on(self, remote: str | None, messages: list[dict[str, Any]]) -> None:
        if remote is None or not messages:
            return
        key = f"{self.host}:{remote}"
        if key in self._refused:
            return  # a process the collector refused: not read further
        if key not in self._carried:
            # Ended (or never attached): only answers to payload requests, from its recording there.
            messages = [m for m in messages if m.get("t") == protocol.PAYLOAD]
            if not messages:
                return
        if not self.sink.messages(key, messages):
            self._refused.add(key)

    # --- the end of a connection ---------------------------------------------------------------

    def _garbage(self, why: str) -> None:
        """What came from ssh cannot be a relay's: end this connection (it is tried again later)."""
        if self._negotiated and self._refusal is None:
            self._refusal = why  # before the hello, the output it began with says more (ssh_failures.explain)
        self._kill()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._stdout_open = False
        self._eof_at = time.monotonic()

    def _reap(self, now: float) -> None:
        """ssh's stdout has closed: once it has exited (killed if it will not), say why and plan the next try."""
        proc = self._proc
        code = proc.poll()
        if code is None:
            if now - self._eof_at < REAP_WITHIN:
                return
            proc.kill()
            code = proc.wait()
        if self._stderr_open:
            self._read_stderr()  # what it said last, on its way out
        self._close_pipes(proc)
        self._proc = None
        attempt = Attempt(
            self.host,
            self.relay_command,
            code,
            self._stderr.decode("utf-8", "replace"),
            connected=self._negotiated,
            output=bytes(self._output) if not self._negotiated else b"",
            refused=self._refusal,
        )
        why = explain(attempt)
        if self._negotiated:
            self._failed(f"connection lost: {why}", now, reachable=True, rows=f"connection to {self.host} lost ({why})")
        else:
            self._failed(why, now, reachable=False)

    def _failed(self, why: str, now: float, *, reachable: bool, rows: str | None = None) -> None:
        """The connection is over (or never was): close its processes, say why, plan the next try."""
        for key in sorted(self._carried - self._refused):
            self.sink.closed(key, rows or why)
        self._carried.clear()
        self._negotiated = False
        self._failures = 1 if reachable else self._failures + 1
        delay = self.backoff[min(self._failures, len(self.backoff)) - 1]
        self._next_try = now + delay
        self.failure = why
        self._settled = True  # looked, and said what it found
        self.sink.host(self.host, HOST_DISCONNECTED, why, retry_at=self.clock() + delay)

    @staticmethod
    def _close_pipes(proc: subprocess.Popen) -> None:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass


def _a_key(key: Any) -> bool:
    return isinstance(key, str) and 0 < len(key) <= wire.MAX_KEY


def _connected_status(frame: dict[str, Any]) -> str:
    """Who answered: the dspy-top version, the machine's own name and what its relay watches."""

    def text(name: str) -> str:
        value = frame.get(name)
        return value[:200] if isinstance(value, str) else "?"

    status = f"dspy-top {text('dspy_top')} on {text('host')}, watching {text('where')}"
    warning = frame.get("warning")
    if isinstance(warning, str) and warning:
        status += f" ({warning[:300]})"
    return status
