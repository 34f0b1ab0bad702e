"""The relay's wire: what `dspy-top relay` and a viewer (`SshSource`) say over ssh's stdio.

Frames as the process protocol frames them (protocol.py: a 4-byte length, one msgpack map
with a type `t`); the relay's frames carry a `Sink` call each, for one process named by its
key `k`, in the order the relay's source made them. The versions are negotiated in the first
two frames. msgpack and the standard library only, like protocol.py: the relay and the viewer
both import it, and other tools may read it (docs/protocol.md, "The relay").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack

from dspy_top import protocol
from dspy_top.protocol import HEADER, Hello, ProtocolError

RELAY_VERSION = 1  # the relay protocol this side speaks best
RELAY_VERSIONS = (1,)  # every relay version this side speaks
# A process's own frame (up to protocol.MAX_FRAME) travels inside a relay frame, with its key.
MAX_FRAME = protocol.MAX_FRAME + 64 * 1024
MAX_REQUEST = 64 * 1024  # viewer to relay: requests are small
MAX_KEY = 4096  # a key is a socket's path on the relay's machine

# Relay to viewer.
RELAY = "relay"  # the relay's hello, first: {v, versions, protocol, dspy_top, host, where, pid, warning}
ATTACH = "attach"  # {k, pid, status}
CONNECTED = "connected"  # {k, hello}: the process's hello
MESSAGE = "message"  # {k, message}: one protocol message from the process, as it came
CLOSED = "closed"  # {k, reason, refused}
LET_GO = "let_go"  # {k}
SETTLED = "settled"  # {}: the relay has looked for its processes and attached every one it found
ERROR = "error"  # {reason}: the relay ends after it (a version it cannot speak, bad input)
# Viewer to relay.
HELLO = "hello"  # {v, client}: the version chosen, after the relay's hello; nothing is relayed before it
GET_PAYLOAD = "get_payload"  # {k, req, id}: answered by a `payload` message for k, with this req
STOP = "stop"  # {k, reason}
FORGET = "forget"  # {k}: the user dismissed the row; the relay may attach that process again


class Incompatible(Exception):
    """The other side speaks no version this one does; the message says which is older, for the user."""


def encode(frame: dict[str, Any], limit: int = MAX_FRAME) -> bytes:
    """One relay frame. Its values came from msgpack already (a process's message) or are ours."""
    try:
        body = msgpack.packb(frame, use_bin_type=True)
    except Exception:
        body = msgpack.packb(protocol.plain(frame), use_bin_type=True)  # a key with undecodable bytes
    if len(body) > limit:
        raise ProtocolError(f"relay frame of {len(body)} bytes exceeds the {limit}-byte limit")
    return HEADER.pack(len(body)) + body


def relay_hello(*, host: str, where: str, pid: int, version: str, warning: str | None = None) -> dict[str, Any]:
    return {
        "t": RELAY,
        "v": RELAY_VERSION,
        "versions": list(RELAY_VERSIONS),
        "protocol": protocol.PROTOCOL_VERSION,
        "dspy_top": version,
        "host": host,
        "where": where,
        "pid": pid,
        "warning": warning,
    }


def hello_message(hello: Hello) -> dict[str, Any]:
    """A process's hello as it travels (the fields the viewer reads: `schema.hello` checks it again)."""
    return {
        "t": protocol.HELLO,
        "v": hello.version,
        "pid": hello.pid,
        "argv": list(hello.argv),
        "cwd": hello.cwd,
        "started_at": hello.started_at,
        "python": hello.python,
        "dspy": hello.dspy,
        "dspy_top": hello.dspy_top,
        "mechanism": hello.mechanism,
        "history_capacity": hello.history_capacity,
    }


def choose_version(theirs: Iterable[Any], ours: Iterable[int] = RELAY_VERSIONS) -> int | None:
    """The newest relay version both sides speak, or None."""
    common = {v for v in theirs if type(v) is int} & set(ours)
    return max(common) if common else None


def check_relay_hello(frame: dict[str, Any], host: str, our_version: str) -> int:
    """The relay version to speak with the relay that sent `frame`; Incompatible says why there is none.

    Both the relay's own version and the process protocol it passes on must be ones this side
    speaks: an older or newer dspy-top on the host is named as such, with what to upgrade.
    """
    versions = frame.get("versions")
    if not isinstance(versions, list):
        versions = [frame.get("v")]
    theirs = frame.get("dspy_top") if isinstance(frame.get("dspy_top"), str) else "?"
    chosen = choose_version(versions)
    if chosen is None:
        newest = max((v for v in versions if type(v) is int), default=0)
        raise Incompatible(_mismatch(host, theirs, our_version, "relay protocol", newest, RELAY_VERSION))
    process_protocol = frame.get("protocol")
    if process_protocol != protocol.PROTOCOL_VERSION:
        newest = process_protocol if type(process_protocol) is int else 0
        raise Incompatible(_mismatch(host, theirs, our_version, "process protocol", newest, protocol.PROTOCOL_VERSION))
    return chosen


def _mismatch(host: str, theirs: str, ours: str, what: str, their_version: int, our_version: int) -> str:
    if their_version > our_version:
        return (
            f"dspy-top {theirs} on {host} is newer than this one ({ours}; {what} {their_version}, this one "
            f"speaks {our_version}): upgrade dspy-top here (pip install -U dspy-top)"
        )
    return (
        f"dspy-top {theirs} on {host} is older than this one ({ours}; {what} {their_version}, this one "
        f"speaks {our_version}): upgrade it there (pip install -U dspy-top)"
    )
