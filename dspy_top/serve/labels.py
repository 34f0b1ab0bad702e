"""Label values the exporters share: a job's name, a model's provider, and bounded module/model sets.

Pure functions, standard library and the model only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dspy_top.model.counters import Counters, total

OTHER = "other"  # where modules (or models) past the limit are summed
JOB_OTHER = "(other)"  # the job's own fold past its 200 modules / 100 models (docs/protocol.md)

# litellm's provider prefixes whose OpenTelemetry name (gen_ai.provider.name) differs from the prefix.
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}
# Bare model names litellm routes without a prefix.
_BARE = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt", "openai"),
    ("text-", "openai"),
    ("claude", "anthropic"),
    ("gemini", "gcp.gemini"),
)


def job_name(argv: Sequence[str]) -> str:
    """The script's name: `train.py` for `python train.py`, the package for `python -m pkg`, else `python`."""
    if not argv or not argv[0] or argv[0] in ("-c", "-"):
        return "python"
    path = argv[0]
    name = os.path.basename(path.rstrip("/"))
    if name == "__main__.py":  # python -m pkg: name the package
        return os.path.basename(os.path.dirname(path)) or name
    return name


def split_model(model: str) -> tuple[str, str]:
    """(gen_ai.provider.name, gen_ai.request.model) of a DSPy/litellm model string such as `openai/gpt-4o-mini`."""
    prefix, slash, rest = model.partition("/")
    if slash and rest:
        return _PROVIDERS.get(prefix, prefix), rest
    lowered = model.lower()
    for start, provider in _BARE:
        if lowered.startswith(start):
            return provider, model
    return "unknown", model


def bounded(parts: Sequence[tuple[str, Counters]], limit: int) -> list[tuple[str, Counters]]:
    """At most `limit` + 1 entries: the busiest `limit` by calls, the rest (and the job's own fold) summed as `other`.

    Sums over the result equal sums over `parts`: nothing is dropped, only folded.
    """
    kept = [(name, counters) for name, counters in parts if name not in (JOB_OTHER, OTHER)]
    folded = [counters for name, counters in parts if name in (JOB_OTHER, OTHER)]
    if len(kept) > limit:
        kept.sort(key=lambda part: (-part[1].calls, part[0]))
        folded.extend(counters for _, counters in kept[limit:])
        kept = kept[:limit]
    if folded:
        kept.append((OTHER, total(folded)))
    return kept
