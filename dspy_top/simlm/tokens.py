"""The simulated LM's token arithmetic: a documented, stable stand-in for a tokenizer.

    prompt_tokens     = sum over messages of (ceil(chars / 4) + 4)
                        + ceil(chars of json(tools) / 4) when tools are sent
    completion_tokens = max(1, ceil(chars of the reply / 4)), summed over choices
    total_tokens      = prompt_tokens + completion_tokens

"chars" counts Python characters of the text content; a non-text content part
(an image, audio) counts a flat 85 tokens.
"""

import json
import math

PER_MESSAGE_OVERHEAD = 4
NON_TEXT_PART_TOKENS = 85


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def message_tokens(message: dict) -> int:
    content = message.get("content")
    tokens = PER_MESSAGE_OVERHEAD
    if isinstance(content, str):
        tokens += text_tokens(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                tokens += text_tokens(part["text"])
            else:
                tokens += NON_TEXT_PART_TOKENS
    # Assistant tool calls are billed too; their JSON stands in for their text.
    if message.get("tool_calls"):
        tokens += text_tokens(json.dumps(message["tool_calls"], sort_keys=True))
    return tokens


def prompt_tokens(body: dict) -> int:
    messages = body.get("messages") or []
    tokens = sum(message_tokens(m) for m in messages if isinstance(m, dict))
    if body.get("tools"):
        tokens += text_tokens(json.dumps(body["tools"], sort_keys=True))
    return tokens


def completion_tokens(reply: str) -> int:
    return max(1, text_tokens(reply))


def cached_tokens(prompt: int, cached_fraction: float) -> int:
    """Prompt tokens reported as served from the provider's prompt cache."""
    return int(prompt * cached_fraction)
