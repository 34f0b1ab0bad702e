"""OTLP/HTTP plumbing: where each signal goes (the standard OTEL_* variables), a bounded span queue, and
exporters that say once, in one clear line, when their endpoint cannot be reached and when it can again.

Export never slows a job: the jobs only feed their sockets; here a full queue drops spans and counts them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

DEFAULT_ENDPOINT = "http://localhost:4318"
SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics"}


def endpoint_for(signal: str, base: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The URL one signal is sent to, or None when OTEL_<SIGNAL>_EXPORTER=none switches it off.

    As the OpenTelemetry SDK's specification says: OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT as it is, else
    the base (`--otlp URL`, else OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4318) with `/v1/<signal>`.
    """
    env = os.environ if environ is None else environ
    if env.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").strip().lower() == "none":
        return None
    own = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if own:
        return own
    root = base or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    return f"{root.rstrip('/')}/{SIGNAL_PATHS[signal]}"


class Reachability:
    """Logs one line when an endpoint stops answering (with the exporter's own reason) and one when it is back.

    The exporter retries a refused connection for up to its timeout (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s):
    its first complaint is said at once, not at the end of its retries.
    """

    def __init__(self, what: str, endpoint: str, log: Callable[[str], None]) -> None:
        self.what = what
        self.endpoint = endpoint
        self.log = log
        self.failing = False
        self.failures = 0

    def trouble(self, reason: str) -> None:
        if not self.failing:
            self.failing = True
            self.log(f"cannot export OTLP {self.what} to {self.endpoint}: {reason}; still trying")

    def result(self, ok: bool) -> None:
        if ok and self.failing:
            self.failing = False
            self.log(f"OTLP {self.what} reach {self.endpoint} again")
        elif not ok:
            self.failures += 1
            self.trouble("no answer")


class ExporterReasons(logging.Handler):
    """Hands the OpenTelemetry exporters' complaints to the `Reachability` of their signal (their own log
    lines stay off the agent's log: it says each outage once, in its own words)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.signals: dict[
            str, Reachability
        ] = {}  # a word of the exporter's message ("span", "metric") -> whom to tell

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        for word, reachability in self.signals.items():
            if word in message:
                reachability.trouble(_reason(message))

    def install(self) -> ExporterReasons:
        logger = logging.getLogger("opentelemetry")
        logger.addHandler(self)
        logger.propagate = False
        return self


def _reason(message: str) -> str:
    """The useful end of an exporter's complaint: the exception it quotes, without the retry chatter."""
    message = message.replace("encountered while exporting", "while exporting")
    return message.split(", retrying in")[0].strip()


class SpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, telling `Reachability` how each batch went."""

    reachability: Reachability | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        if self.reachability is not None:
            self.reachability.result(result == SpanExportResult.SUCCESS)
        return result


class MetricExporter(OTLPMetricExporter):
    """The SDK's OTLP/HTTP metric exporter, telling `Reachability` how each export went."""

    reachability: Reachability | None = None

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if self.reachability is not None:
            self.reachability.result(result == MetricExportResult.SUCCESS)
        return result


class SpanQueue:
    """A bounded queue of finished spans and the daemon thread that exports them in batches.

    `offer` never blocks: past `capacity` a span is dropped and counted (`dropped`).
    """

    def __init__(self, exporter: SpanExporter, *, capacity: int = 20_000, batch: int = 512, delay: float = 1.0) -> None:
        self.exporter = exporter
        self.capacity = capacity
        self.batch = batch
        self.delay = delay
        self.dropped = 0
        self.exported = 0
        self.failed = 0  # spans in batches the endpoint did not take
        self._spans: deque[ReadableSpan] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dspy-top-serve-spans", daemon=True)

    def start(self) -> SpanQueue:
        self._thread.start()
        return self

    def offer(self, spans: Sequence[ReadableSpan]) -> None:
        room = self.capacity - len(self._spans)
        if room < len(spans):
            self.dropped += len(spans) - max(0, room)
            spans = spans[: max(0, room)]
        self._spans.extend(spans)
        if len(self._spans) >= self.batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.delay)
            self._wake.clear()
            self._drain()

    def _drain(self, deadline: float | None = None) -> None:
        while self._spans and (deadline is None or time.monotonic() < deadline):
            batch = [self._spans.popleft() for _ in range(min(self.batch, len(self._spans)))]
            try:
                ok = self.exporter.export(batch) == SpanExportResult.SUCCESS
            except Exception:  # the exporter's own fault: the batch is lost, counted, the thread goes on
                ok = False
            if ok:
                self.exported += len(batch)
            else:
                self.failed += len(batch)
                if self._stop.is_set():
                    return

    def stop(self, timeout: float = 5.0) -> None:
        """Export what is queued, for up to `timeout` seconds, then shut the exporter down."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._drain(time.monotonic() + timeout)
        self.exporter.shutdown()
