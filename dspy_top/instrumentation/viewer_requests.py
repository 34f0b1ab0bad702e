"""What viewers send, answered on the server thread: hello checked, payloads fetched, stop passed on.

Bad input (a frame too large, a protocol version this process does not speak) gets an error
message and the connection closed: it never reaches the job. A payload is read from the
recorder's ring (payload_ring.py) and materialized (payload.py) on the
server thread, never the job's. The credentials its LM was given are learned by the redactor
first, so that the one redaction pass removes them wherever they appear; a payload too large to
send is answered "not found" with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dspy_top import protocol
from dspy_top.instrumentation import payload, payload_pack
from dspy_top.instrumentation.publisher import Publisher
from dspy_top.instrumentation.recorder import KeptCall, Recorder
from dspy_top.instrumentation.viewers import ViewerConnection

MAX_PAYLOAD_TEXT = 256 * 1024


class ViewerRequests:
    """Reads each viewer's requests and answers them; `drop(viewer)` is the server's way to let one go."""

    def __init__(
        self,
        recorder: Recorder,
        publisher: Publisher,
        materialize: Callable[[Any], dict[str, Any]],
        secrets_of: Callable[[Any], list[str]] | None,
        on_stop: Callable[[str], None] | None,
        drop: Callable[[ViewerConnection], None],
    ) -> None:
        self.recorder = recorder
        self.publisher = publisher
        self.materialize = materialize
        self.secrets_of = secrets_of
        self.on_stop = on_stop
        self.drop = drop
        self._packer: payload_pack.PayloadPacker | None = None  # made for a recording's first payloads

    def read(self, viewer: ViewerConnection) -> None:
        """What the viewer sent since its socket was last readable, each request answered."""
        try:
            data = viewer.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(viewer)
            return
        try:
            for message in viewer.reader.feed(data):
                self.handle(viewer, message)
        except protocol.ProtocolError as exc:
            self.refuse(viewer, str(exc))

    def handle(self, viewer: ViewerConnection, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == protocol.HELLO:
            if message.get("v") != protocol.PROTOCOL_VERSION:
                self.refuse(
                    viewer,
                    f"viewer speaks protocol version {str(message.get('v'))[:40]}; "
                    f"this process speaks {protocol.PROTOCOL_VERSION}",
                )
        elif kind == protocol.GET_PAYLOAD:
            viewer.send_first(self.payload_reply(message))
        elif kind == protocol.STOP and self.on_stop is not None:
            reason = message.get("reason")
            try:
                self.on_stop(str(reason)[:200] if reason else "stop requested by a viewer")
            except Exception:
                self.recorder.count_internal_error()
        # Unknown message types are skipped: newer viewers may ask for more.

    def refuse(self, viewer: ViewerConnection, reason: str) -> None:
        """Tell the viewer why, then close: bad input never reaches the job."""
        try:
            viewer.sock.send(protocol.encode({"t": protocol.ERROR, "reason": reason}))
        except OSError:
            pass
        self.drop(viewer)

    # --- payloads ---------------------------------------------------------------------

    def payload_reply(self, message: dict[str, Any]) -> bytes:
        """The encoded `payload` reply to a viewer's `get_payload` request."""
        call_id = message.get("id")
        request = message.get("req") if isinstance(message.get("req"), (int, str, type(None))) else None
        call_id = call_id if isinstance(call_id, int) else None
        source = self.recorder.payload(call_id) if call_id is not None else None
        reply: dict[str, Any] = {"t": protocol.PAYLOAD, "req": request, "id": call_id, "found": source is not None}
        if source is None and call_id is not None:
            reason = self.recorder.payload_missing_reason(call_id)
            if reason:
                reply["reason"] = reason
        if source is not None:
            try:
                reply["payload"] = self._source(source)
            except Exception:
                self.recorder.count_internal_error()
                reply["found"] = False
        frame = self.publisher.encode(reply, "payload", limit=None)
        if frame is None:
            frame = protocol.encode(
                {
                    "t": protocol.PAYLOAD,
                    "req": request,
                    "id": call_id,
                    "found": False,
                    "reason": "payload too large to send",
                }
            )
        return frame

    def payload_of(self, source: Any) -> dict[str, Any]:
        """A kept call's payload, redacted exactly as a viewer gets it in a `payload` reply."""
        redactor = self.publisher.redactor
        if type(source) is KeptCall and self.materialize is payload.materialize:
            # A recording's every call: the same result, built without the payload's map first.
            if self.secrets_of is not None:
                redactor.learn(self.secrets_of(source))
            return payload.redacted(redactor, source, MAX_PAYLOAD_TEXT)
        return redactor.value({"payload": self._source(source)}, MAX_PAYLOAD_TEXT)["payload"]

    def packed_payloads(
        self, call_ids: list[int], take: Callable[[list[int], Callable], Any]
    ) -> payload_pack.PackedBatch | None:
        """A recording's calls packed as `[call id, payload_of(kept)]` straight from the payload
        ring's slots (`take`: Recorder.take_payloads) where that is done in C (payload_pack.py);
        None where it is not (no compiled part, or another materialize), before any slot is read."""
        if (
            self.materialize is not payload.materialize
            or self.secrets_of not in (None, payload.secrets_of)
            or not payload_pack.AVAILABLE
        ):
            return None
        packer = self._packer
        if packer is None:
            packer = self._packer = payload_pack.PayloadPacker(
                self.publisher.redactor, MAX_PAYLOAD_TEXT, self.secrets_of
            )
        return packer.pack(call_ids, take)

    def _source(self, source: Any) -> dict[str, Any]:
        """A kept call's payload, not yet redacted; the credentials its LM was given are learned
        first, so that the pass redacts them wherever they appear."""
        if self.secrets_of is not None:
            self.publisher.redactor.learn(self.secrets_of(source))
        return self.materialize(source)
