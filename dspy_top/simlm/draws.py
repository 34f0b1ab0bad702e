"""Deterministic "randomness" for the simulated LM: every draw is a hash of the request.

Hashing instead of a global RNG means the same request gets the same answer, latency
and token count on every run, in every process, and from DSPy's cache or the wire.
"""

import hashlib
import json
import random


def request_digest(body: dict) -> str:
    """A stable fingerprint of what the model is asked: model, messages and output format.

    Sampling knobs (temperature, max_tokens, stream) are left out on purpose, so a
    streamed and a plain call of the same prompt produce the same text.
    """
    asked = {
        "model": body.get("model"),
        "messages": body.get("messages"),
        "response_format": body.get("response_format"),
        "tools": body.get("tools"),
    }
    canonical = json.dumps(asked, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def unit(digest: str, label: str) -> float:
    """A uniform number in [0, 1) drawn from the digest, independent per label."""
    raw = hashlib.sha256(f"{digest}:{label}".encode()).digest()
    return int.from_bytes(raw[:8], "big") / 2**64


def rng(digest: str, label: str) -> random.Random:
    """A seeded generator for draws that need more than one number (choices, lengths)."""
    raw = hashlib.sha256(f"{digest}:{label}".encode()).digest()
    return random.Random(int.from_bytes(raw[:8], "big"))
