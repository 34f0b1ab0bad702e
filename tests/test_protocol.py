"""Framing, limits and the version check of the wire."""

import ast
import re
import struct
from pathlib import Path

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


# --- one vocabulary: message kinds and counter names are protocol.py's -----------------------------------------


def message_kinds() -> dict[str, str]:
    """Every message type protocol.py names: its text -> the constant's name."""
    return {
        value: name
        for name, value in vars(protocol).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+", value)
    }


def kind_literals(path) -> list[str]:
    """Where a source file spells a message kind out instead of using protocol's constant: as a message's `t`, or
    compared with a variable named `kind` or with a message's `t`."""
    kinds = message_kinds()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "t"
                    and isinstance(value, ast.Constant)
                    and value.value in kinds
                ):
                    found.append(f"{path}:{node.lineno} {{'t': {value.value!r}}}: use protocol.{kinds[value.value]}")
        elif isinstance(node, ast.Compare):
            left = ast.unparse(node.left)
            if left == "kind" or left.endswith(".get('t')") or left.endswith("['t']"):
                for right in node.comparators:
                    values = right.elts if isinstance(right, (ast.Tuple, ast.List, ast.Set)) else [right]
                    for value in values:
                        if isinstance(value, ast.Constant) and value.value in kinds:
                            found.append(
                                f"{path}:{node.lineno} {left} vs {value.value!r}: use protocol.{kinds[value.value]}"
                            )
    return found


@pytest.mark.slow
def test_message_kinds_are_spelled_once():
    root = Path(protocol.__file__).parent
    files = [path for path in root.rglob("*.py") if "simlm" not in path.parts and path.name != "protocol.py"]
    assert len(files) > 100
    assert [line for path in files for line in kind_literals(path)] == []


def test_a_spelled_out_kind_is_found(tmp_path):
    source = tmp_path / "leak.py"
    source.write_text(
        "def f(message, kind):\n    if kind == 'calls' or message.get('t') in ('exit', 'x'):\n"
        "        return {'t': 'stats'}\n"
    )
    assert len(kind_literals(source)) == 3


def test_counter_names_are_protocols():
    from dataclasses import fields

    from dspy_top.instrumentation.tally import Tally
    from dspy_top.model.counters import Counters
    from dspy_top.recording.state import TAIL_COUNTERS
    from dspy_top.schema.records import CountersRecord

    names = protocol.COUNTER_FIELDS
    assert set(protocol.COUNT_FIELDS) | set(protocol.USD_FIELDS) | set(protocol.SECONDS_FIELDS) == set(names)
    assert tuple(f.name for f in fields(CountersRecord)) == (*names, "latency_hist", "last_at")
    assert set(Tally().to_wire()) == {*names, "latency_sketch", "last_at"}
    assert set(names) <= set(Counters().to_json())
    assert set(TAIL_COUNTERS) == set(names) - {"in_flight"}
