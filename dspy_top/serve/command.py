"""`dspy-top serve`: options, start-up (each exporter said to be up, or why not), the loop, a clean stop.

Only the standard library until an exporter is asked for: `dspy-top serve --help` stays fast. Prometheus
needs nothing more; OTLP needs the OpenTelemetry SDK (`pip install "dspy-top[serve]"`).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from dspy_top import options
from dspy_top.viewer.terminal import for_stream, inert

DESCRIPTION = """\
A headless agent (one per machine and user, like node_exporter): it attaches to every instrumented
DSPy job of this user on this machine, now and as they start, and exports them to Prometheus
(--prometheus, pull) and to OpenTelemetry (--otlp, push). It logs one line per job seen and ended.
Counters are the jobs' exact totals; it never imports dspy or litellm.
"""

EPILOG = """\
examples:
  dspy-top serve --prometheus 9464                      # http://127.0.0.1:9464/metrics
  dspy-top serve --prometheus 0.0.0.0:9464              # reachable from other machines
  dspy-top serve --otlp http://collector:4318           # OTLP/HTTP: /v1/traces and /v1/metrics
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://mlflow:5000/v1/traces \\
  OTEL_EXPORTER_OTLP_TRACES_HEADERS=x-mlflow-experiment-id=1 OTEL_METRICS_EXPORTER=none \\
    dspy-top serve --otlp                               # spans into MLflow

Prometheus: scrape it with `honor_labels: true` (its series carry a `job` label, the script's name).
OpenTelemetry: the standard variables apply (OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT, _HEADERS,
_TIMEOUT, _COMPRESSION, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_METRIC_EXPORT_INTERVAL,
OTEL_TRACES_EXPORTER=none, OTEL_METRICS_EXPORTER=none). Every metric: docs/serve.md.

exit status: 0 after SIGINT/SIGTERM, 2 on a usage error or when no exporter could start.
"""

INSTALL = 'pip install "dspy-top[serve]"'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspy-top serve",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    out = parser.add_argument_group("exporters (at least one)")
    out.add_argument(
        "--prometheus",
        metavar="[HOST:]PORT",
        type=_address,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to 127.0.0.1; "
        "0.0.0.0 for every interface)",
    )
    out.add_argument(
        "--otlp",
        metavar="URL",
        nargs="?",
        const="",
        default=None,
        help="push OTLP/HTTP spans and metrics to URL (as OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces "
        "and /v1/metrics are added); without URL, the OTEL_EXPORTER_OTLP_* variables say where",
    )
    what = parser.add_argument_group("what is exported")
    what.add_argument(
        "--hostname",
        default=None,
        metavar="NAME",
        help="the `host` label (OpenTelemetry: host.name); default: this machine's host name",
    )
    what.add_argument(
        "--keep-ended",
        type=options.non_negative_number,
        default=300.0,
        metavar="SECONDS",
        help="how long an ended job's series stay (default 300)",
    )
    what.add_argument(
        "--max-modules",
        type=_count,
        default=50,
        metavar="N",
        help='module paths per job with their own series; the rest are summed as module="other" (default 50)',
    )
    what.add_argument(
        "--max-models",
        type=_count,
        default=20,
        metavar="N",
        help='models per job with their own series; the rest are summed as model="other" (default 20)',
    )
    return parser


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not [HOST:]PORT: {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port {number} is not 0-65535")
    return host, number


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def make_log(stream: Any = None) -> Callable[[str], None]:
    """One timestamped line per event on stderr (journald and docker add their own context).

    A line quotes what jobs chose (their command lines, a refusal's reason): made inert, so it
    can neither drive the terminal it is read on nor forge a line of its own."""

    def log(message: str) -> None:
        out = stream or sys.stderr
        try:
            line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} dspy-top serve: {inert(message)}\n"
            out.write(for_stream(line, out))
            out.flush()
        except (OSError, ValueError):
            pass

    return log


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.prometheus is None and args.otlp is None:
        parser.error("nothing to export: give --prometheus [HOST:]PORT and/or --otlp [URL]")
    log = make_log()
    host = args.hostname or socket.gethostname()
    since = time.time()

    from dspy_top import paths
    from dspy_top.serve.agent import Agent
    from dspy_top.serve.watch import JobWatch

    located = paths.locate()
    if located.warning:
        log(located.warning)
    watch = JobWatch(located.path, calls=args.otlp is not None, since=since)
    limits = {"max_modules": args.max_modules, "max_models": args.max_models}
    stops: list[Callable[[], None]] = []
    agent_parts: dict[str, Any] = {}
    serving = 0
    if args.prometheus is not None:
        serving += _start_prometheus(args.prometheus, watch, host, limits, log, stops, agent_parts)
    if args.otlp is not None:
        serving += _start_otlp(args.otlp or None, watch, host, limits, since, log, stops, agent_parts)
    if not serving:
        log("nothing left to serve: exiting")
        for stop in stops:
            stop()
        return 2
    agent = Agent(watch, log, keep_ended=args.keep_ended, **agent_parts)

    def on_signal(number: int, frame: Any) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watch.start(on_notice=log)
    log(f"watching the jobs in {located.path} (host {host})")
    try:
        agent.run()
    finally:
        watch.stop()
        for stop in reversed(stops):
            try:
                stop()
            except Exception:
                pass
        log("stopped" + _span_counts(agent_parts))
    return 0


def _start_prometheus(
    address: tuple[str, int], watch: Any, host: str, limits: dict, log: Callable[[str], None], stops: list, parts: dict
) -> int:
    from dspy_top.serve.prometheus import Exposition, serve_metrics

    bind, port = address
    exposition = Exposition(watch.jobs, host=host, **limits)
    try:
        server, port = serve_metrics(exposition, bind, port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = " (another dspy-top serve, or another exporter, uses it)" if exc.errno == 98 else ""
        log(f"cannot serve Prometheus metrics on {_show(bind, port)}: {reason}{hint}")
        return 0
    stops.append(server.shutdown)
    parts["exposition"] = exposition  # the agent's loop renders it ahead of the scrapes
    log(f"serving Prometheus metrics at http://{_show(bind, port)}/metrics")
    return 1


def _start_otlp(
    base: str | None,
    watch: Any,
    host: str,
    limits: dict,
    since: float,
    log: Callable[[str], None],
    stops: list,
    parts: dict,
) -> int:
    try:
        from opentelemetry.sdk.resources import Resource

        from dspy_top.serve import otlp_export
        from dspy_top.serve.otlp_metrics import OtlpMetrics
        from dspy_top.serve.otlp_spans import SpanBuilder
    except ImportError as exc:
        log(f"--otlp needs the OpenTelemetry SDK and its OTLP/HTTP exporter ({exc.name} is missing): {INSTALL}")
        return 0
    reasons = otlp_export.ExporterReasons().install()
    resource = Resource.create({"host.name": host})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "dspy-top"}))
    traces = otlp_export.endpoint_for("traces", base)
    metrics = otlp_export.endpoint_for("metrics", base)
    if traces is None and metrics is None:
        log("--otlp: OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER are both `none`: nothing to push")
        return 0
    if traces is not None:
        exporter = otlp_export.SpanExporter(endpoint=traces)
        queue = otlp_export.SpanQueue(
            exporter,
            capacity=_env_int("OTEL_BSP_MAX_QUEUE_SIZE", 20_000),
            batch=_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
            delay=_env_int("OTEL_BSP_SCHEDULE_DELAY", 1000) / 1000,
        )
        exporter.reachability = reasons.signals["span"] = otlp_export.Reachability(
            "spans",
            traces,
            lambda line: log(
                f"{line} (past {queue.capacity:,} queued spans, new ones are dropped "
                f"and counted: {queue.dropped:,} so far)"
            ),
        )
        parts.update(spans=SpanBuilder(resource, since), queue=queue.start())
        stops.append(queue.stop)
        log(f"pushing OTLP spans to {traces}")
    if metrics is not None:
        exporter = otlp_export.MetricExporter(endpoint=metrics)
        exporter.reachability = reasons.signals["metric"] = otlp_export.Reachability("metrics", metrics, log)
        span_queue = parts.get("queue")
        otlp = OtlpMetrics(
            exporter, resource, watch.jobs, spans_dropped=lambda: span_queue.dropped if span_queue else 0, **limits
        )
        parts["metrics"] = otlp
        stops.append(otlp.shutdown)
        log(f"pushing OTLP metrics to {metrics}")
    return 1


def _span_counts(parts: dict) -> str:
    queue, spans = parts.get("queue"), parts.get("spans")
    if queue is None:
        return ""
    return (
        f" (spans: {queue.exported:,} exported, {queue.dropped:,} dropped with the queue full, "
        f"{queue.failed:,} not taken by the endpoint, {spans.sampled_out:,} sampled out)"
    )


def _env_int(name: str, default: int) -> int:
    import os

    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


if __name__ == "__main__":
    sys.exit(main())
