"""Turn one chat-completions request into the simulated LM's reply and its token bill."""

from dataclasses import dataclass

from dspy_top.simlm.answers import compose, plain_reply
from dspy_top.simlm.draws import request_digest
from dspy_top.simlm.prompt import read_prompt
from dspy_top.simlm.rendering import render
from dspy_top.simlm.tokens import completion_tokens, prompt_tokens


@dataclass(frozen=True)
class Completion:
    """What the sim answers: one text per choice, with the usage a provider would bill."""

    model: str
    digest: str
    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int


def _reply(body: dict, digest: str) -> str:
    view = read_prompt(body)
    if view.style == "plain" or (not view.output_fields and view.style != "json"):
        return plain_reply(view, digest)
    values = compose(view, digest)
    if not values:
        # A bare json_object request with no DSPy fields to fill.
        values = {"answer": plain_reply(view, digest)}
    return render(view.style, values)


def _token_limit(body: dict) -> int | None:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


def complete(body: dict) -> Completion:
    digest = request_digest(body)
    count = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 1 else 1
    limit = _token_limit(body)
    texts, reasons, billed = [], [], 0
    for index in range(count):
        # Choice 0 keeps the request's own digest so n=1 and n>1 agree on the first answer.
        text = _reply(body, digest if index == 0 else f"{digest}:{index}")
        reason = "stop"
        if limit is not None and completion_tokens(text) > limit:
            # A real model stops mid-answer at max_tokens; DSPy then warns about truncation.
            text, reason = text[: limit * 4], "length"
        texts.append(text)
        reasons.append(reason)
        billed += completion_tokens(text)
    return Completion(
        model=str(body.get("model") or "sim-local"),
        digest=digest,
        texts=tuple(texts),
        finish_reasons=tuple(reasons),
        prompt_tokens=prompt_tokens(body),
        completion_tokens=billed,
    )
