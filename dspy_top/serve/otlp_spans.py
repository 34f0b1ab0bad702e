"""Spans from what the jobs report: one `chat {model}` span per LM call (GenAI semantic conventions), under
the span of the evaluation or optimizer run it ran in.

Spans are built after the fact as SDK `ReadableSpan`s with the times the job measured: a call's span
once its event arrives, an evaluation's or a compile's once it ends (its ids are fixed at its start,
so the calls inside can name it as their parent before it is sent).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from dspy_top.model.calls import CallSummary
from dspy_top.model.optimizers import derive as derive_runs
from dspy_top.model.scopes import ScopeState
from dspy_top.model.states import LOST
from dspy_top.serve.labels import split_model
from dspy_top.serve.watch import JobView

SCOPE = InstrumentationScope("dspy-top", None)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@dataclass
class _ScopeSpan:
    """Ids given to one evaluation or compile when first seen; `sent` once its span went out."""

    context: SpanContext
    parent: SpanContext | None
    sent: bool = False


class _JobResource(Resource):
    """A job's resource, hashed once: the SDK's encoder groups every span by resource, and `Resource` hashes
    by dumping its attributes as JSON each time (a fifth of the encoding time of a call's span)."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(dict(resource.attributes), resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or super().__eq__(other)


class _Job:
    """What is known of one job's scopes, for parenting its calls; the job is its spans' resource."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.scopes: dict[str, _ScopeSpan] = {}


class SpanBuilder:
    """Turns calls and ended scopes into spans; `since` keeps a restarted agent from sending old scopes again.

    OTEL_TRACES_SAMPLER (traceidratio, parentbased_traceidratio, always_off) with OTEL_TRACES_SAMPLER_ARG
    keeps a share of the traces, whole: a run's trace is kept or left with all its calls.
    """

    def __init__(self, resource: Resource, since: float) -> None:
        self.resource = resource
        self.since = since
        self._jobs: dict[str, _Job] = {}
        self._random = random.Random()
        self._sampler = _sampler()
        self.sampled_out = 0

    def _kept(self, trace_id: int, name: str) -> bool:
        if self._sampler is None:
            return True
        if self._sampler.should_sample(None, trace_id, name).decision.is_sampled():
            return True
        self.sampled_out += 1
        return False

    # --- scopes ----------------------------------------------------------------------

    def scopes(self, job: JobView, now: float) -> list[ReadableSpan]:
        """Ids for new scopes, and spans for those that ended (all still open, once the job is over)."""
        state = self._job(job)
        known = {scope.id: scope for scope in job.scopes}
        for scope in sorted(job.scopes, key=lambda s: (s.start, s.id)):
            self._ids(state, scope, known)
        finished = [s for s in job.scopes if not state.scopes[s.id].sent and (not s.running or job.over)]
        if not finished:
            return []
        numbers = _trial_numbers(job, now)
        spans = []
        for scope in finished:
            ids = state.scopes[scope.id]
            ids.sent = True
            if scope.end is not None and scope.end < self.since:
                continue  # ended before this agent started: sent by the one before, if any
            if self._kept(ids.context.trace_id, scope.id):
                spans.append(self._scope_span(state, job, scope, ids, numbers.get(scope.id)))
        return spans

    def _ids(self, state: _Job, scope: ScopeState, known: dict[str, ScopeState]) -> _ScopeSpan:
        ids = state.scopes.get(scope.id)
        if ids is not None:
            return ids
        parent = None
        if scope.parent and scope.parent in known and scope.parent != scope.id:
            parent = self._ids(state, known[scope.parent], known).context
        trace_id = parent.trace_id if parent is not None else self._random.getrandbits(128)
        context = SpanContext(trace_id, self._random.getrandbits(64), False, _SAMPLED)
        ids = state.scopes[scope.id] = _ScopeSpan(context, parent)
        return ids

    def _scope_span(
        self, state: _Job, job: JobView, scope: ScopeState, ids: _ScopeSpan, trial: tuple[int, str] | None
    ) -> ReadableSpan:
        attributes: dict[str, Any] = {
            "dspy.scope.id": scope.id,
            "dspy.scope.kind": scope.kind,
            "dspy.lm.calls": scope.usage.calls,
            "dspy.cost_usd": scope.usage.cost_usd,
        }
        if scope.kind == "compile":
            name = f"optimize {scope.label}"
            attributes["dspy.optimizer"] = scope.label
        else:
            name = f"evaluate {scope.label}"
            attributes.update(
                {
                    "dspy.evaluate.program": scope.label,
                    "dspy.evaluate.examples": scope.total,
                    "dspy.evaluate.done": scope.done,
                }
            )
            score = scope.score if scope.score is not None else scope.score_so_far
            if score is not None:
                attributes["dspy.evaluate.score"] = score
            if trial is not None:
                attributes["dspy.optimizer.trial"], attributes["dspy.optimizer.trial_kind"] = trial
        end = scope.end
        status = _OK
        if scope.state == "failed":
            status = Status(StatusCode.ERROR, scope.error or "failed")
        elif scope.running:  # the job is over and this never ended
            end = job.ended_at or scope.start
            status = Status(
                StatusCode.ERROR,
                "the job ended before it did"
                if job.state != LOST
                else "the connection to the job was lost before it ended",
            )
        return ReadableSpan(
            name,
            context=ids.context,
            parent=ids.parent,
            resource=state.resource,
            attributes=attributes,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=_ns(scope.start),
            end_time=_ns(max(end or scope.start, scope.start)),
            instrumentation_scope=SCOPE,
        )

    # --- calls -----------------------------------------------------------------------

    def call(self, call: CallSummary) -> ReadableSpan | None:
        """`chat {model}`: one LM call, as the GenAI semantic conventions describe a client call (None: sampled out)."""
        state = self._jobs.get(call.process)
        parent = None
        if state is not None:
            for scope_id in reversed(call.scopes):  # the innermost scope this agent knows
                ids = state.scopes.get(scope_id)
                if ids is not None:
                    parent = ids.context
                    break
        trace_id = parent.trace_id if parent is not None else self._random.getrandbits(128)
        if not self._kept(trace_id, call.model):
            return None
        provider, model = split_model(call.model)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "dspy.lm.model": call.model,
            "dspy.module": call.path,
            "dspy.module.class": call.module_class,
            "dspy.cache_hit": call.cache_hit,
            "dspy.retries": call.retries,
            "dspy.call.id": call.id,
        }
        if call.usage_known:
            attributes["gen_ai.usage.input_tokens"] = call.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = call.completion_tokens
        else:  # DSPy did not report its tokens: unknown, not 0
            attributes["dspy.usage_known"] = False
        if call.response_model:
            attributes["gen_ai.response.model"] = call.response_model
        if call.cached_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = call.cached_tokens
        if call.cost_usd is not None:
            attributes["dspy.cost_usd"] = call.cost_usd
        if call.cost_saved_usd:
            attributes["dspy.cost_saved_usd"] = call.cost_saved_usd
        status = _OK
        if call.error:
            attributes["error.type"] = call.error
            status = Status(StatusCode.ERROR, call.error_message or call.error)
        context = SpanContext(trace_id, self._random.getrandbits(64), False, _SAMPLED)
        resource = state.resource if state is not None else self.resource.merge(Resource({"process.pid": call.pid}))
        return ReadableSpan(
            f"chat {model}",
            context=context,
            parent=parent,
            resource=resource,
            attributes=attributes,
            kind=SpanKind.CLIENT,
            status=status,
            start_time=_ns(call.start),
            end_time=_ns(call.start + call.latency),
            instrumentation_scope=SCOPE,
        )

    # --- bookkeeping -------------------------------------------------------------------

    def _job(self, job: JobView) -> _Job:
        state = self._jobs.get(job.key)
        if state is None:
            # The job is the process the telemetry is about: its pid and name are resource attributes.
            state = self._jobs[job.key] = _Job(
                _JobResource(self.resource.merge(Resource({"process.pid": job.pid, "dspy.job": job.job})))
            )
        return state

    def forget(self, key: str) -> None:
        self._jobs.pop(key, None)


def _trial_numbers(job: JobView, now: float) -> dict[str, tuple[int, str]]:
    """Each evaluation that is an optimizer's trial: its number and kind (full, minibatch, ...)."""
    numbers = {}
    for run in derive_runs(job.scopes, now):
        for trial in run.trials:
            if trial.scope.id != run.id:
                numbers[trial.scope.id] = (trial.number, trial.kind)
    return numbers


def _sampler():
    """The sampler OTEL_TRACES_SAMPLER names (as the SDK reads it), or None when every trace is kept."""
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() in ("", "always_on", "parentbased_always_on"):
        return None
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider(shutdown_on_exit=False).sampler
