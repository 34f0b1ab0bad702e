"""Framing, limits and the version check of the wire."""

import struct

import msgpack
import pytest

from dspy_top import protocol, schema
from dspy_top.protocol import FrameReader, ProtocolError


def test_round_trip_through_a_byte_at_a_time_reader():
    messages = [{"t": "call", "id": i, "path": "RAG.answer", "cost_usd": None} for i in range(3)]
    data = b"".join(protocol.encode(m) for m in messages)
    reader = FrameReader()
    out = []
    for byte in data:
        out.extend(reader.feed(bytes([byte])))
    assert out == messages


def test_values_msgpack_cannot_carry_travel_as_text():
    (message,) = FrameReader().feed(protocol.encode({"t": "x", "v": object(), "s": {1}}))
    assert message["v"].startswith("<object")
    assert message["s"] == [1]


def test_oversized_length_is_refused_before_reading_the_body():
    reader = FrameReader(max_frame=1024)
    with pytest.raises(ProtocolError, match="exceeds"):
        list(reader.feed(struct.pack(">I", 2048)))


def test_garbage_and_untyped_frames_are_protocol_errors():
    garbage = b"\xc1\xc1\xc1"
    with pytest.raises(ProtocolError, match="undecodable"):
        list(FrameReader().feed(struct.pack(">I", len(garbage)) + garbage))
    body = msgpack.packb([1, 2, 3])
    with pytest.raises(ProtocolError, match="typed message"):
        list(FrameReader().feed(struct.pack(">I", len(body)) + body))


def test_encode_refuses_frames_over_the_limit(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_FRAME", 100)
    with pytest.raises(ProtocolError):
        protocol.encode({"t": "x", "blob": "a" * 200})


def test_hello_checks_the_version():
    good = {"t": "hello", "v": protocol.PROTOCOL_VERSION, "pid": 12, "argv": ["job.py"], "started_at": 1.0}
    assert schema.hello(good).pid == 12
    with pytest.raises(ProtocolError, match="version 99"):
        schema.hello({**good, "v": 99})
    with pytest.raises(ProtocolError, match="malformed"):
        schema.hello({"t": "hello", "v": protocol.PROTOCOL_VERSION})


def test_good_frames_before_a_bad_one_are_delivered_then_the_error():
    reader = FrameReader()
    data = protocol.encode({"t": "call", "id": 1}) + struct.pack(">I", 3) + b"\xc1\xc1\xc1"
    assert reader.feed(data) == [{"t": "call", "id": 1}]
    with pytest.raises(ProtocolError, match="undecodable"):
        reader.feed(b"")
