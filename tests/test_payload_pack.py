"""A recording's payloads packed in C (instrumentation/payload_pack.py, _payload_pack.c) are byte for
byte what the Python pass stores (`msgpack` of `payload.redacted`, by a redactor that learned the
same credentials), or are left to that pass, or are counted gone: on generated payloads of every
shape, with msgpack's boundary values and planted credentials; across batches, as the packer's
memo of texts found unchanged fills and a credential is learned half way; from the payload ring's
own slots, reused for later calls; and where only texts together would form a credential. Bad
arguments to the C function raise TypeError. A job's call rows (`pack_plain`) are packed as msgpack
packs them, or left to it."""

from __future__ import annotations

import math
import os
import random
import string
from collections import Counter
from collections.abc import Callable

import msgpack
import pytest

from dspy_top.instrumentation import payload, payload_pack, redact
from dspy_top.instrumentation.payload_ring import KEPT_FIELDS, TAKEN, KeptCall
from dspy_top.instrumentation.publisher import Publisher
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.instrumentation.redact import Redactor
from dspy_top.instrumentation.viewer_requests import MAX_PAYLOAD_TEXT, ViewerRequests

needs_c = pytest.mark.skipif(
    not payload_pack.AVAILABLE,
    reason="_payload_pack.c is not built here (or DSPY_TOP_NO_C=1): every payload takes the Python pass",
)

ENV_SECRET = "envtok-5e1f0c9a7b3d2e8f"
ENV = {"MY_SERVICE_TOKEN": ENV_SECRET, "HOME": "/home/someone"}


def test_ci_has_the_compiled_part():
    """Without the compiled part every payload takes the Python pass (same bytes, older cost) and
    the tests of the C path skip: a CI run that lost it (no compiler, a failed build) fails here."""
    if not os.environ.get("CI"):
        pytest.skip("outside CI the compiled part may be missing (no compiler, DSPY_TOP_NO_C=1)")
    assert payload_pack.AVAILABLE, "_payload_pack.c was not built (hatch_build.py) or DSPY_TOP_NO_C=1 is set"


# --- helpers --------------------------------------------------------------------------------------


def kept(call_id: int = 1, slot: bool = False, **parts):
    """A kept call in KEPT_FIELDS order then a size: a KeptCall tuple, or a ring slot (a list,
    then whether a recording took it, as PayloadRing makes it)."""
    base = dict(
        id=call_id,
        model="openai/gpt-4o-mini",
        model_type="chat",
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        prompt=None,
        lm_options={"temperature": 0.0, "max_tokens": 1000},
        call_options={},
        outputs=["4"],
        usage={"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        dspy_cost=0.0001,
        cost_details=None,
        error=None,
        cache_hit=False,
        response_model="gpt-4o-mini-2024-07-18",
    )
    base.update(parts)
    fields = [base[name] for name in KEPT_FIELDS] + [512]
    return fields + [False] if slot else KeptCall(fields)


def as_kept(source) -> KeptCall:
    return source if type(source) is KeptCall else KeptCall(source)


def learn(redactor: Redactor, source) -> None:
    """What ViewerRequests.payload_of learns before it builds a payload (nothing from options it
    cannot read: then it raises, and that payload is not stored)."""
    try:
        redactor.learn(payload.secrets_of(as_kept(source)))
    except (TypeError, ValueError):
        pass


def reference(ref: Redactor, pending: list, limit: int) -> dict[int, bytes | None]:
    """What the Python pass stores for each pair, after learning every credential the batch's
    calls were given (as ViewerRequests.payload_of learns them); None where msgpack refuses it."""
    for _, source in pending:
        learn(ref, source)
    expected = {}
    for call_id, source in pending:
        try:
            expected[call_id] = msgpack.Packer(use_bin_type=True).pack(
                [call_id, payload.redacted(ref, as_kept(source), limit)]
            )
        except (OverflowError, ValueError, TypeError):  # an int past 64 bits: the pass cannot store it
            expected[call_id] = None
    return expected


def packed_of(batch: payload_pack.PackedBatch) -> dict[int, bytes]:
    assert len(batch.ids) == len(batch.ends)
    assert batch.ends == sorted(batch.ends) and len(batch.data) == (batch.ends[-1] if batch.ends else 0)
    starts = [0, *batch.ends[:-1]]
    return {call_id: bytes(batch.data[start:end]) for call_id, start, end in zip(batch.ids, starts, batch.ends)}


def strings_in(value, found: list[str]) -> list[str]:
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            strings_in(key, found)
            strings_in(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            strings_in(item, found)
    return found


def assert_no_credential(data: bytes, planted) -> None:
    decoded = "\n".join(strings_in(msgpack.unpackb(data, raw=False, strict_map_key=False), []))
    for secret in planted:
        assert secret.encode() not in data, secret
        assert secret not in decoded, secret


def lend(slots: dict) -> Callable:
    """A ring's `take` (Recorder.take_payloads) over these slots: call id -> kept call."""
    return lambda call_ids, walk: walk(call_ids, slots)


def pack_pairs(packer: payload_pack.PayloadPacker, pending: list) -> payload_pack.PackedBatch:
    """(call id, kept call) pairs packed as if the ring's map of call id -> slot held them."""
    slots = dict(pending)
    assert len(slots) == len(pending), "a batch's call ids are distinct"
    return packer.pack([call_id for call_id, _ in pending], lend(slots))


def check(packer: payload_pack.PayloadPacker, ref: Redactor, pending: list, planted=()) -> payload_pack.PackedBatch:
    """Pack one batch of (call id, kept call) pairs, as the ring's map of call id -> slot; every
    packed payload's bytes are the reference's, and hold no planted credential. Each ring slot
    (a list) packed is marked taken; one holding another call is not."""
    held = [call_id for call_id, source in pending if type(source[0]) is type(call_id) and source[0] == call_id]
    expected = reference(ref, [entry for entry in pending if entry[0] in held], packer.limit)
    marks = {id(source): source[TAKEN] for _, source in pending if type(source) is list and len(source) > TAKEN}
    batch = pack_pairs(packer, pending)
    packed = packed_of(batch)
    assert batch.ids == [call_id for call_id in held if call_id in packed]  # in order, each once
    assert sorted(batch.ids + batch.python) == sorted(held)
    assert batch.python == [call_id for call_id in held if call_id in batch.python]
    assert batch.gone == len(pending) - len(held)
    for call_id, source in pending:
        if id(source) in marks:
            if call_id in batch.ids:
                assert source[TAKEN] is True, call_id
            elif call_id not in held:
                assert source[TAKEN] is marks[id(source)], call_id  # another call's slot: as it was
    for call_id, data in packed.items():
        assert expected[call_id] is not None, f"call {call_id}: packed, but msgpack cannot store its payload"
        assert data == expected[call_id], (call_id, msgpack.unpackb(data, strict_map_key=False))
        assert_no_credential(data, planted)
    sources = dict(pending)
    for call_id in batch.python:  # then the writer's Python pass, on the same redactor (payload_of)
        source = as_kept(sources[call_id])
        learn(packer.redactor, source)
        try:
            stored = msgpack.Packer(use_bin_type=True).pack(
                [call_id, payload.redacted(packer.redactor, source, packer.limit)]
            )
        except (OverflowError, ValueError, TypeError):
            stored = None
        assert stored == expected[call_id], call_id
    for call_id in held:  # the generator plants only what the pass removes
        if expected[call_id] is not None:
            assert_no_credential(expected[call_id], planted)
    return batch


def pair(limit: int = MAX_PAYLOAD_TEXT, environ=ENV) -> tuple[payload_pack.PayloadPacker, Redactor]:
    """A packer over its own redactor, and a reference redactor in the same environment."""
    return payload_pack.PayloadPacker(Redactor(environ), limit, payload.secrets_of), Redactor(environ)


# --- generated payloads ---------------------------------------------------------------------------

BOUNDARY_INTS = [
    *(0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1),
    *(-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)),
]
PAST_64_BITS = [2**64, -(2**63) - 1, 2**100]  # msgpack refuses these: never packed
FLOATS = [0.0, -0.0, 1.5, -2.25, math.nan, -math.nan, math.inf, -math.inf, 1e308, 5e-324]
PLAIN_TEXTS = [
    "",
    "Hello",
    "é",
    "Ω",
    "😀",
    "naïve café, Ωmega and 😀",
    "a" * 31,
    "a" * 32,
    "é" * 15,  # 30 bytes
    "é" * 16,  # 32 bytes: a str8 header for 16 characters
    "Ω" * 128,  # 256 bytes
    "😀" * 8,
    "b" * 255,
    "b" * 256,
    "max_tokens: 100",
    "key: value",
    "Basic arithmetic is fun",
    "see https://example.com/docs?page=2",
    "mail bob@example.com",
    "--verbose true",
    "the token count is 5",
    "line one\nline two\n\nline four",
    "Your input fields are:\n1. `question` (str)\nYour output fields are:\n1. `answer` (str)\n" * 3,
    "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]",
]
ROLES = ["system", "user", "assistant", "tool", "Ω-role", ""]
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "", "modèle-é", None]


class Opaque:
    def __init__(self, shown: str) -> None:
        self.shown = shown

    def __repr__(self) -> str:
        return f"Opaque({self.shown})"


class Text(str):
    pass


class Number(int):
    pass


class Mapping(dict):
    pass


class Payloads:
    """Random kept calls for one seed, with the credentials planted in them (each a fresh token
    that occurs nowhere else, in a place the pass redacts)."""

    def __init__(self, seed: int) -> None:
        self.draw = random.Random(f"payloads {seed}")  # not the stream that picks the batch's limit
        # How often a text holds a credential, a value is odd: some seeds' calls are mostly plain
        # (as a job's are, and then they are packed), others' full of what the pass must change.
        self.rate = self.draw.choice([0.0, 0.01, 0.03, 0.1, 0.3])
        self.planted: list[str] = []
        self.learned: list[str] = []  # api keys of this seed's LMs: any call's text may quote one

    def token(self, size: int = 20) -> str:
        draw = self.draw
        body = "".join(draw.choice(string.ascii_lowercase + string.digits) for _ in range(size))
        return body[:-2] + str(draw.randint(10, 99))  # digits: it looks like a credential

    def credential_text(self) -> str:
        draw, secret = self.draw, self.token()
        kind = draw.randrange(9)
        if kind == 6 and self.learned:  # an LM's key (in a call's options, this batch or before)
            secret = draw.choice(self.learned)
            text = f"quoted {secret} here"
        elif kind in (0, 6):
            secret = "sk-proj-" + secret
            text = f"the key is {secret}, keep it"
        elif kind == 1:
            text = f"Authorization: Bearer {secret}"
        elif kind == 2:
            text = f"call it with api_key={secret}&q=1"
        elif kind == 3:
            text = f"postgres://admin:{secret}@db.internal:5432/app"
        elif kind == 4:
            body = "\n".join("MIIE" + self.token(40) for _ in range(3))
            text = f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\nthanks"
            self.planted.extend(body.split("\n"))
            return text
        elif kind == 5:
            return f"from the env: {ENV_SECRET}!"
        elif kind == 7:
            text = f"run with --api-key {secret} please"
        else:
            text = f'{{"password": "{secret}"}}'
        self.planted.append(secret)
        return text

    def text(self) -> str:
        draw = self.draw
        roll = draw.random()
        if roll < self.rate:
            return self.credential_text()
        if roll < 0.2:  # a long text, seen once (a question, a passage)
            return "".join(draw.choice(PLAIN_TEXTS) + " " for _ in range(draw.randint(5, 40)))
        if roll < 0.25:
            return draw.choice(["Ωmega ", "😀 ", "plain ", "é "]) * draw.randint(1, 90)
        return "".join(draw.choice(PLAIN_TEXTS))  # a fresh str: no hash computed yet

    def odd(self):
        """A value C packs itself, at msgpack's boundaries or the pass's."""
        draw = self.draw
        kind = draw.randrange(8)
        if kind == 0:
            return draw.choice(BOUNDARY_INTS)
        if kind == 1:
            return draw.choice(FLOATS)
        if kind == 2:
            return draw.choice([True, False, None, "", 0])
        if kind == 3:
            return tuple(self.value(3) for _ in range(draw.randint(0, 3)))
        if kind == 4:
            return {draw.choice([1, -200, 2**40, 0]): self.text(), "k": 1}
        if kind == 5:
            return list(range(draw.choice([15, 16, 200]))) + [draw.choice(BOUNDARY_INTS)]
        if kind == 6:
            deep = self.text()
            for _ in range(draw.randint(5, 8)):
                deep = draw.choice([[deep], {"d": deep}, (deep,)])
            return deep
        return {f"k{n}": draw.choice([n, -n, float(n)]) for n in range(draw.choice([15, 16, 64, 65]))}

    def foreign(self):
        """A value the pass turns into something else (or cannot store): the pass's to do."""
        draw = self.draw
        kind = draw.randrange(12)
        if kind == 0:
            return draw.choice([{1, 2}, frozenset({"a"}), set()])
        if kind == 1:
            return draw.choice([b"bytes", bytearray(b"ba"), memoryview(b"mv")])
        if kind == 2:
            return Opaque(draw.choice(["plain", self.credential_text()]))
        if kind == 3:
            return Text(draw.choice(["sub", self.credential_text()]))
        if kind == 4:
            return Number(draw.choice(BOUNDARY_INTS))
        if kind == 5:
            return Mapping(role="user", content=self.text())
        if kind == 6:
            return {draw.choice([(1, 2), None, True, 1.5]): self.text(), "k": 1}
        if kind == 7:
            return list(range(draw.choice([501, 2000])))
        if kind == 8:
            deep = self.text()
            for _ in range(draw.randint(11, 14)):
                deep = draw.choice([[deep], {"d": deep}])
            return deep
        if kind == 9:
            return draw.choice(PAST_64_BITS)
        if kind == 10:
            return draw.choice(["\ud800 lone", "x\udcff", "ok \ud83d"])
        return {f"k{n}": n for n in range(501)}

    def key(self):
        draw = self.draw
        roll = draw.random()
        if roll < 0.05:
            return draw.choice([1, 0, -1, 2**33])
        if roll < 0.05 + self.rate / 4:
            return self.credential_text()
        if roll < 0.05 + self.rate / 2:
            secret = self.token()
            self.planted.append(secret)
            return "k" * 1024 + secret  # cut at 1024 characters
        return draw.choice(["text", "type", "name", "stop", "n", "metric_key", "max_tokens", "é-clé", "Ω", ""])

    def secret_entry(self) -> tuple[str, object]:
        draw, secret = self.draw, self.token()
        name = draw.choice(["api_key", "password", "X-Auth-Token", "client_secret", "Authorization"])
        if draw.random() < 0.3:  # numbers under such a name are no credential
            return name, draw.choice([0, 12345, None, 1.5])
        if draw.random() < 0.3:
            self.planted.append(secret)
            return draw.choice(["headers", "extra_headers"]), {"X-Custom": secret, "Accept": "json"}
        self.planted.append(secret)
        return name, secret

    def mapping(self, depth: int) -> dict:
        draw = self.draw
        out = {}
        for _ in range(draw.randint(0, 5)):
            out[self.key()] = self.value(depth + 1)
        if draw.random() < self.rate:
            name, item = self.secret_entry()
            out[name] = item
        return out

    def value(self, depth: int = 0):
        draw = self.draw
        roll = draw.random()
        if roll < 0.3 or depth > 4:
            return self.text()
        if roll < 0.45:
            return draw.choice([0, 1, 7, 1000, -3, 0.5, 0.0, True, False, None])
        if roll < 0.55:
            return self.odd()
        if roll < 0.55 + self.rate:
            return self.foreign()
        if roll < 0.75:
            return [self.value(depth + 1) for _ in range(draw.randint(0, 4))]
        return self.mapping(depth)

    def message(self):
        draw = self.draw
        role, content = draw.choice(ROLES), self.text()
        kind = draw.randrange(8)
        if kind < 3:
            return {"role": role, "content": content}
        if kind == 3:
            return {"content": content, "role": role}
        if kind == 4:
            return {"role": role, "content": content, "name": "helper"}
        if kind == 5:
            return {
                "role": "user",
                "content": [
                    {"type": "text", "text": content},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            }
        if kind == 6:
            return {"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": content}}]}
        return self.value(1) if draw.random() < self.rate else {"role": role, "content": content}

    def options(self, learned: bool):
        draw = self.draw
        roll = draw.random()
        if roll < 0.1:
            return draw.choice([None, {}])
        options = {
            "temperature": draw.choice([0.0, 0.7, 1, -0.0]),
            "max_tokens": draw.choice([1000, 128, 2**16]),
        }
        if draw.random() < 0.4:
            options["api_base"] = draw.choice(["http://127.0.0.1:8000/v1", "https://api.example.com"])
        if draw.random() < 0.3:
            options[self.key()] = self.value(2)
        if draw.random() < self.rate:
            name, item = self.secret_entry()
            options[name] = item
        if learned and draw.random() < 0.2:  # a credential's name: always the pass's
            secret = "lm-key-" + self.token()
            self.learned.append(secret)
            options["api_key"] = secret
        if draw.random() < self.rate / 2:
            return Mapping(options)
        return options

    def usage(self):
        draw = self.draw
        kind = draw.randrange(6)
        if kind == 0:
            return None
        if kind == 1:
            return {}
        prompt, completion = draw.choice(BOUNDARY_INTS[:12]), draw.randint(0, 500)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if kind == 3:
            usage["prompt_tokens_details"] = {"cached_tokens": draw.choice([0, None, 5]), "audio_tokens": None}
        if kind == 4:
            usage["completion_tokens_details"] = None
            usage[draw.choice(["api_key", "eos_token", "reasoning_tokens"])] = draw.choice([1, None])
        if kind == 5 and draw.random() < self.rate:
            usage[self.key()] = self.value(3)
        return usage

    def kept(self, call_id: int, slot: bool = False):
        draw = self.draw
        messages = [self.message() for _ in range(draw.choice([0, 1, 1, 2, 2, 3, 5]))]
        prompt = None
        if not messages:
            messages, prompt = draw.choice([([], self.text()), (None, self.text()), (None, None)])
        elif draw.random() < 0.05:
            messages = tuple(messages)
        outputs_kind = draw.randrange(6)
        outputs = [
            [self.text()],
            [self.text(), self.text()],
            [{"text": self.text(), "reasoning_content": draw.choice([None, self.text()])}],
            [{"text": self.text(), "logprobs": None, "tool_calls": None}],
            self.value(1),
            None,
        ][outputs_kind]
        cost_details = draw.choice(
            [None, None, {}, {"input_cost": 0.001, "output_cost": draw.choice(FLOATS)}, self.mapping(1)]
        )
        failed = draw.random() < 0.1
        return kept(
            call_id,
            slot=slot,
            model=draw.choice(MODELS) if draw.random() < 0.9 else self.value(1),
            model_type=draw.choice(["chat", "responses", None]),
            messages=messages,
            prompt=prompt,
            lm_options=self.options(learned=True),
            call_options=self.options(learned=False),
            outputs=outputs,
            usage=self.usage(),
            dspy_cost=draw.choice([None, 0.0012, 0, 1e-9, draw.choice(FLOATS), draw.choice(BOUNDARY_INTS)]),
            cost_details=cost_details,
            error=(
                draw.choice([f"RateLimitError: {self.text()}", "ValueError: bad", self.value(1)]) if failed else None
            ),
            cache_hit=draw.choice([None, True, False, False, 1 if draw.random() < self.rate else True]),
            response_model=draw.choice([None, "gpt-4o-mini-2024-07-18", self.text()]),
        )


def features(value, found: Counter) -> Counter:
    """What a packed payload holds of the values most likely packed wrong."""
    if isinstance(value, str):
        found["text"] += 1
        found["UCS4 text"] += any(ord(char) > 0xFFFF for char in value)
        found["UCS2 text"] += any(0xFF < ord(char) <= 0xFFFF for char in value)
        found["str8+ text"] += len(value.encode()) >= 32
    elif isinstance(value, bool) or value is None:
        found["bool or None"] += 1
    elif isinstance(value, int):
        found["int past 16 bits"] += not -(2**15) <= value < 2**16
        found["int past 32 bits"] += not -(2**31) <= value < 2**32
        found["negative int"] += value < 0
    elif isinstance(value, float):
        found["-0.0"] += value == 0 and math.copysign(1.0, value) < 0
        found["nan or inf"] += not math.isfinite(value)
    elif isinstance(value, dict):
        found["map16"] += len(value) >= 16
        for key, item in value.items():
            found["int key"] += type(key) is int
            features(key, found)
            features(item, found)
    elif isinstance(value, list):
        found["array16"] += len(value) >= 16
        for item in value:
            features(item, found)
    return found


def pack_seed(seed: int, outcomes: Counter) -> None:
    """One seed's calls, packed in four batches by one packer: then some of them again (their
    texts join the memo) with new ones, then all of them."""
    draw = random.Random(seed)
    limit = draw.choice([MAX_PAYLOAD_TEXT, MAX_PAYLOAD_TEXT, MAX_PAYLOAD_TEXT, 300, 40])
    packer, ref = pair(limit)
    payloads = Payloads(seed)
    first = [(n, payloads.kept(n, slot=draw.random() < 0.5)) for n in range(8)]
    second = first[: draw.randint(0, 8)] + [(n, payloads.kept(n)) for n in range(8, 12)]
    for pending in (first, second, first + second[-4:], second):
        batch = check(packer, ref, pending, payloads.planted)
        outcomes["packed"] += len(batch.ids)
        outcomes["python"] += len(batch.python)
        for data in packed_of(batch).values():
            features(msgpack.unpackb(data, raw=False, strict_map_key=False), outcomes)
    outcomes["planted"] += len(payloads.planted)


SEEDS = int(os.environ.get("DSPY_TOP_PACK_SEEDS", "240"))  # more for a longer hunt


@needs_c
@pytest.mark.parametrize("first", range(0, SEEDS, 30))
def test_generated_payloads_are_packed_as_the_python_pass_stores_them(first):
    outcomes = Counter()
    for seed in range(first, first + 30):
        pack_seed(seed, outcomes)
    # The generator is no test unless both sides get payloads, and the packed ones hold the values
    # most likely to be packed wrong.
    assert outcomes["packed"] > 100 and outcomes["python"] > 50 and outcomes["planted"] > 20, outcomes
    for feature in ("UCS4 text", "UCS2 text", "str8+ text", "int past 32 bits", "negative int", "-0.0", "nan or inf"):
        assert outcomes[feature] > 0, (feature, outcomes)


def test_a_negative_zero_after_a_zero_is_stored_as_itself():
    """`-0.0 == 0.0` and both hash alike: the Python pass remembered an options map holding one and
    gave it back for the other (`payload.redacted`'s memo), where a fresh pass and the C path keep
    the sign."""
    first = kept(1, lm_options={"temperature": 0.0, "api_base": "http://h"})
    second = kept(2, lm_options={"temperature": -0.0, "api_base": "http://h"})
    redactor = Redactor({})
    assert math.copysign(1.0, payload.redacted(redactor, first, MAX_PAYLOAD_TEXT)["options"]["temperature"]) == 1.0
    assert math.copysign(1.0, payload.redacted(redactor, second, MAX_PAYLOAD_TEXT)["options"]["temperature"]) == -1.0
    if payload_pack.AVAILABLE:
        packer, ref = pair()
        assert check(packer, ref, [(1, first), (2, second)]).ids == [1, 2]


@needs_c
@pytest.mark.parametrize("options", [dict, Mapping], ids=["dict", "dict-subclass"])
def test_a_credential_given_to_a_call_the_python_pass_takes_is_learned_for_the_whole_batch(options):
    """The reference learns every credential the batch's calls were given before it redacts any.
    A call left to the Python pass (here by a set in its outputs, or an options map of its own
    kind) still gives its LM's key to the packer, which must not pack another call quoting it."""
    secret = "lm-key-0a1b2c3d4e5f6a7b8c9d"
    quoting = kept(1, messages=[{"role": "user", "content": f"my key is {secret}, use it"}])
    giving = kept(2, lm_options=options(api_key=secret, temperature=0.0), outputs=[{"a", "b"}])
    packer, ref = pair()
    batch = check(packer, ref, [(1, quoting), (2, giving)], planted=[secret])
    assert batch.python == [1, 2]
    # The same with the quoting call after the giving one, and in a batch of its own after it.
    packer, ref = pair()
    assert check(packer, ref, [(2, giving), (1, quoting)], planted=[secret]).python == [2, 1]
    assert check(packer, ref, [(1, quoting)], planted=[secret]).python == [1]


# --- values at msgpack's boundaries -----------------------------------------------------------------


@needs_c
def test_ints_at_msgpacks_boundaries_are_packed_in_the_smallest_form():
    """msgpack picks the smallest form of each int (fixint, uint8...int64): so must C, in values,
    map keys, call ids and options merged from both maps; ints past 64 bits are the pass's."""
    packer, ref = pair()
    pending = []
    for n, number in enumerate(BOUNDARY_INTS):
        pending.append(
            (
                number if n % 3 == 0 else 1000 + n,  # the call id itself, now and then
                kept(
                    number if n % 3 == 0 else 1000 + n,
                    lm_options={"max_tokens": number, number: "by number", "n": 1},
                    call_options={"n": number, "seed": number},
                    usage={"prompt_tokens": number, "completion_tokens": 0},
                    outputs=[number, [number], {number: number}],
                    dspy_cost=number,
                    cost_details={"n": number},
                ),
            )
        )
    batch = check(packer, ref, pending)
    assert batch.python == [] and len(batch.ids) == len(BOUNDARY_INTS)
    for n, number in enumerate(PAST_64_BITS):
        where = [
            {"usage": {"prompt_tokens": number}},
            {"outputs": [number]},
            {"lm_options": {number: 1}},
            {"dspy_cost": number},
        ]
        for at, parts in enumerate(where):
            call_id = 5000 + 10 * n + at
            assert check(packer, ref, [(call_id, kept(call_id, **parts))]).python == [call_id]
    assert check(packer, ref, [(2**64, kept(2**64))]).python == [2**64]


@needs_c
def test_floats_bools_and_none_are_packed_as_msgpack_packs_them():
    packer, ref = pair()
    pending = [
        (n, kept(n, lm_options={"temperature": number}, usage={"x": number}, outputs=[number], dspy_cost=number))
        for n, number in enumerate([*FLOATS, True, False, None])
    ]
    assert check(packer, ref, pending).python == []
    # NaN's sign survives too: -nan and nan differ in their bytes.
    assert b"\xcb\xff\xf8" in msgpack.packb(-math.nan) and b"\xcb\x7f\xf8" in msgpack.packb(math.nan)


@needs_c
def test_texts_at_msgpacks_header_boundaries():
    """A str's header counts its UTF-8 bytes (fixstr below 32, then str8, str16, str32), not its
    characters; the limit counts characters."""
    texts = [
        "a" * n
        for n in (0, 1, 31, 32, 255, 256, 65535, 65536, 70000)  # fixstr, str8, str16, str32
    ] + ["é" * 15, "é" * 16, "Ω" * 127, "Ω" * 128, "😀" * 7, "😀" * 8, "é" * 32767, "é" * 32768, "😀" * 16384]
    packer, ref = pair()
    pending = [
        (n, kept(n, messages=[{"role": "user", "content": text}], outputs=[text])) for n, text in enumerate(texts)
    ]
    assert check(packer, ref, pending).python == []
    # Past the limit the pass cuts the text: never packed as it is. At the limit exactly: packed.
    packer, ref = pair(limit=256)
    pending = [
        (n, kept(n, messages=[{"role": "user", "content": text}]))
        for n, text in enumerate(["a" * 256, "a" * 257, "é" * 256, "é" * 257, "😀" * 256, "😀" * 257])
    ]
    assert check(packer, ref, pending).python == [1, 3, 5]


@needs_c
def test_containers_at_msgpacks_and_the_passs_bounds():
    """fixmap/fixarray below 16 items, map16/array16 from 16; the pass cuts past 500 items and
    turns what is deeper than 12 into "…": those are its to do."""
    packer, ref = pair()
    sizes = (0, 1, 15, 16, 64, 65, 500)
    pending = []
    for n, size in enumerate(sizes):
        items = [f"item {i}" for i in range(size)]
        mapping = {f"key{i}": i for i in range(size)}
        pending.append((n, kept(n, outputs=items, usage=mapping, cost_details=mapping, lm_options=mapping)))
    pending.append((50, kept(50, messages=[{"role": "user", "content": str(n)} for n in range(500)])))
    assert check(packer, ref, pending).python == []
    big = 501
    for n, parts in enumerate(
        [
            {"outputs": list(range(big))},
            {"usage": {f"k{i}": i for i in range(big)}},
            {"lm_options": {f"k{i}": i for i in range(300)}, "call_options": {f"j{i}": i for i in range(300)}},
            {"messages": [{"role": "user", "content": "q"}] * big},
            {"outputs": list(range(65536))},
            {"usage": {f"k{i}": i for i in range(65536)}},
        ]
    ):
        assert check(packer, ref, [(100 + n, kept(100 + n, **parts))]).python == [100 + n]
    # A payload packing past 16 MiB is the pass's (the writer refuses it there); one under is packed.
    text = "p" * MAX_PAYLOAD_TEXT
    assert check(packer, ref, [(300, kept(300, outputs=[text] * 60))]).ids == [300]
    assert check(packer, ref, [(301, kept(301, outputs=[text] * 65))]).python == [301]
    # Nesting: outputs are at depth 2, so a list 11 deep in them reaches 12 and is packed; the
    # pass writes "…" for a 13th level: that is its to do.
    for depth, taken in ((10, "packed"), (11, "packed"), (12, "python"), (13, "python")):
        nested = "deep"
        for _ in range(depth):
            nested = [nested]
        batch = check(packer, ref, [(200 + depth, kept(200 + depth, outputs=nested))])
        assert (batch.ids if taken == "packed" else batch.python) == [200 + depth], depth


@needs_c
def test_values_the_pass_turns_into_something_else_are_left_to_it():
    """A tuple is packed as the list msgpack makes of it; sets, bytes, objects, subclasses of str,
    int and dict, keys that are neither str nor int, lone surrogates and a cache_hit that is no
    bool all become something else in the pass: it builds those payloads."""
    packer, ref = pair()
    assert check(packer, ref, [(1, kept(1, outputs=("a", (1, 2), ())))]).ids == [1]
    odd = [
        {"outputs": [{1, 2}]},
        {"outputs": [frozenset({"a"})]},
        {"outputs": [b"bytes"]},
        {"outputs": [bytearray(b"x")]},
        {"outputs": [Opaque("api_key=abcdefgh12345678")]},
        {"outputs": [Text("sub")]},
        {"model": Text("m")},
        {"usage": {"prompt_tokens": Number(3)}},
        {"usage": Mapping(prompt_tokens=3)},
        {"messages": [Mapping(role="user", content="hi")]},
        {"lm_options": Mapping(temperature=0.0)},
        {"lm_options": {(1, 2): "tuple key"}},
        {"usage": {None: 1}},
        {"usage": {True: 1}},
        {"usage": {1.5: 1}},
        {"outputs": ["lone \ud800 surrogate"]},
        {"messages": [{"role": "user", "content": "x\udcff"}]},
        {"lm_options": {"k\ud800": 1}},
        {"cache_hit": 1},
        {"cost_details": ["not", "a", "map"]},
        {"cost_details": 0},
        {"messages": []},
        {"messages": [], "prompt": "a prompt, which the pass makes a message of"},
        {"messages": None, "prompt": "a prompt"},
        {"messages": ({"role": "user", "content": "a tuple of messages"},)},
        {"lm_options": ["not a map"]},
        {"outputs": [object]},
    ]
    for n, parts in enumerate(odd, start=10):
        assert check(packer, ref, [(n, kept(n, **parts))]).python == [n], parts
    # A call id that is not an int (the ring's are): the walk refuses the batch before it reads a
    # slot or marks one, and the recording stores it all by the pass (JobRecording._pack_now).
    slot = kept(5, slot=True)
    with pytest.raises(TypeError):
        pack_pairs(packer, [(5, slot), ("id", kept("id"))])
    assert slot[TAKEN] is False


@needs_c
def test_messages_merged_options_errors_and_empty_parts_are_laid_out_as_the_pass_lays_them():
    packer, ref = pair()
    cases = [
        # role first whatever the dict's order; a third key makes it a plain map
        {"messages": [{"content": "c", "role": "user"}, {"role": "user", "content": "c", "name": "n"}]},
        {"messages": [{"role": "user", "content": None}, {"role": 1, "content": "c"}, {"rol": "u", "content": "c"}]},
        {"messages": [{"role": "user", "content": "x" * 300}, {"content": "x" * 9000, "role": "user"}]},
        # call options override the LM's in the LM's order, then their own keys
        {"lm_options": {"a": 1, "b": 2, 3: "three"}, "call_options": {"b": 20, "c": 30, 3: "drei"}},
        {"lm_options": None, "call_options": {"n": 1}},
        {"lm_options": {}, "call_options": None},
        {"lm_options": {"n": 1}, "call_options": {}},
        {"error": "ValueError: bad", "outputs": [{"a"}], "cache_hit": True},
        {"error": "", "usage": {"x": 1}},
        {"error": ["TimeoutError", 3]},
        {"cost_details": {}},
        {"cost_details": None},
        {"cost_details": {"input": 0.5, "output": None}},
        {"cache_hit": None},
        {"cache_hit": True},
        {"usage": None, "outputs": None, "dspy_cost": None, "response_model": None, "model": None},
        {"model": {"name": "m", "size": 7}, "model_type": ["a", 1], "response_model": 12},
        {"outputs": [{"role": "assistant", "content": "in outputs"}, {"content": "x", "role": "y"}]},
    ]
    pending = [(n, kept(n, **parts)) for n, parts in enumerate(cases)]
    assert check(packer, ref, pending).python == []  # a failed call's outputs are not in its payload


# --- the memo across batches --------------------------------------------------------------------

INSTRUCTIONS = (
    "Your input fields are:\n1. `question` (str): what the user asks\n2. `context` (list[str])\n"
    "Your output fields are:\n1. `reasoning` (str)\n2. `answer` (str)\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n"
)


def copy(text: str) -> str:
    """An equal str that is another object with no hash computed yet, as a job's new prompt is."""
    return "".join([text[:1], text[1:]]) if text else ""


def module_call(call_id: int, question: str, instructions: str = INSTRUCTIONS, **parts):
    return kept(
        call_id,
        messages=[
            {"role": "system", "content": copy(instructions)},
            {"role": "user", "content": copy(f"[[ ## question ## ]]\n{question}")},
        ],
        outputs=[copy(f"[[ ## answer ## ]]\n{question} answered")],
        **parts,
    )


def set_aside(packer: payload_pack.PayloadPacker, pending: list) -> list[str]:
    """The texts C sets aside for a look (not known to pass unchanged), this memo as it is."""
    return packer._walk([call_id for call_id, _ in pending], lend(dict(pending)))[2]


@needs_c
def test_texts_seen_again_are_remembered_and_the_bytes_stay_the_pass_s():
    packer, ref = pair()
    for round in range(5):  # each batch the module's calls again, with new questions and an old one
        pending = [(10 * round + n, module_call(10 * round + n, f"question {n + round}")) for n in range(4)]
        assert check(packer, ref, pending).ids == [call_id for call_id, _ in pending], round
        if round == 0:  # found unchanged once: waiting to be seen again, not yet looked up by C
            assert INSTRUCTIONS in packer.seen_once and not packer.clean
    assert INSTRUCTIONS in packer.clean  # seen in two looks
    assert packer.long_clean[payload_pack._payload_pack.fingerprint(INSTRUCTIONS)] == INSTRUCTIONS
    assert "[[ ## question ## ]]\nquestion 2" in packer.clean  # short: by the set alone
    # A new copy of the instructions (no hash yet) is found by its fingerprint: not set aside.
    later = [(100, module_call(100, "question 3"))]
    assert set_aside(packer, later) == []
    assert check(packer, ref, later).ids == [100]
    # A text of the same length, start, middle and end (so the same fingerprint) but another
    # inside, and a credential there: compared in full, set aside, and left to the pass.
    secret = "sk-proj-" + "q1w2e3r4t5y6u7i8o9p0"
    at = len(INSTRUCTIONS) // 4
    twin = INSTRUCTIONS[:at] + f" {secret} " + INSTRUCTIONS[at + len(secret) + 2 :]
    assert len(twin) == len(INSTRUCTIONS) and twin != INSTRUCTIONS
    assert payload_pack._payload_pack.fingerprint(twin) == payload_pack._payload_pack.fingerprint(INSTRUCTIONS)
    pending = [(101, module_call(101, "question 3", instructions=twin))]
    assert twin in set_aside(packer, pending)
    assert check(packer, ref, pending, planted=[secret]).python == [101]
    # And one that differs from a clean text only in the middle 16 bytes (a fingerprint part).
    middle = len(INSTRUCTIONS) // 2
    other = INSTRUCTIONS[:middle] + "#" + INSTRUCTIONS[middle + 1 :]
    assert other in set_aside(packer, [(102, module_call(102, "question 3", instructions=other))])


def lines_set_aside(packer: payload_pack.PayloadPacker, pending: list) -> list[str]:
    """The lines of the texts C sets aside that it does not know clean (know_clean_lines)."""
    return packer._walk([call_id for call_id, _ in pending], lend(dict(pending)))[4]


LINE_TEXTS = [
    "",
    "\n",
    "\n\n",
    "one line",
    "ends with a line end\n",
    "\nstarts with one",
    "[[ ## question ## ]]\nWhat is 2 + 2?\n\nRespond with the corresponding output fields.",
    "café au lait\nLatin-1, one byte a character\n[[ ## question ## ]]",
    "naïve\nRespond with the corresponding output fields.\nŁódź, two bytes a character",
    "emoji 🙂\n[[ ## question ## ]]\nfour bytes a character",
    "a long line " * 40 + "\n" + "another " * 30 + "\n[[ ## question ## ]]",
    "tabs\tand\rcarriage returns\r\nare not line ends\x0bhere\x0c\x1c\x85\u2028",
]


@needs_c
@pytest.mark.parametrize(
    "clean_lines", [[], ["[[ ## question ## ]]", "", "Respond with the corresponding output fields."]]
)
def test_the_lines_c_sets_aside_are_those_the_pass_would_look_at(clean_lines):
    """Of the texts set aside, C sets aside each line (as str.split("\\n") makes them) not in the
    redactor's clean lines, in texts of every character width: the lines the pass would look at."""
    packer, _ = pair()
    packer.redactor.clean_lines.update(clean_lines)
    pending = [
        (n, kept(n, messages=[{"role": "user", "content": text}], outputs=[f"answer {n}"]))
        for n, text in enumerate(LINE_TEXTS)
    ]
    walked, _, fresh, _, lines, _ = packer._walk([call_id for call_id, _ in pending], lend(dict(pending)))
    assert walked[0] == [call_id for call_id, _ in pending]
    expected = set("\n".join(set(fresh)).split("\n")) - packer.redactor.clean_lines
    assert set(lines) - packer.redactor.clean_lines == expected  # what the pass then looks at
    # No line known clean is made into a str in a one-byte text; in a wider one each line is.
    wide = {line for text in LINE_TEXTS if max(map(ord, text), default=0) > 255 for line in text.split("\n")}
    assert set(lines) & set(clean_lines) <= wide
    assert set(lines) >= wide - {"question"}
    # The same lines, whichever order the texts come in and however often.
    again = [
        (100 + n, kept(100 + n, messages=[{"role": "user", "content": text}])) for n, text in enumerate(LINE_TEXTS)
    ]
    assert set(lines_set_aside(packer, again[::-1] + [(200, kept(200, outputs=LINE_TEXTS))])) >= expected - {
        f"answer {n}" for n in range(len(LINE_TEXTS))
    }


@needs_c
def test_the_table_of_clean_lines_follows_the_redactors_set_and_an_older_one_only_sets_aside_more():
    """The lines C knows clean are those of the redactor's set: the lines that joined it are added
    at the next walk, and a set begun again is read whole; a table older than the set, or made
    from another, only sets aside more (a line known clean once stays so: the pattern's look
    depends on the line alone), and a line never known is always set aside."""
    from dspy_top.instrumentation import _payload_pack

    packer, _ = pair()
    redactor = packer.redactor
    text = "[[ ## question ## ]]\nq 1\n\nRespond with the corresponding output fields."
    pending = [(1, kept(1, messages=[{"role": "user", "content": text}], outputs=["x"]))]
    template = {"[[ ## question ## ]]", ""}
    assert set(lines_set_aside(packer, pending)) >= template | {"q 1", "x"}
    for _ in range(2):  # found clean twice: they join the set
        redactor._remember_lines(set(template))
    assert template <= redactor.clean_lines and redactor.new_clean_lines
    lines = set(lines_set_aside(packer, pending))
    assert lines.isdisjoint(template) and {"q 1", "Respond with the corresponding output fields."} <= lines
    assert redactor.new_clean_lines == []  # taken into the table
    redactor._lines._clean.items = {"q 1"}  # the set begun again (it was full): read whole
    lines = set(lines_set_aside(packer, pending))
    assert "q 1" not in lines and template <= lines
    _payload_pack.know_clean_lines({"Respond with the corresponding output fields."})  # another set's table
    lines = set(lines_set_aside(packer, pending))
    assert "q 1" in lines and template <= lines  # more set aside than the set says, never fewer
    with pytest.raises(TypeError):
        _payload_pack.know_clean_lines(["a list"])
    with pytest.raises(TypeError):
        _payload_pack.know_clean_lines(None)
    with pytest.raises(TypeError):
        _payload_pack.add_clean_lines("a str")
    _payload_pack.know_clean_lines({1, b"bytes", Text("a str's subclass"), "wide ✓"})  # none kept, no error
    _payload_pack.add_clean_lines([2, "wide ✓", "q 1", "q 1"])  # a line twice: kept once
    assert "q 1" not in lines_set_aside(packer, pending)


@needs_c
def test_lines_joining_the_set_over_many_batches_reach_the_table_without_reading_it_whole():
    """An optimizer's job sees its devset's lines again and again: they join the clean set a few
    each batch, and each batch the table takes only those (the whole set read each batch cost a
    batch the whole set's size)."""
    packer, _ = pair()
    redactor = packer.redactor
    rows = [f"[[ ## passage {n} ## ]] some retrieved text number {n}" for n in range(3000)]
    for start in range(0, 3000, 100):
        batch = rows[start : start + 100]
        for _ in range(2):
            redactor._remember_lines(set(batch))
        text = "\n".join(rows[: start + 100])
        pending = [(start + 1, kept(start + 1, messages=[{"role": "user", "content": text}]))]
        assert not set(lines_set_aside(packer, pending)) & set(rows)  # every passage's line known
    assert packer._lines_known is redactor.clean_lines  # never begun again: the table grew with it
    # Lines no walk takes are kept for it up to a bound; past it, the next walk reads the set whole.
    many = [f"l{n}" for n in range(redact.NEW_LINES_KEPT + 2000)]
    for start in range(0, len(many), 1000):
        for _ in range(2):
            redactor._remember_lines(set(many[start : start + 1000]))
    assert redactor.new_clean_lines is None
    text = "\n".join(many[-50:])
    walked = lines_set_aside(packer, [(9999, kept(9999, messages=[{"role": "user", "content": text}]))])
    assert not set(walked) & set(many)
    assert redactor.new_clean_lines == []


@needs_c
def test_a_credential_learned_inside_a_line_known_clean_is_still_redacted():
    """A line the pattern leaves as it is (known clean, so C never sets it aside) can hold a
    credential learned later: the pass still finds it, in the whole texts."""
    secret = "acct-7d6c5b4a3f2e1d0c"
    line = f"Our account is {secret} and it is fine"
    packer, ref = pair()
    for round in range(3):  # the line found clean twice: known clean, and in C's table
        texts = [f"{line}\nquestion {round}-{n}\n" + "filler words " * 30 for n in range(2)]
        pending = [
            (10 * round + n, kept(10 * round + n, messages=[{"role": "user", "content": text}]))
            for n, text in enumerate(texts)
        ]
        assert check(packer, ref, pending).ids == [call_id for call_id, _ in pending]
    assert line in packer.redactor.clean_lines
    pending = [(100, kept(100, messages=[{"role": "user", "content": f"{line}\nquestion 9\n" + "filler words " * 30}]))]
    assert line not in lines_set_aside(packer, pending)
    packer.redactor.learn([secret])
    ref.learn([secret])
    batch = check(packer, ref, pending, planted=[secret])
    assert batch.python == [100] and secret.encode() not in batch.data


@needs_c
@pytest.mark.parametrize("how", ["learn", "environment", "own-options", "another-call's-options"])
def test_a_credential_known_half_way_is_never_packed_from_the_memo(how):
    """A text found clean (and remembered) before a credential inside it was known: after that,
    the memo is forgotten and the text is the pass's, however the credential became known: the
    redactor told (`learn`), an environment variable read again (`refresh`), the call's own LM
    options, or those of another call in the batch."""
    secret = "tok-" + "9z8y7x6w5v4u3t2s1r0q"
    instructions = INSTRUCTIONS + f"Use the account {secret} for lookups.\n"
    environ = dict(ENV)
    packer, ref = pair(environ=environ)
    ref_environ = dict(ENV)
    ref = Redactor(ref_environ)
    for round in range(3):
        pending = [(10 * round + n, module_call(10 * round + n, f"q{n}", instructions)) for n in range(3)]
        assert check(packer, ref, pending).ids == [call_id for call_id, _ in pending]
    assert instructions in packer.clean and packer.long_clean
    assert packer.redactor.text(instructions) == instructions  # nothing known yet: unchanged
    options = {"temperature": 0.0}
    if how == "learn":
        packer.redactor.learn([secret])
        ref.learn([secret])
    elif how == "environment":
        environ["LOOKUP_API_KEY"] = secret
        ref_environ["LOOKUP_API_KEY"] = secret
        packer.redactor.refresh()
        ref.refresh()
    elif how == "own-options":
        options = {"temperature": 0.0, "api_key": secret}
    pending = [(100 + n, module_call(100 + n, f"q{n}", instructions, lm_options=options)) for n in range(3)]
    if how == "another-call's-options":
        pending.append((200, kept(200, lm_options={"api_key": secret}, messages=[{"role": "user", "content": "hi"}])))
    batch = check(packer, ref, pending, planted=[secret])
    assert batch.python[:3] == [100, 101, 102]
    assert instructions not in packer.clean and secret.encode() not in batch.data
    # The next batch too, with no credential in sight.
    pending = [(300, module_call(300, "q", instructions))]
    assert check(packer, ref, pending, planted=[secret]).python == [300]


@needs_c
def test_a_map_key_found_plain_is_looked_at_again_once_a_credential_in_it_is_known():
    secret = "acct-5f4e3d2c1b0a"
    key = f"customer_{secret}"
    packer, ref = pair()
    call = kept(1, usage={key: 3, "prompt_tokens": 1}, lm_options={key: "x", "temperature": 0.0})
    assert check(packer, ref, [(1, call)]).ids == [1]
    assert key in packer.keys
    packer.redactor.learn([secret])
    ref.learn([secret])
    assert check(packer, ref, [(2, kept(2, usage={key: 3}))], planted=[secret]).python == [2]
    # Credential names and headers maps are never plain keys, whatever their values: sorted as the
    # pass sorts them, then packed in C by its rules (check compares the bytes with the pass's).
    for n, options in enumerate(
        [
            {"api_key": 5},
            {"password": None},
            {"X-Auth-Token": 1.5},
            {"api_key": "sk-not-a-shape"},
            {"headers": {}},
            {"extra_headers": 3},
            {"extra_headers": {"Authorization": "Bearer abcdefghijklmnop", "X-Title": "mine"}},
        ]
    ):
        assert check(packer, ref, [(10 + n, kept(10 + n, lm_options=options))]).ids == [10 + n]
        (name,) = options
        assert name in (packer.header_keys if name.endswith("headers") else packer.secret_keys)
        assert name not in packer.keys


@needs_c
def test_without_learning_the_packer_packs_what_the_pass_leaves():
    """A server made without `secrets_of` learns nothing from the calls' options: neither does
    its pass, and the bytes are still the pass's."""
    redactor = Redactor(ENV)
    packer = payload_pack.PayloadPacker(redactor, MAX_PAYLOAD_TEXT, None)
    with pytest.raises(ValueError):
        payload_pack.PayloadPacker(redactor, MAX_PAYLOAD_TEXT, lambda kept: [])
    ref = Redactor(ENV)
    call = kept(
        1, lm_options={"api_key": "given-key-1234567"}, messages=[{"role": "user", "content": "given-key-1234567"}]
    )
    batch = pack_pairs(packer, [(1, call)])
    # Its options hold a credential's name, redacted in C as the pass does; the key in the message
    # stays, since nothing learned it (as in the pass without secrets_of).
    assert batch.ids == [1] and bytes(batch.data) == msgpack.packb([1, payload.redacted(ref, call, MAX_PAYLOAD_TEXT)])
    assert b"given-key-1234567" in bytes(batch.data) and b"[redacted]" in bytes(batch.data)
    call = kept(2, lm_options={"n": 1}, messages=[{"role": "user", "content": "given-key-1234567"}])
    expected = msgpack.packb([2, payload.redacted(ref, call, MAX_PAYLOAD_TEXT)])
    batch = pack_pairs(packer, [(2, call)])
    assert batch.ids == [2] and bytes(batch.data) == expected


def test_without_the_compiled_part_every_payload_is_the_python_pass_s(monkeypatch):
    """No compiled part: the server packs nothing and reads no slot (the recording takes every
    payload by the Python pass, from copies, `payloads_of`, which marks them taken)."""
    monkeypatch.setattr(payload_pack, "_payload_pack", None)
    monkeypatch.setattr(payload_pack, "AVAILABLE", False)
    recorder = Recorder(history_capacity=4, payload_capacity=8)
    ids = [ring_call(recorder, n) for n in range(3)]
    recorder.fold()
    publisher = Publisher(recorder, 2**20, lambda: False)
    requests = ViewerRequests(recorder, publisher, payload.materialize, payload.secrets_of, None, lambda viewer: None)
    walked = []
    assert requests.packed_payloads(ids, lambda call_ids, walk: walked.append(call_ids)) is None
    assert walked == []
    with pytest.raises(RuntimeError):
        pair()[0].pack(ids, recorder.take_payloads)
    assert not any(slot[TAKEN] for slot in recorder.payload_ring.payloads.values())


# --- the payload ring's own slots ----------------------------------------------------------------


@needs_c
def test_a_ring_slot_given_to_a_later_call_is_gone_not_packed():
    """The recording packs straight from the ring's slots (lists): a slot the ring gave to a later
    call since (its id is another), or emptied, holds nothing of this call any more."""
    packer, ref = pair()
    slots = {n: kept(n, slot=True, messages=[{"role": "user", "content": f"question {n}"}]) for n in range(6)}
    slots[1][:] = kept(7, slot=True, messages=[{"role": "user", "content": "a later call's text"}])
    slots[3][:] = (None,) * (len(KEPT_FIELDS) + 1)  # let go of (PayloadRing's spare slot)
    slots[4][0] = 4.0  # equal, but not an int: no call's id
    pending = list(slots.items())
    batch = check(packer, ref, pending)
    assert batch.ids == [0, 2, 5] and batch.gone == 3 and batch.python == []
    assert b"a later call's text" not in batch.data
    # gone, left to the pass and packed, in one batch: each counted once, in its place
    slots[2][7] = [{1, 2}]  # its outputs now hold a set: the pass's
    batch = check(packer, ref, pending)
    assert (batch.ids, batch.python, batch.gone) == ([0, 5], [2], 3)


def ring_call(recorder: Recorder, n: int, text: str = "question", **parts) -> int:
    """A finished call kept in the recorder's payload ring (its module's instructions, a question)."""
    record = recorder.begin("qa.predict", "Predict", ("qa.predict",), "openai/gpt-4o-mini")
    record.messages = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": f"{text} {n}"},
    ]
    record.prompt, record.lm_options, record.call_options = None, {"temperature": 0.0, "max_tokens": 100}, {}
    record.outputs, record.usage = [f"answer {n}"], {"prompt_tokens": 12, "completion_tokens": 3}
    record.cost_details, record.model_type, record.dspy_cost = None, "chat", 1e-05
    for name, value in parts.items():
        setattr(record, name, value)
    recorder.finish(record, prompt_tokens=12, completion_tokens=3, keep=True, response_model="gpt-4o-mini")
    return record.id


@needs_c
def test_a_recorders_ring_slots_are_packed_as_the_pass_stores_their_calls():
    """A real Recorder and its PayloadRing: the slots `take_payloads` walks are packed as the pass
    stores the same calls (`payloads_of`, copies), until the ring comes round and gives them to
    later calls, which the batch counts as gone."""
    recorder = Recorder(history_capacity=8)
    ids = [ring_call(recorder, n, " api_key=abcdefgh12345678" if n == 3 else "question") for n in range(8)]
    copies = dict(zip(ids, recorder.payloads_of(ids)))
    packer, _ = pair()
    batch = packer.pack(ids, recorder.take_payloads)  # folds first: nothing pending is missed
    assert batch.ids == ids[:3] + ids[4:] and batch.python == [ids[3]] and batch.gone == 0
    assert b"abcdefgh12345678" not in batch.data
    assert packed_of(batch) == {
        call_id: msgpack.packb([call_id, payload.redacted(Redactor(ENV), copies[call_id], MAX_PAYLOAD_TEXT)])
        for call_id in batch.ids
    }
    # Four more calls: the ring reuses the four oldest slots for them.
    later = [ring_call(recorder, n, "later") for n in range(4)]
    batch = packer.pack(ids + later, recorder.take_payloads)
    assert batch.gone == 4 and batch.ids == ids[4:] + later and batch.python == []
    assert b"later 0" not in packed_of(batch)[ids[4]]


@needs_c
def test_the_walk_marks_taken_exactly_the_ring_slots_it_packed():
    """The C walk marks taken (PayloadRing's TAKEN) each slot it packed, under the recorder's lock;
    not one left to the Python pass (marked when that pass copies it, so the ring cannot reuse it
    before), one it does not hold, nor one given to a later call. Past the history's count the
    ring then reuses the slots taken first."""
    recorder = Recorder(history_capacity=4, payload_capacity=8)
    ids = [ring_call(recorder, n) for n in range(2)]
    ids.append(ring_call(recorder, 2, outputs=[{1, 2}]))  # a set: the Python pass's
    ids += [ring_call(recorder, n) for n in range(3, 6)]
    ring = recorder.payload_ring
    packer, ref = pair()
    batch = packer.pack(ids[:4] + [10_000], recorder.take_payloads)  # 10_000: never kept
    assert (batch.ids, batch.python, batch.gone) == ([ids[0], ids[1], ids[3]], [ids[2]], 1)
    assert [ring.payloads[call_id][TAKEN] for call_id in ids] == [True, True, False, True, False, False]
    assert len(ring.ring) == 6  # a recording's ring holds past the history's count what it has not taken
    (copy,) = recorder.payloads_of([ids[2]], take=True)  # the Python pass's copy: taken then
    assert copy.id == ids[2] and ring.payloads[ids[2]][TAKEN] is True
    stale = ring.payloads[ids[0]]
    newer = ring_call(recorder, 6, "later")
    recorder.fold()
    # The oldest taken slot went to the newer call, and one more taken slot was let go.
    assert stale[0] == newer and stale[TAKEN] is False
    assert list(ring.payloads) == ids[2:] + [newer]
    # The old slot, read again for its first call (as a walk begun before would hold it): gone, its
    # new call's mark left as it is; the ring's map read again: the first two calls gone.
    batch = check(packer, ref, [(ids[0], stale)])
    assert batch.gone == 1 and stale[TAKEN] is False
    batch = packer.pack(ids + [newer], recorder.take_payloads)
    assert batch.gone == 2 and batch.ids == ids[3:] + [newer] and batch.python == [ids[2]]
    assert all(ring.payloads[call_id][TAKEN] for call_id in ids[3:] + [newer])


# --- bad arguments ---------------------------------------------------------------------------------


@needs_c
def test_bad_arguments_raise_type_error_and_leave_the_packer_working():
    from dspy_top.instrumentation import _payload_pack

    def args(**changed):
        given = dict(
            call_ids=[1],
            slots={1: kept(1)},
            taken=TAKEN,
            limit=MAX_PAYLOAD_TEXT,
            clean=set(),
            long_clean={},
            keys=set(),
            secret_keys=set(),
            header_keys=set(),
            fresh=[],
            fresh_keys=[],
            fresh_lines=[],
            out=bytearray(),
            options=[],
        )
        given.update(changed)
        return list(given.values())

    given = args()  # the arguments as they should be
    assert _payload_pack.pack_slots(*given)[:4] == ([1], [len(given[12])], [], 0) and given[12]
    bad = [
        (),
        args()[:13],
        args() + [None],
        args(call_ids=(1,)),
        args(call_ids=None),
        args(call_ids=[1.0]),  # not an int: a key whose lookup could run Python code
        args(call_ids=["1"]),
        args(call_ids=[True]),
        args(slots=[(1, kept(1))]),
        args(slots=None),
        args(taken="last"),
        args(taken=None),
        args(limit="many"),
        args(limit=None),
        args(clean=[]),
        args(clean={}),
        args(long_clean=set()),
        args(keys=None),
        args(secret_keys=[]),
        args(header_keys={}),
        args(fresh=()),
        args(fresh_keys=set()),
        args(fresh_lines=None),
        args(out=b""),
        args(out=[]),
        args(options={}),
        args(slots={1: kept(1)[:13]}),  # a kept tuple too short
        args(slots={1: list(kept(1))[:5]}),
        args(slots={1: {"id": 1}}),
        args(slots={1: None}),
        args(call_ids=[1, 2], slots={1: kept(1), 2: ()}),  # the first packed, then the bad one
    ]
    for given in bad:
        with pytest.raises(TypeError):
            _payload_pack.pack_slots(*given)
    with pytest.raises(TypeError):
        _payload_pack.pack_slots(*args(), limit=1)
    with pytest.raises(ValueError):
        _payload_pack.pack_slots(*args(taken=-1))
    with pytest.raises(TypeError):
        _payload_pack.fingerprint(b"bytes")
    with pytest.raises(TypeError):
        _payload_pack.fingerprint(Text("a str's subclass"))
    with pytest.raises(TypeError):
        pack_pairs(payload_pack.PayloadPacker(Redactor(ENV), MAX_PAYLOAD_TEXT, payload.secrets_of), [(1, kept(1)[:3])])
    assert packed_of(pack_pairs(payload_pack.PayloadPacker(Redactor(ENV), 100, None), [])) == {}
    # A bytearray with a view of it cannot grow: an error, not a crash.
    out = bytearray()
    view = memoryview(out)
    with pytest.raises(BufferError):
        _payload_pack.pack_slots(*args(out=out))
    view.release()
    # And after every failure the next batch packs as ever (its buffer was given back).
    packer, ref = pair()
    big = [(n, module_call(n, "q" * 5000 * n)) for n in range(1, 40)]
    assert check(packer, ref, big).python == []


@needs_c
def test_equal_strings_have_equal_fingerprints():
    from dspy_top.instrumentation._payload_pack import fingerprint

    for text in ["", "a", "Ω", "😀", "é" * 200, INSTRUCTIONS, "x" * 10_000 + "😀", "\ud800" * 300]:
        assert fingerprint(text) == fingerprint(copy(text)) == fingerprint("".join(list(text)))
        assert type(fingerprint(text)) is int and 0 <= fingerprint(text) < 2**64
    assert fingerprint("a" * 200) != fingerprint("a" * 201)
    assert fingerprint("é" * 200) != fingerprint("e" * 200)


# --- texts that only together would change ---------------------------------------------------------


@needs_c
@pytest.mark.parametrize(
    "texts",
    [
        # a PEM private key begun in one text, ended in another (of one call, and of two)
        ["Here:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1x2y3z", "MIIEq9w8e7\n-----END RSA PRIVATE KEY-----"],
        ["-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----\nthanks"],
        ["line\n-----BEGIN OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"],
        # pieces of a credential's shape, split where a join by "\n" falls
        ["Authorization:", "Bearer"],
        ["Authorization: Bearer", "abcd1234efgh5678"],
        ["api_key=", "s3cr3tv4lu3x"],
        ["api_key", "=s3cr3tv4lu3x"],
        ["https://user:", "hunter22@example.com"],
        ["sk-proj-abcdefghij", "klmnop1234567890"],
        ["--api-key", "sk-abcdefghijklmnopqrstu1"],
        ["-----BEGIN RSA PRIVATE", " KEY-----\nabc"],
        ["token", ": abcdefgh12"],
        ["eyJhbGciOiJIUzI1NiJ9", "eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
    ],
)
def test_texts_that_would_form_a_credential_only_joined_are_as_the_pass_leaves_each(texts):
    """C's texts are looked at joined by line ends, and each alone only if the join changes: what
    the pass does to each text alone decides, in one call's messages or across calls."""
    packer, ref = pair()
    one_call = kept(1, messages=[{"role": "user", "content": text} for text in texts])
    apart = [(10 + n, kept(10 + n, messages=[{"role": "user", "content": text}])) for n, text in enumerate(texts)]
    for pending in ([(1, one_call)], apart, [(1, one_call), *apart]):
        expected = reference(Redactor(ENV), pending, MAX_PAYLOAD_TEXT)
        batch = check(packer, ref, pending)
        changed = {call_id for call_id, data in expected.items() if b"[redacted]" in data}
        assert set(batch.python) == changed  # the others are packed
    # the texts are remembered (or not) each on its own; in a fresh order, the same again
    for pending in ([*reversed(apart), (1, one_call)], apart):
        check(packer, ref, pending)


@needs_c
def test_a_learned_credential_that_spans_a_line_end_is_found_only_where_it_is_whole():
    secret = "first-half-1234\nsecond-half-5678"
    packer, ref = pair()
    packer.redactor.learn([secret])
    ref.learn([secret])
    halves = [
        (1, kept(1, messages=[{"role": "user", "content": "x first-half-1234"}])),
        (2, kept(2, messages=[{"role": "user", "content": "second-half-5678 y"}])),
    ]
    whole = [(3, kept(3, outputs=[f"it is {secret} here"]))]
    assert check(packer, ref, halves + whole, planted=[secret]).python == [3]
    assert check(packer, ref, halves, planted=[secret]).ids == [1, 2]


# --- a job's call rows, packed in C (pack_plain) -------------------------------------------------


def plain_values(rng: random.Random, depth: int = 0):
    """Plain data of every kind the recorder's rows hold, at msgpack's boundaries, and some it cannot."""
    kind = rng.randrange(10 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(
            [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1, 2**64, 2**70]
            + [-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63), -(2**63) - 1]
        )
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 1e300, math.inf, -math.inf, math.nan, rng.random()])
    if kind == 3:
        return rng.choice(["", "a" * 31, "a" * 32, "a" * 255, "a" * 256, "é" * 40000, "日本", "\ud800", "x" * 65536])
    if kind == 4:
        return f"Solver.predict.{rng.randrange(1000)}"
    if kind == 5:
        return rng.choice([b"bytes", 1 + 2j, {1, 2}, object()])  # not plain: msgpack and its fallback decide
    if kind in (6, 7):
        items = [plain_values(rng, depth + 1) for _ in range(rng.choice([0, 1, 15, 16, 21]))]
        return items if kind == 6 else tuple(items)
    if kind == 8:
        return {f"k{i}": plain_values(rng, depth + 1) for i in range(rng.choice([0, 3, 15, 16, 17]))}
    return {1: "an int key"}  # not a str key: msgpack decides


@needs_c
def test_plain_data_is_packed_as_msgpack_packs_it_or_left_to_msgpack():
    rng = random.Random(16)
    packed = left = 0
    for _ in range(20_000):
        value = plain_values(rng)
        ours = payload_pack.pack_plain(value)
        if ours is None:
            left += 1
            continue
        assert ours == msgpack.packb(value, use_bin_type=True), value
        packed += 1
    assert packed > 10_000 and left > 1_000  # both ways taken, msgpack's edge cases among the packed


@needs_c
def test_a_recorders_calls_message_is_packed_as_the_writer_would_pack_it():
    recorder = Recorder()
    publisher = Publisher(recorder, 2**20, lambda: False)
    tapped: list[dict] = []
    publisher.taps.append(tapped.append)
    for number in range(50):
        record = recorder.begin("Solver.predict", "Predict", ("Solver",), "openai/gpt-4o-mini", scopes=("eval-1",))
        error = RuntimeError("rate limited") if number % 7 == 0 else None
        recorder.finish(record, prompt_tokens=100 + number, completion_tokens=7, cost=1e-5 * number, error=error)
    publisher.publish_calls([event for event in recorder.drain() if type(event) is tuple])
    (message,) = tapped
    assert len(message["rows"]) == 50
    assert payload_pack.pack_plain(message) == msgpack.packb(message, use_bin_type=True)


def test_without_the_compiled_part_msgpack_packs_the_rows(monkeypatch):
    monkeypatch.setattr(payload_pack, "_payload_pack", None)
    assert payload_pack.pack_plain({"t": "calls", "rows": []}) is None
