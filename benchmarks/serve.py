"""What `dspy-top serve` costs: CPU while 20 jobs make 5,000 LM calls/s between them (and whether its counters
stay exact), and how long a scrape of /metrics takes for 20 jobs x 50 modules.

    python benchmarks/serve.py                 # everything (about three minutes)
    python benchmarks/serve.py ingest          # Prometheus only
    python benchmarks/serve.py ingest-scraped  # 50 modules per job, /metrics read every second meanwhile
    python benchmarks/serve.py ingest-otlp     # Prometheus and OTLP (a span per call, to a local sink)
    python benchmarks/serve.py scrape          # 20 jobs x 50 modules, busy (5,000 calls/s in all)
    python benchmarks/serve.py render          # the text alone: this writer against prometheus_client's

The jobs are fake processes (separate OS processes speaking the real wire protocol, paced to their
share of the rate); the agent is the real `dspy-top serve` command. Its CPU is read from /proc over
the steady part of the run. Results as a table and as JSON (last line).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dspy_top import protocol  # noqa: E402

TICK = 0.25  # seconds between a fake job's frames, like a real job's server thread
MODEL = "openai/gpt-4o-mini"


def _counters(calls: int) -> dict:
    return {
        "calls": calls,
        "errors": 0,
        "retries": 0,
        "cache_hits": 0,
        "prompt_tokens": 800 * calls,
        "completion_tokens": 60 * calls,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.0003 * calls,
        "unpriced_calls": 0,
        "cost_saved_usd": 0.0,
        "latency_s": 0.8 * calls,
        "in_flight": 0,
        "latency_hist": {40: calls} if calls else {},
        "last_at": time.time(),
    }


def _stats(calls: int, modules: int) -> dict:
    share = [calls // modules + (1 if n < calls % modules else 0) for n in range(modules)]
    return {
        "t": "stats",
        "at": time.time(),
        "totals": _counters(calls),
        "modules": [
            {
                "path": f"Program.step{n}.predict",
                "class": "Predict",
                "chain": ["Program", "Predict"],
                **_counters(share[n]),
            }
            for n in range(modules)
        ],
        "models": [{"model": MODEL, **_counters(calls)}],
        "scopes": [],
        "dropped_events": 0,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 0,
        "tool_errors": 0,
    }


_CALL = {
    "latency": 0.8,
    "module_class": "Predict",
    "model": MODEL,
    "response_model": "gpt-4o-mini",
    "prompt_tokens": 800,
    "completion_tokens": 60,
    "cached_tokens": 0,
    "reasoning_tokens": 0,
    "cost_usd": 0.0003,
    "cost_saved_usd": None,
    "cache_hit": False,
    "retries": 0,
    "error": None,
    "error_message": None,
    "scopes": (),
    "stream": False,
    "usage_known": True,
}


def _row(n: int, start: float, path: str) -> tuple:
    """One `calls` row in the protocol's own field order (CALL_FIELDS)."""
    call = {**_CALL, "seq": n, "id": n, "start": start, "path": path}
    return tuple(call[name] for name in protocol.CALL_FIELDS)


def fake_job(directory: str, rate: float, seconds: float, modules: int, linger: float) -> None:
    """Serve one viewer: hello, snapshot, then `rate` calls/s for `seconds`, then exit after `linger` s."""
    try:
        _serve_one_viewer(directory, rate, seconds, modules, linger)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent stopped first


def _serve_one_viewer(directory: str, rate: float, seconds: float, modules: int, linger: float) -> None:
    pid = os.getpid()
    path = Path(directory) / f"{pid}.sock"
    listener = __import__("socket").socket(__import__("socket").AF_UNIX)
    listener.bind(str(path))
    listener.listen(4)
    conn, _ = listener.accept()
    conn.sendall(
        protocol.encode(
            {
                "t": "hello",
                "v": protocol.PROTOCOL_VERSION,
                "pid": pid,
                "ppid": 1,
                "argv": ["bench_job.py"],
                "cwd": "/",
                "started_at": time.time(),
                "python": "3",
                "dspy": "3",
                "dspy_top": "0",
                "mechanism": "execution-hooks",
                "history_capacity": 1000,
            }
        )
    )
    conn.sendall(protocol.encode({"t": "snapshot", "seq": 0, "calls": [], "stats": _stats(0, modules)}))
    sent = 0
    began = time.time()
    ticks = 0
    while time.time() - began < seconds:
        ticks += 1
        due = int(rate * min(seconds, ticks * TICK)) - sent
        rows = [
            _row(n, time.time() - 0.8, f"Program.step{n % modules}.predict") for n in range(sent + 1, sent + due + 1)
        ]
        sent += due
        frames = [
            protocol.encode({"t": "calls", "fields": protocol.CALL_FIELDS, "rows": rows[i : i + 500]})
            for i in range(0, len(rows), 500)
        ]
        if ticks % 2 == 0:
            frames.append(protocol.encode(_stats(sent, modules)))
        conn.sendall(b"".join(frames))
        time.sleep(max(0.0, began + ticks * TICK - time.time()))
    conn.sendall(protocol.encode(_stats(sent, modules)))
    deadline = time.time() + linger
    while time.time() < deadline:
        time.sleep(min(2.0, max(0.0, deadline - time.time())))
        conn.sendall(protocol.encode(_stats(sent, modules)))
    conn.sendall(protocol.encode({"t": "exit", "at": time.time(), "stats": _stats(sent, modules)}))
    time.sleep(0.5)
    conn.close()
    listener.close()
    path.unlink()


class Agent:
    """The real `dspy-top serve`; its CPU seconds from /proc."""

    def __init__(self, directory: str, *args: str, env: dict | None = None) -> None:
        environment = {**os.environ, "DSPY_TOP_RUNTIME_DIR": directory, "PYTHONPATH": str(REPO), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dspy_top", "serve", "--prometheus", "127.0.0.1:0", "--keep-ended", "600", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self.wait(r"serving Prometheus metrics at (http://\S+/metrics)").group(1)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def wait(self, pattern: str, count: int = 1, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in (re.search(pattern, line) for line in list(self.lines)) if m]
            if len(found) >= count:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"{pattern!r} x{count}: {self.lines[-5:]}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=30) as answer:
            return answer.read().decode()

    def total(self, metric: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in self.scrape().splitlines() if line.startswith(metric + "{")
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        time.sleep(0.2)  # the reader thread takes the last lines


class SpanSink:
    """A local OTLP/HTTP endpoint that counts the spans it is sent (decoded with opentelemetry-proto)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        sink = self
        self.spans = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.endswith("/v1/traces"):
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    sink.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def ingest(
    otlp: bool = False,
    jobs: int = 20,
    rate: float = 5000.0,
    seconds: float = 30.0,
    modules: int = 4,
    scrape_every: float | None = None,
) -> dict:
    """CPU of the agent while `jobs` jobs make `rate` calls/s in all, and its totals against what they sent;
    with `scrape_every`, a scraper reads /metrics that often meanwhile (the agent then renders ahead)."""
    directory = tempfile.mkdtemp(prefix="dtsb", dir="/tmp")
    os.chmod(directory, 0o700)
    sink = SpanSink() if otlp else None
    extra = ["--otlp", sink.url] if sink else []
    agent = Agent(directory, *extra, env={"OTEL_METRIC_EXPORT_INTERVAL": "5000"})
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=fake_job, args=(directory, rate / jobs, seconds, modules, 3.0)) for _ in range(jobs)
    ]
    for worker in workers:
        worker.start()
    agent.wait(r"\) seen:", count=jobs)
    scraping = threading.Event()
    if scrape_every:

        def scraper() -> None:
            while not scraping.wait(scrape_every):
                agent.scrape()

        threading.Thread(target=scraper, daemon=True).start()
    time.sleep(2.0)  # the steady part: every job attached and sending
    cpu0, t0 = agent.cpu_seconds(), time.monotonic()
    time.sleep(seconds - 6.0)
    cpu1, t1 = agent.cpu_seconds(), time.monotonic()
    scraping.set()
    agent.wait(r"\) ended", count=jobs, timeout=seconds + 60)
    for worker in workers:
        worker.join(10)
    expected = jobs * int(rate / jobs * seconds)
    calls = agent.total("dspy_lm_calls_total")
    dropped = agent.total("dspy_job_dropped_events_total")
    spans = None
    if sink:
        deadline = time.monotonic() + 30
        while sink.spans < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        spans = sink.spans
    agent.stop()
    stopped = next((line for line in agent.lines if "stopped" in line), "")
    shutil.rmtree(directory, ignore_errors=True)
    busy = (cpu1 - cpu0) / (t1 - t0)
    return {
        "otlp": otlp,
        "jobs": jobs,
        "modules_per_job": modules,
        "scrape_every": scrape_every,
        "calls_per_sec": rate,
        "seconds_measured": round(t1 - t0, 1),
        "cpu_percent_of_one_core": round(100 * busy, 1),
        "calls_expected": expected,
        "calls_exported": calls,
        "exact": calls == expected,
        "dropped_events": dropped,
        "spans_received": spans,
        "agent_says": stopped.split("dspy-top serve: ", 1)[-1] if sink else None,
    }


def scrape(jobs: int = 20, modules: int = 50, scrapes: int = 100, rate: float = 5000.0, gap: float = 0.1) -> dict:
    """Time to serve /metrics with `jobs` jobs of `modules` modules each, busy: `rate` calls/s between them
    (a `calls` batch every 250 ms and a `stats` frame of every module every 500 ms, each), one scrape every `gap` s."""
    directory = tempfile.mkdtemp(prefix="dtsc", dir="/tmp")
    os.chmod(directory, 0o700)
    agent = Agent(directory, "--max-modules", str(modules))
    context = multiprocessing.get_context("fork")
    busy = 8.0 + scrapes * (gap + 0.05)
    workers = [
        context.Process(target=fake_job, args=(directory, rate / jobs, busy, modules, 120.0)) for _ in range(jobs)
    ]
    for worker in workers:
        worker.start()
    agent.wait(r"\) seen:", count=jobs)
    time.sleep(3.0)
    body = agent.scrape()
    times = []
    for _ in range(scrapes):
        time.sleep(gap)
        t0 = time.perf_counter()
        agent.scrape()
        times.append((time.perf_counter() - t0) * 1000)
    busy_at_end = any(worker.is_alive() for worker in workers)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    agent.stop()
    for worker in workers:
        worker.terminate()
        worker.join(5)
    shutil.rmtree(directory, ignore_errors=True)
    times.sort()
    return {
        "jobs": jobs,
        "modules_per_job": modules,
        "calls_per_sec": rate,
        "jobs_busy_throughout": busy_at_end,
        "samples": samples,
        "bytes": len(body),
        "scrape_ms_median": round(statistics.median(times), 1),
        "scrape_ms_p95": round(times[int(0.95 * (len(times) - 1))], 1),
        "scrape_ms_max": round(times[-1], 1),
    }


def render(jobs: int = 20, modules: int = 50, rounds: int = 20) -> dict:
    """The text alone, in this process: the agent's writer against prometheus_client's exposition of the same
    figures (a custom collector yielding metric families from the exact totals, as its docs advise)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    from dspy_top.model.counters import Counters
    from dspy_top.serve.figures import COUNTERS, LATENCY_BOUNDS, TOKENS, cumulative_buckets
    from dspy_top.serve.labels import bounded
    from dspy_top.serve.prometheus import Exposition
    from dspy_top.serve.watch import JobView

    def counters(calls: int) -> Counters:
        return Counters(
            calls=calls,
            prompt_tokens=800 * calls,
            completion_tokens=60 * calls,
            cost_usd=0.0003 * calls,
            latency_s=0.8 * calls,
            latency_hist={40: calls, 60: calls},
        )

    views = [
        JobView(
            key=f"/run/{pid}.sock",
            pid=pid,
            job="bench_job.py",
            command="python bench_job.py",
            state="running",
            status="running",
            started_at=time.time(),
            ended_at=None,
            totals=counters(50 * pid),
            modules=tuple((f"Program.step{n}.predict", counters(pid + n)) for n in range(modules)),
            models=((MODEL, counters(50 * pid)),),
            scopes=(),
            budget_limits=(),
            dropped=0,
            attached=True,
        )
        for pid in range(1000, 1000 + jobs)
    ]
    exposition = Exposition(lambda: views, host="bench")
    bounds = [str(bound) for bound in LATENCY_BOUNDS] + ["+Inf"]

    class Families:
        def collect(self):
            rows = []
            for job in views:
                base = ["bench", str(job.pid), job.job]
                rows.extend((base + [name], c) for name, c in bounded(job.modules, modules))
            names = ["host", "pid", "job", "module"]
            for figure in COUNTERS:
                family = CounterMetricFamily(f"dspy_lm_{figure.name}", figure.help, labels=names)
                for labels, c in rows:
                    family.add_metric(labels, figure.value(c))
                yield family
            tokens = CounterMetricFamily("dspy_lm_tokens", "billed tokens by type", labels=names + ["type"])
            for labels, c in rows:
                for kind, value in TOKENS:
                    tokens.add_metric(labels + [kind], value(c))
            yield tokens
            in_flight = GaugeMetricFamily("dspy_lm_in_flight", "calls started and not finished", labels=names)
            for labels, c in rows:
                in_flight.add_metric(labels, c.in_flight)
            yield in_flight
            histogram = HistogramMetricFamily("dspy_lm_call_duration_seconds", "wall time", labels=names)
            for labels, c in rows:
                counts, count = cumulative_buckets(c.latency_hist)
                histogram.add_metric(labels, list(zip(bounds, counts + [count])), c.latency_s)
            yield histogram

    registry = CollectorRegistry()
    registry.register(Families())
    timings: dict[str, list[float]] = {"writer": [], "prometheus_client": []}
    sizes = {}
    for _ in range(rounds):
        for name, make in (
            ("writer", lambda: exposition.render().encode()),
            ("prometheus_client", lambda: generate_latest(registry)),
        ):
            t0 = time.perf_counter()
            body = make()
            timings[name].append((time.perf_counter() - t0) * 1000)
            sizes[name] = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    out: dict = {"jobs": jobs, "modules_per_job": modules}
    for name, times in timings.items():
        out[f"{name}_samples"] = sizes[name]
        out[f"{name}_ms_median"] = round(statistics.median(times), 1)
    out["note"] = "prometheus_client renders the module families only (the writer: modules, models, jobs)"
    return out


def main() -> None:
    parts = sys.argv[1:] or ["ingest", "ingest-otlp", "scrape", "render"]
    results = {}
    for part in parts:
        if part == "ingest":
            results[part] = ingest()
        elif part == "ingest-scraped":
            results[part] = ingest(modules=50, scrape_every=1.0)
        elif part == "ingest-otlp":
            results[part] = ingest(otlp=True)
        elif part == "scrape":
            results[part] = scrape()
        elif part == "render":
            results[part] = render()
        else:
            raise SystemExit(f"unknown part {part!r}: ingest | ingest-scraped | ingest-otlp | scrape | render")
        print(f"{part:12} " + "  ".join(f"{k}={v}" for k, v in results[part].items()), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
