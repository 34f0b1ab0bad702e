"""The encode side of the wire: any message a job produces is sent, or refused with ProtocolError, never an
other exception (which would end the server thread)."""

import random
import time

import pytest

from dspy_top import protocol
from dspy_top.instrumentation.redact import Redactor
from dspy_top.protocol import FrameReader, ProtocolError


def test_text_that_is_not_unicode_travels_escaped():
    message = {
        "t": "hello",
        "argv": ["job.py", "caf\udce9.txt", "\udcff"],
        "error": "lone \ud800 surrogate",
        "k\udce9": "key too",
    }
    (decoded,) = FrameReader().feed(protocol.encode(message))
    assert decoded["argv"] == ["job.py", "caf\\xe9.txt", "\\xff"]
    assert decoded["error"] == "lone \\ud800 surrogate" and decoded["k\\xe9"] == "key too"


def test_values_msgpack_refuses_become_text():
    cycle: list = []
    cycle.append(cycle)

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

    (decoded,) = FrameReader().feed(
        protocol.encode(
            {"t": "x", "big": 2**70, "small": -(2**70), "cycle": cycle, "odd": Unprintable(), (1, 2): "tuple key"}
        )
    )
    assert decoded["big"] == str(2**70) and decoded["small"] == str(-(2**70))
    assert decoded["odd"] == "<Unprintable>" and decoded["(1, 2)"] == "tuple key"
    depth = 0
    value = decoded["cycle"]
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert value == "…" and depth < 100


def test_a_frame_encoded_once_takes_per_viewer_fields():
    for keys in (3, 20, 70_000):  # fixmap, map16 and map32 headers
        base = protocol.encode({"t": "stats", **{f"k{n}": n for n in range(keys)}})
        (decoded,) = FrameReader().feed(protocol.encode_with(base, {"dropped_viewer": 7}))
        assert decoded["dropped_viewer"] == 7 and decoded[f"k{keys - 1}"] == keys - 1 and len(decoded) == keys + 2


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(12 if depth < 4 else 7)
    if kind == 0:
        return "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xD800, 0xE000), rng.randrange(0x80, 0x10FFFF), 0]))
            for _ in range(rng.randrange(12))
        )
    if kind == 1:
        return rng.choice([0, -1, 2**63, 2**64, -(2**63) - 1, 10**30, rng.randrange(-(10**6), 10**6)])
    if kind == 2:
        return rng.choice([0.5, float("inf"), float("nan"), -0.0])
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
    if kind == 5:
        return rng.choice([object(), ValueError("bad \ud800"), type, range(3), 1j])
    if kind == 6:
        return frozenset({1, "a"})
    if kind in (7, 8):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 9:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(5)))
    keys = [_random_value(rng, 5) for _ in range(rng.randrange(5))]
    return {key if _hashable(key) else repr(key): _random_value(rng, depth + 1) for key in keys}


def _hashable(value) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False


def test_fuzz_any_message_encodes_or_is_refused_cleanly():
    """protocol.encode raises nothing but ProtocolError; what the server sends (every message
    through the redaction pass first, which also makes map keys plain) always decodes."""
    redactor = Redactor({})
    rng = random.Random(20)
    deadline = time.monotonic() + 10
    encoded = 0
    for _ in range(5000):
        if time.monotonic() > deadline:
            break
        message = {"t": "fuzz", "value": _random_value(rng)}
        try:
            protocol.encode(message)
        except ProtocolError:
            pass
        frame = protocol.encode(redactor.value(message))
        (decoded,) = FrameReader().feed(frame)
        assert decoded["t"] == "fuzz"
        encoded += 1
    assert encoded > 1000


def test_too_large_is_still_a_protocol_error(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_FRAME", 100)
    with pytest.raises(ProtocolError):
        protocol.encode({"t": "x", "blob": "\ud800" * 200})
    with pytest.raises(ProtocolError):
        protocol.encode_with(protocol.encode({"t": "x", "blob": "a" * 90}), {"more": "b" * 20})
