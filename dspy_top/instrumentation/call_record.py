"""One LM call as the hot path sees it: who made it, set at begin; its outcome, set at finish.

Also how an exception is kept: its type name and message, never the object (nothing here refers to the program's
objects once the call has returned).
"""

from __future__ import annotations


class CallRecord:
    """One LM call: who made it, set at begin; its outcome, set at finish; and, for the history
    pane, the plain parts of its payload (see payload.py).

    Finish writes its outcome here rather than into a new tuple. The record lives until it is
    folded (a batch, within ~250 ms); the payload ring then copies the parts a payload shows
    into a slot it reuses. Nothing here refers to the program's objects once the call has
    returned: the path is named at begin, the payload is DSPy's plain containers (messages,
    outputs, usage, options), and an error is its type name and message, so an LM, a module or
    an exception the program drops is freed at once."""

    __slots__ = (
        "id",
        "path",
        "module_class",
        "chain",
        "modules",
        "model",
        "started_at",
        "started_perf",
        "retries",
        "partial_usage",
        "scopes",
        "stream",
        "duration",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost",
        "cache_hit",
        "saved",
        "error",
        "response_model",
        "keep",
        "usage_known",
        "model_type",
        "messages",
        "prompt",
        "lm_options",
        "call_options",
        "outputs",
        "usage",
        "dspy_cost",
        "cost_details",
    )

    def __init__(self, call_id, path, module_class, chain, model, scopes, stream, started_at, started_perf, modules):
        self.id = call_id
        # Either the path, class and chain, or the calling modules to name them from later
        # (Recorder.describe).
        self.path = path
        self.module_class = module_class
        self.chain = chain
        self.modules = modules
        self.model = model
        self.scopes = scopes
        self.stream = stream
        self.started_at = started_at
        self.started_perf = started_perf
        self.retries = 0
        self.usage_known = True
        # Set only when needed (readers use getattr with a default): partial_usage by a failed
        # call's accounting; the payload's parts (model_type ... cost_details) by the hooks.


def describe_error(error: BaseException) -> tuple[str, str]:
    """(type name, message cut short): all a row and a payload keep of the program's exception."""
    return type(error).__name__, _error_text(error)


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(error: BaseException) -> str:
    """An exception's message, cut short; one whose `__str__` fails still gets a row."""
    try:
        return _short(str(error))
    except Exception:
        return f"<{type(error).__name__}: message unavailable>"
