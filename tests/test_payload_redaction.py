"""A recording's payloads are redacted by `payload.redacted`, which walks a kept call without building
its payload first: it must give exactly what the generic pass gives a viewer's `payload` reply
(`Redactor.value({"payload": materialize(kept)})`), credentials, odd values and bounds included."""

from __future__ import annotations

import random

from dspy_top.instrumentation.payload import materialize, redacted, secrets_of
from dspy_top.instrumentation.payload_ring import KEPT_FIELDS, KeptCall
from dspy_top.instrumentation.redact import REDACTED, Redactor

LIMIT = 256 * 1024
KEY = "sk-proj-abcdefghijklmnop1234567890"


def kept(**parts) -> KeptCall:
    base = dict(
        id=1,
        model="openai/gpt-4o-mini",
        model_type="chat",
        messages=None,
        prompt=None,
        lm_options=None,
        call_options=None,
        outputs=None,
        usage=None,
        dspy_cost=None,
        cost_details=None,
        error=None,
        cache_hit=False,
        response_model=None,
    )
    base.update(parts)
    return KeptCall(tuple(base[name] for name in KEPT_FIELDS) + (0,))


def shapes():
    """Payloads of every shape a kept call takes, with credentials in names, headers, text and options."""
    draw = random.Random(7)
    texts = [
        "plain text",
        f"my key is {KEY}",
        "Authorization: Bearer abcdefgh12345678",
        "https://user:hunter22@example.com/path",
        "--api-key sk-abcdefghijklmnopqrstu1",
        "",
        "ünïcödé \ud800",
    ]
    for number in range(200):
        text = draw.choice(texts)
        yield kept(
            id=number,
            messages=draw.choice(
                [
                    [{"role": "system", "content": "You are."}, {"role": "user", "content": text}],
                    [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": text},
                                {"type": "image_url", "image_url": {"url": text}},
                            ],
                        }
                    ],
                    [],
                    None,
                    [{"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": text}}]}],
                    [{"role": "user", "content": text}] * 600,
                ]
            ),
            prompt=draw.choice([None, text]),
            lm_options=draw.choice(
                [
                    None,
                    {"temperature": 0.0, "max_tokens": 100},
                    {"api_key": KEY, "api_base": text},
                    {"headers": {"Authorization": "Bearer x", "X-Key": "y"}, "extra_body": {"a": [1]}},
                ]
            ),
            call_options=draw.choice([None, {}, {"rollout_id": 3}, {"password": text}, {"n": 2, "stop": ["\n"]}]),
            outputs=draw.choice(
                [None, [text], ["a", {"text": text, "tool_calls": None}], "odd", 3, [f"{KEY} " + "x" * 300_000]]
            ),  # past the text limit: cut
            usage=draw.choice(
                [
                    None,
                    {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None},
                    {"prompt_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 1}},
                ]
            ),
            dspy_cost=draw.choice([None, 0.001, 0]),
            cost_details=draw.choice([None, {}, {"kind": "unknown", "reason": text}]),
            error=draw.choice([None, None, None, f"RateLimitError: {text}", {"type": "E", "message": text}]),
            cache_hit=draw.choice([False, True, None, 1]),
            response_model=draw.choice([None, "gpt-4o-mini-2024", text, object]),
        )


def test_a_recordings_payloads_are_redacted_exactly_as_a_viewers():
    for call in shapes():
        slow, fast = Redactor({"OPENAI_API_KEY": KEY}), Redactor({"OPENAI_API_KEY": KEY})
        slow.learn(secrets_of(call))
        fast.learn(secrets_of(call))
        expected = slow.value({"payload": materialize(call)}, LIMIT)["payload"]
        got = redacted(fast, call, LIMIT)
        assert got == expected and list(got) == list(expected), call
        assert KEY not in repr(got) and "hunter22" not in repr(got)


def test_a_kept_call_reads_by_name():
    call = kept(id=9, model="m", lm_options={"api_key": KEY})
    assert (call.id, call.model, call.lm_options) == (9, "m", {"api_key": KEY})
    assert redacted(Redactor({}), call, LIMIT)["options"] == {"api_key": REDACTED}


def test_one_redactor_over_many_calls_gives_each_what_a_fresh_pass_gives():
    """The recording keeps one redactor for the whole job and remembers the parts it redacted
    (a module's messages, an LM's options): a part seen again, a credential learned half way
    and numbers that compare equal but differ in type (1, 1.0, True) all come out as a fresh
    pass over that call alone gives them."""
    warm = Redactor({"OPENAI_API_KEY": KEY})
    calls = list(shapes())
    late = "late-credential-0123456789"
    extra = [
        kept(
            id=1000 + number,
            lm_options={"n": n, "api_base": "http://h"},
            usage={"prompt_tokens": n},
            messages=[{"role": "user", "content": late}],
        )
        for number, n in enumerate([1, 1.0, True, 1, True])
    ]
    learned_at = len(calls) + 2
    learned: list[str] = []  # what the job's redactor knows by then (a fresh one is told all of it)
    for number, call in enumerate(calls + calls[:50] + extra):
        if number == learned_at:
            learned.append(late)
        learned.extend(secrets_of(call))
        warm.learn(learned)
        fresh = Redactor({"OPENAI_API_KEY": KEY})
        fresh.learn(learned)
        expected = fresh.value({"payload": materialize(call)}, LIMIT)["payload"]
        got = redacted(warm, call, LIMIT)
        assert got == expected and list(got) == list(expected), call
        assert repr(got) == repr(expected), call  # 1, 1.0 and True are told apart
        if number >= learned_at:
            assert late not in repr(got)


def test_options_that_changed_are_looked_at_again():
    """An LM's options dict is the same object on every call: a key put in it later is still learned."""
    options = {"temperature": 0.0}
    first = kept(id=1, lm_options=options)
    assert secrets_of(first) == []
    options["api_key"] = "sk-later-abcdefghijklmnop123"
    assert secrets_of(kept(id=2, lm_options=options)) == ["sk-later-abcdefghijklmnop123"]


def test_the_parts_a_redactor_remembers_stay_bounded():
    """Usage maps whose names change with every call (a provider's odd counters) are remembered
    like any other part: up to a bound, then begun again."""
    from dspy_top.instrumentation import payload

    redactor = Redactor({})
    for number in range(3 * payload._PARTS_KEPT):
        redacted(redactor, kept(id=number, usage={f"tokens_{number}": number}), LIMIT)
        assert len(redactor.parts) <= payload._PARTS_KEPT


def test_a_remembered_part_is_never_taken_for_another_kind_of_part():
    """The parts a redactor remembers are of three kinds (a message, a map of plain values, the names
    of a map of numbers), kept in one dict: a map of numbers whose names are a limit, a role and a
    message's text must not find that message's verdict (it would pass a credential in a name)."""
    content = "word " * 60 + "Authorization: Bearer " + KEY
    redactor = Redactor({})
    first = redacted(redactor, kept(id=1, messages=[{"role": "user", "content": content}]), LIMIT)
    assert KEY not in repr(first)
    usage = {LIMIT: 1, "user": 2, content: 3}
    call = kept(id=2, messages=[{"role": "user", "content": "hi"}], usage=usage)
    got = redacted(redactor, call, LIMIT)
    assert got == Redactor({}).value({"payload": materialize(call)}, LIMIT)["payload"]
    assert KEY not in repr(got)
    # and the other way: the names remembered first, then a message shaped like them
    redactor = Redactor({})
    redacted(redactor, kept(id=3, usage={LIMIT: 1, "user": 2, content: 3}), LIMIT)
    message = kept(id=4, messages=[{"role": "user", "content": content}])
    got = redacted(redactor, message, LIMIT)
    assert got == Redactor({}).value({"payload": materialize(message)}, LIMIT)["payload"]
    assert KEY not in repr(got)
