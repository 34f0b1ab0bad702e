"""OpenAI chat-completions wire shapes: response bodies, SSE stream chunks, model lists.

Streaming follows OpenAI: a role chunk, content deltas, a chunk carrying
finish_reason, then -- only when ``stream_options.include_usage`` is true -- a chunk
with empty ``choices`` and the ``usage`` (every earlier chunk then has ``usage: null``),
and finally ``data: [DONE]``.
"""

import json

from dspy_top.simlm.completion import Completion
from dspy_top.simlm.tokens import cached_tokens

DONE = b"data: [DONE]\n\n"
_DELTA_CHARS = 16  # about four tokens per streamed delta


def usage(completion: Completion, cached_fraction: float) -> dict:
    billed = {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }
    if cached_fraction > 0:
        billed["prompt_tokens_details"] = {"cached_tokens": cached_tokens(completion.prompt_tokens, cached_fraction)}
    return billed


def completion_body(completion: Completion, response_id: str, created: int, billed: dict) -> dict:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": completion.model,
        "system_fingerprint": "fp_dspy_top_sim",
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": reason,
            }
            for index, (text, reason) in enumerate(zip(completion.texts, completion.finish_reasons))
        ],
        "usage": billed,
    }


def sse(event: dict) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _deltas(text: str) -> list[str]:
    return [text[i : i + _DELTA_CHARS] for i in range(0, len(text), _DELTA_CHARS)]


def stream_chunks(
    completion: Completion, response_id: str, created: int, billed: dict, include_usage: bool
) -> list[tuple[bytes, float]]:
    """SSE frames, each with the share of generation time to wait before sending it."""
    base = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": completion.model,
        "system_fingerprint": "fp_dspy_top_sim",
    }
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict, finish_reason=None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**base, "choices": [choice]})

    total_chars = sum(len(t) for t in completion.texts) or 1
    frames: list[tuple[bytes, float]] = []
    for index, (text, reason) in enumerate(zip(completion.texts, completion.finish_reasons)):
        frames.append((chunk(index, {"role": "assistant", "content": "", "refusal": None}), 0.0))
        for piece in _deltas(text):
            frames.append((chunk(index, {"content": piece}), len(piece) / total_chars))
        frames.append((chunk(index, {}, reason), 0.0))
    if include_usage:
        frames.append((sse({**base, "choices": [], "usage": billed}), 0.0))
    frames.append((DONE, 0.0))
    return frames


def models_body(models: list[str]) -> dict:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "dspy-top-sim"} for m in models],
    }


def model_body(model: str) -> dict:
    return {"id": model, "object": "model", "created": 0, "owned_by": "dspy-top-sim"}
