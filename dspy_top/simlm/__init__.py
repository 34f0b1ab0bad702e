"""A simulated OpenAI-compatible LM for running real DSPy programs without a provider.

Standard library only (no dspy, no litellm), so any side of dspy-top may import it.

    from dspy_top.simlm import SimLM
    with SimLM(latency_scale=0.0) as sim:
        lm = dspy.LM("openai/gpt-4o-mini", api_base=sim.base_url, api_key="sim", cache=False)

or from a shell: ``python -m dspy_top.simlm --port 0`` prints its base URL first.

Endpoints: POST /v1/chat/completions (and /chat/completions), GET /v1/models; the
control plane GET /_sim/stats, POST /_sim/reset, GET|POST /_sim/config.

What it answers. It reads the DSPy adapter's system message ("Your output fields
are:", the ``# note:`` lines, ReAct's tool list) and replies in the format the adapter
parses: ``[[ ## field ## ]]`` sections ending ``[[ ## completed ## ]]`` (ChatAdapter),
one JSON object when ``response_format`` is json_object/json_schema (JSONAdapter), or
XML elements (XMLAdapter). Every field gets a value of its type: str, int, float,
bool, Literal/enum (an allowed value), list/dict/pydantic models (from the JSON
schema). ReAct calls one tool with arguments that fit its schema, then ``finish``
once the trajectory holds an observation. Everything is a pure function of the
request (model, messages, response_format, tools): same prompt, same answer.

Learnable arithmetic. If the inputs contain an expression like ``What is 17 + 25?``,
the answer field gets the true value with probability 0.40 + 0.125 per few-shot demo
(capped at 0.90 from 4 demos) and otherwise a nearby wrong number; the coin is a hash
of the request, so caches and reruns agree, and optimizers that add demos improve.

Tokens (``usage`` in every response): prompt = sum over messages of
ceil(chars / 4) + 4; completion = max(1, ceil(chars of reply / 4)); total = sum.
``cached_fraction`` > 0 adds ``prompt_tokens_details.cached_tokens``.

Latency: 0.30 s to first token + 2 ms per completion token, each with lognormal
jitter drawn from the request hash, all times ``latency_scale`` (0 = instant).

Failures: ``error_every=N`` fails every Nth completion request, ``error_rate=p`` fails
attempts at random (seeded, per request and attempt). A failure is HTTP 503 (or
``error_status``) with an OpenAI error body and ``Retry-After: 0`` plus
``retry-after-ms: 1``. DSPy retries 5xx/429 itself, sleeping ``min(2**attempt, 60)`` s
unless the error carries a retry-after hint; ``Retry-After: 0`` makes that sleep zero
on both engines (the native engine reads Retry-After or retry-after-ms, the LiteLLM
engine reads only Retry-After, off the SDK error; LiteLLM's own retries are off).

Streaming: ``stream: true`` answers with SSE chunks and ``data: [DONE]``; a final
usage chunk only when ``stream_options.include_usage`` is true, as OpenAI does. DSPy's
native engine always asks for it; DSPy's LiteLLM engine asks only when
``dspy.settings.track_usage`` is on (otherwise LiteLLM estimates usage itself, which
will not match this server's bill).

Truth: the server's own ledger counts requests (total, ok, failed by status,
streaming), tokens billed on successful responses, per model -- ``SimLM.stats()``
or GET /_sim/stats.
"""

from dspy_top.simlm.config import SimConfig
from dspy_top.simlm.server import SimLM

__all__ = ["SimConfig", "SimLM"]
