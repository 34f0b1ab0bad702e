"""Overhead of dspy-top per LM call, against no instrumentation and against peer tools.

    python benchmarks/overhead.py            # full run (about half an hour), prints a Markdown report
    python benchmarks/overhead.py --quick    # a smoke run

Every measurement runs in a fresh process (`--worker`), and repeats are interleaved
(baseline, dspy-top, peers; then peers, dspy-top, baseline; ...) so drift hits every
configuration alike. Each process collects its heap once before its timed calls, so no
configuration's first full collection lands among them by accident of what it imported;
what collections cost over a long run is measured apart (`--gc-calls`). Each figure is the
median over repeats, and each mode's difference from baseline is also given round by round
(median of the differences, with a 95% bootstrap interval); beside wall time, the
process's CPU time. Scenarios:

- predict:       `dspy.Predict` over a fixed-answer LM (DSPy's custom-engine API; before 3.4 a BaseLM), cache off
- pipeline:      a two-module program over the same LM, sequential
- pipeline-eval: the same program under `dspy.Evaluate(num_threads=8)`
- litellm-sim:   `dspy.Predict` through the real litellm engine to the simulated LM (no latency)

Modes: baseline, dspy-top (`dspy_top.instrument()` with a viewer process attached and reading),
dspy-top-unwatched (instrumented, no viewer attached), dspy-top-idle (not in the default
set: instrumented with a viewer attached, then its hooks removed, so no per-call code runs: a
control that shows how far fresh processes differ when the per-call cost is zero),
callback-floor (an empty global DSPy callback: the cost DSPy itself adds once any global
callback is registered), mlflow (`mlflow.dspy.autolog()`), openinference (its DSPy
instrumentor with an OpenTelemetry SDK provider). Peers are skipped if not installed.
Also: garbage collection over 20,000 `pipeline-eval` calls, memory over baseline after
100,000 calls, and the time `close()` takes at exit.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SCENARIOS = ("predict", "pipeline", "pipeline-eval", "litellm-sim")
MODES = ("baseline", "dspy-top", "dspy-top-unwatched", "callback-floor", "mlflow", "openinference")
FIELDS_TEXT = (
    "[[ ## reasoning ## ]]\nadd them\n\n[[ ## answer ## ]]\n4\n\n[[ ## verdict ## ]]\nok\n\n[[ ## completed ## ]]"
)


# A viewer that reads and decodes everything as fast as it comes, as `dspy-top` does.
VIEWER = """
import sys
from dspy_top import client
connection = client.Connection(sys.argv[1], batches=True)  # as the viewer reads
connection.connect()
print("attached", flush=True)
for _ in connection.events():
    pass
"""


# --- the worker: one configuration in one fresh process -------------------------------


def fixed_lm():
    import dspy

    try:
        from dspy.lm15 import Message, Response, TextPart, Usage
    except ImportError:  # DSPy before 3.4: a BaseLM answering with one OpenAI-shaped response
        return _fixed_base_lm()

    class FixedEngine:
        """Answers every request at once with the same fields and usage."""

        def complete(self, request):
            return Response(
                id="fixed",
                model="fixed-model",
                message=Message.assistant([TextPart(FIELDS_TEXT)]),
                finish_reason="stop",
                usage=Usage(input_tokens=120, output_tokens=12, total_tokens=132),
            )

    return dspy.LM("fixed/model", engine=FixedEngine(), cache=False)


def _fixed_base_lm():
    from types import SimpleNamespace

    import dspy

    message = SimpleNamespace(role="assistant", content=FIELDS_TEXT, tool_calls=None, provider_specific_fields=None)
    response = SimpleNamespace(
        choices=[SimpleNamespace(message=message, finish_reason="stop", index=0, logprobs=None)],
        model="fixed-model",
        usage={"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132},
    )

    class FixedLM(dspy.BaseLM):
        def forward(self, prompt=None, messages=None, **kwargs):
            return response

    return FixedLM("fixed/model", cache=False)


def build_program(scenario):
    import dspy

    if scenario in ("predict", "litellm-sim"):
        return dspy.Predict("question -> answer")

    class Pipeline(dspy.Module):
        def __init__(self):
            super().__init__()
            self.draft = dspy.Predict("question -> answer")
            self.check = dspy.Predict("question, answer -> verdict")

        def forward(self, question):
            answer = self.draft(question=question).answer
            return self.check(question=question, answer=answer)

    return Pipeline()


def enable_mode(mode):
    """Turn on one mode; returns a cleanup callable."""
    if mode in ("dspy-top", "dspy-top-unwatched", "dspy-top-idle"):
        import dspy_top

        handle = dspy_top.instrument()
        if mode == "dspy-top-unwatched":  # instrumented, nobody attached
            return lambda: None
        # The viewer is its own process, as in real use: reading the stream costs the job nothing.
        viewer = subprocess.Popen(
            [sys.executable, "-c", VIEWER, str(handle.socket_path)], stdout=subprocess.PIPE, text=True
        )
        viewer.stdout.readline()  # attached
        if mode == "dspy-top-idle":  # everything but the hooks: the server, the viewer, the imports
            handle.hooks.uninstall()
        return lambda: (viewer.kill(), viewer.wait())
    if mode == "callback-floor":
        import dspy
        from dspy.utils.callback import BaseCallback

        dspy.configure(callbacks=[BaseCallback()])
    elif mode == "mlflow":
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        import mlflow

        mlflow.set_tracking_uri("file://" + tempfile.mkdtemp(prefix="mlruns"))
        mlflow.set_experiment("overhead")
        mlflow.dspy.autolog()
    elif mode == "openinference":
        from openinference.instrumentation.dspy import DSPyInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Discard(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        DSPyInstrumentor().instrument(tracer_provider=provider)
    return lambda: None


def lm_for(scenario, sim_url):
    import dspy

    if scenario == "litellm-sim":
        return dspy.LM("openai/gpt-4o-mini", api_base=sim_url, api_key="sim", cache=False, engine="litellm")
    return fixed_lm()


BLOCKS = 20


def run_worker(scenario, mode, calls, sim_url):
    """Times `calls` LM calls in BLOCKS equal blocks; returns µs per call for each block."""
    import dspy

    cleanup = enable_mode(mode)
    dspy.configure(lm=lm_for(scenario, sim_url))
    program = build_program(scenario)
    per_run = 2 if scenario.startswith("pipeline") else 1
    per_block = max(1, calls // per_run // BLOCKS)
    warm = max(5, per_block)

    if scenario == "pipeline-eval":
        examples = [dspy.Example(question=f"q {i}").with_inputs("question") for i in range(per_block * BLOCKS + warm)]

        def run_block(rows):
            dspy.Evaluate(devset=rows, metric=lambda e, p, t=None: 1.0, num_threads=8, display_progress=False)(program)

        run_block(examples[:warm])
        blocks = [examples[warm + b * per_block : warm + (b + 1) * per_block] for b in range(BLOCKS)]
    else:

        def run_block(rows):
            for row in rows:
                program(question=row)

        run_block([f"warm {i}" for i in range(warm)])
        blocks = [[f"q {b} {i}" for i in range(per_block)] for b in range(BLOCKS)]
    # Every configuration starts its measured calls from a freshly collected heap. Otherwise
    # where the process's first full collection after start-up falls (a 40-90 ms pause)
    # depends on what it imported: it fell inside dspy-top's 2,000 measured calls in 30 of
    # 30 processes and inside the baseline's in none. What collections cost over a long
    # run is measured apart (run_gc_worker).
    gc.collect()
    full_before = gc.get_stats()[2]["collections"]
    block_us, block_cpu_us = [], []
    for rows in blocks:
        cpu_started, started = time.process_time(), time.perf_counter()
        run_block(rows)
        block_us.append((time.perf_counter() - started) / (len(rows) * per_run) * 1e6)
        # CPU time of every thread of the process (dspy-top's server thread included): what
        # the calls cost in work, whatever else the machine was running meanwhile.
        block_cpu_us.append((time.process_time() - cpu_started) / (len(rows) * per_run) * 1e6)
    full_gcs = gc.get_stats()[2]["collections"] - full_before
    cleanup()
    return {
        "block_us": block_us,
        "block_cpu_us": block_cpu_us,
        "calls": per_block * per_run * BLOCKS,
        "full_gcs": full_gcs,
    }


def run_gc_worker(mode, calls):
    """Garbage collection over a long `pipeline-eval` run (DSPy's history on, as by default):
    how many collections, and their time per LM call, from a freshly collected heap."""
    import dspy

    cleanup = enable_mode(mode)
    dspy.configure(lm=fixed_lm())
    program = build_program("pipeline-eval")

    def evaluate(start, count):
        examples = [dspy.Example(question=f"q {start + i}").with_inputs("question") for i in range(count)]
        dspy.Evaluate(devset=examples, metric=lambda e, p, t=None: 1.0, num_threads=8, display_progress=False)(program)

    evaluate(0, 100)
    spent, started = [0.0], [0.0]

    def timer(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - started[0]

    gc.collect()
    before = [generation["collections"] for generation in gc.get_stats()]
    gc.callbacks.append(timer)
    wall = time.perf_counter()
    runs = calls // 2
    for start in range(0, runs, 500):
        evaluate(100 + start, min(500, runs - start))
    wall = time.perf_counter() - wall
    gc.callbacks.remove(timer)
    after = [generation["collections"] for generation in gc.get_stats()]
    cleanup()
    done = runs * 2
    return {
        "calls": done,
        "full": after[2] - before[2],
        "young": after[0] - before[0] + after[1] - before[1],
        "gc_us": spent[0] / done * 1e6,
        "us": wall / done * 1e6,
    }


def run_paired_worker(scenario, pairs):
    """One process, one viewer attached throughout: blocks with dspy-top's hooks installed and
    removed alternate (ABBA order), and each pair's difference is one sample. Slow phases of
    a shared machine hit both blocks of a pair, so the median difference is far steadier
    than a comparison across processes."""
    import dspy

    from dspy_top.instrumentation import runtime

    cleanup = enable_mode("dspy-top")
    hooks = runtime.active().hooks
    dspy.configure(lm=fixed_lm())
    program = build_program(scenario)
    per_run = 2 if scenario.startswith("pipeline") else 1
    rows = 50

    def block(offset):
        if scenario == "pipeline-eval":
            examples = [dspy.Example(question=f"q {offset + i}").with_inputs("question") for i in range(rows)]
            evaluate = dspy.Evaluate(
                devset=examples, metric=lambda e, p, t=None: 1.0, num_threads=8, display_progress=False
            )
            started = time.perf_counter()
            evaluate(program)
        else:
            started = time.perf_counter()
            for i in range(rows):
                program(question=f"q {offset + i}")
        return (time.perf_counter() - started) / (rows * per_run) * 1e6

    block(0)
    diffs, off = [], []
    for pair in range(pairs):
        timed = {}
        for installed in (True, False) if pair % 2 == 0 else (False, True):
            if installed:
                hooks.install()
            else:
                hooks.uninstall()
            timed[installed] = block((2 * pair + installed) * rows)
        diffs.append(timed[True] - timed[False])
        off.append(timed[False])
    hooks.install()
    cleanup()
    return {"diffs": diffs, "baseline": statistics.median(off)}


def rss_mib():
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_memory_worker(mode, calls):
    import gc

    import dspy

    cleanup = enable_mode(mode) if mode == "dspy-top" else (lambda: None)
    # History off on both sides: DSPy's own 10,000-entry history would dwarf what we keep.
    dspy.configure(lm=fixed_lm(), disable_history=True)
    program = build_program("predict")
    for i in range(2000):
        program(question=f"warm {i}")
    gc.collect()
    before = rss_mib()
    checkpoints = []
    step = max(1, calls // 10)
    for i in range(calls):
        program(question=f"q {i}")
        if (i + 1) % step == 0:
            checkpoints.append(round(rss_mib(), 2))
    gc.collect()
    after = rss_mib()
    cleanup()
    return {"rss_mib": after, "growth_mib": after - before, "checkpoints": checkpoints}


def run_flush_worker(calls):
    import dspy

    import dspy_top
    from dspy_top import client

    handle = dspy_top.instrument()
    connection = client.Connection(handle.socket_path)
    connection.connect()
    got_exit = threading.Event()

    def read():  # a viewer reading as a real one does, on its own
        try:
            for message in connection.events():
                if message["t"] == "exit":
                    got_exit.set()
        except client.ConnectError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    dspy.configure(lm=fixed_lm())
    program = build_program("predict")
    for i in range(calls):
        program(question=f"q {i}")
    started = time.perf_counter()
    handle.close()
    elapsed = time.perf_counter() - started
    got_exit.wait(2.0)
    return {"close_ms": elapsed * 1000, "viewer_got_exit": got_exit.is_set()}


# --- the orchestrator ----------------------------------------------------------------------


def available(mode):
    module = {"mlflow": "mlflow", "openinference": "openinference.instrumentation.dspy"}.get(mode)
    if module is None:
        return True
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def spawn(*args, env=None):
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few calls, one repeat: checks the script works")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--memory-calls", type=int, default=100_000, help="0 skips the memory and flush checks")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--paired",
        type=int,
        default=200,
        metavar="PAIRS",
        help="pairs of blocks (with and without dspy-top, one process) per scenario; 0 skips",
    )
    parser.add_argument(
        "--gc-calls",
        type=int,
        default=20_000,
        metavar="CALLS",
        help="garbage collection over a long pipeline-eval run of CALLS calls, baseline "
        "against dspy-top, 3 fresh processes each; 0 skips",
    )
    parser.add_argument(
        "--soak",
        type=int,
        metavar="CALLS",
        help="only run the memory check, for CALLS calls (e.g. 1000000), RSS every 10%%",
    )
    parser.add_argument(
        "--raw",
        metavar="FILE",
        help="also append every fresh process's blocks to FILE as JSON lines, as they come "
        "(to pool or re-analyse runs later)",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "memory":
            result = run_memory_worker(rest[0], int(rest[1]))
        elif kind == "flush":
            result = run_flush_worker(int(rest[0]))
        elif kind == "gc":
            result = run_gc_worker(rest[0], int(rest[1]))
        elif kind == "paired":
            result = run_paired_worker(rest[0], int(rest[1]))
        else:
            result = run_worker(kind, rest[0], int(rest[1]), os.environ.get("SIM_URL"))
        print(json.dumps(result))
        return 0

    if args.soak:
        with tempfile.TemporaryDirectory(prefix="dt") as runtime:
            for mode in ("baseline", "dspy-top"):
                result = spawn("memory", mode, args.soak, env={"DSPY_TOP_RUNTIME_DIR": runtime})
                print(f"{mode}: RSS every {args.soak // 10:,} calls (MiB): {result['checkpoints']}")
        return 0
    if args.quick:
        args.repeats, args.calls, args.memory_calls, args.paired, args.gc_calls = 1, 100, 2000, 4, 1000
    scenarios = [s for s in args.scenarios.split(",") if s]
    modes = [m for m in args.modes.split(",") if m and available(m)]

    from dspy_top.simlm import SimLM

    with tempfile.TemporaryDirectory(prefix="dt") as runtime, SimLM(latency_scale=0.0) as sim:
        env = {"DSPY_TOP_RUNTIME_DIR": runtime, "SIM_URL": sim.base_url}
        results = {(s, m): [] for s in scenarios for m in modes}
        cpu = {(s, m): [] for s in scenarios for m in modes}  # CPU time per call, per block
        full_gcs = {(s, m): [] for s in scenarios for m in modes}  # inside the measured calls
        for repeat in range(args.repeats):
            for scenario in scenarios:
                # Every other round runs the modes backwards, so no mode always goes first.
                for mode in modes if repeat % 2 == 0 else modes[::-1]:
                    result = spawn(scenario, mode, args.calls, env=env)
                    if args.raw:
                        with open(args.raw, "a") as raw:
                            raw.write(
                                json.dumps({"round": repeat, "scenario": scenario, "mode": mode, **result}) + "\n"
                            )
                    results[(scenario, mode)].append(result["block_us"])
                    cpu[(scenario, mode)].append(result["block_cpu_us"])
                    full_gcs[(scenario, mode)].append(result["full_gcs"])
        paired = {}
        if args.paired and "dspy-top" in modes:
            paired = {s: spawn("paired", s, args.paired, env=env) for s in scenarios if s != "litellm-sim"}
        collections = []
        if args.gc_calls and "dspy-top" in modes:
            for repeat in range(1 if args.quick else 3):
                for mode in ("baseline", "dspy-top") if repeat % 2 == 0 else ("dspy-top", "baseline"):
                    collections.append((mode, spawn("gc", mode, args.gc_calls, env=env)))
        memory = flush = None
        if args.memory_calls:  # 0 skips the memory and flush checks
            memory = {mode: spawn("memory", mode, args.memory_calls, env=env) for mode in ("baseline", "dspy-top")}
            flush = [spawn("flush", 1000, env=env) for _ in range(max(1, args.repeats))]

    print(report(scenarios, modes, results, cpu, memory, flush, args))
    print()
    print(fresh_gc_report(scenarios, modes, full_gcs))
    if collections:
        print()
        print(gc_report(collections, args))
    if paired:
        print()
        print(paired_report(paired, args))
    return 0


def paired_report(paired, args):
    lines = [
        f"Paired, in one process with a viewer attached: {args.paired} pairs of 50-run blocks with dspy-top's "
        "hooks installed and removed in turn; the difference per pair, in µs per LM call. The interval is "
        "a 95% bootstrap interval of the median; the mean counts every garbage collection in full.",
        "",
        "| scenario | baseline (median block) | dspy-top: median difference | 95% interval | mean difference |",
        "|---|---|---|---|---|",
    ]
    for scenario, result in paired.items():
        diffs = result["diffs"]
        low, high = bootstrap_median(diffs)
        lines.append(
            f"| {scenario} | {result['baseline']:,.0f} µs | {statistics.median(diffs):+,.1f} µs "
            f"| {low:+,.0f} to {high:+,.0f} µs | {statistics.mean(diffs):+,.1f} µs |"
        )
    return "\n".join(lines)


def fresh_gc_report(scenarios, modes, full_gcs):
    counts = "; ".join(
        f"{scenario}: "
        + ", ".join(
            f"{mode} {sum(1 for n in full_gcs[(scenario, mode)] if n)} of {len(full_gcs[(scenario, mode)])}"
            for mode in modes
        )
        for scenario in scenarios
    )
    return (
        "Each fresh process collects its heap once before its measured calls; processes with a full "
        f"collection inside them: {counts}."
    )


def gc_report(collections, args):
    lines = [
        f"Garbage collection over {args.gc_calls:,} `pipeline-eval` calls per process (DSPy's history on, "
        "from a collected heap; fresh processes, interleaved):",
        "",
        "| mode | full collections | young collections | GC time per call | time per call |",
        "|---|---|---|---|---|",
    ]
    for mode in ("baseline", "dspy-top"):
        runs = [result for name, result in collections if name == mode]
        full = ", ".join(str(run["full"]) for run in runs)
        gc_time = ", ".join(f"{run['gc_us']:.1f}" for run in runs)
        young = statistics.median(run["young"] for run in runs)
        per_call = statistics.median(run["us"] for run in runs)
        lines.append(f"| {mode} | {full} | {young:,.0f} | {gc_time} µs | {per_call:,.0f} µs |")
    return "\n".join(lines)


def bootstrap_median(samples, rounds=2000):
    """A 95% interval for the median of `samples` (percentile bootstrap, fixed seed)."""
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(samples, k=len(samples))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds)]


def report(scenarios, modes, results, cpu, memory, flush, args):
    """Figures per configuration, each the median over its fresh processes of
    - typical: the process's median block, the usual cost of a call, GC included;
    - floor: the process's fastest block, the least noisy estimate on a shared machine.
    """

    def per_process(samples, pick):
        return statistics.median(pick(blocks) for blocks in samples)

    fastest = min
    lines = [
        f"Per LM call: {args.repeats} interleaved fresh processes per configuration, each timing "
        f"{args.calls} calls in {BLOCKS} blocks ({os.cpu_count()} cores, Python {sys.version.split()[0]}). "
        "typical = median over processes of each one's median block; floor = the same of each one's "
        "fastest block; best = the fastest block of any process.",
        "",
        "| scenario | figure | " + " | ".join(modes) + " |",
        "|---|---|" + "---|" * len(modes),
    ]
    for scenario in scenarios:
        for figure, pick in (("typical", statistics.median), ("floor", fastest), ("best", None)):

            def measure(samples, pick=pick):
                if pick is None:  # best of all: the fastest block of any process
                    return min(min(blocks) for blocks in samples)
                return per_process(samples, pick)

            base = measure(results[(scenario, "baseline")])
            cells = []
            for mode in modes:
                value = measure(results[(scenario, mode)])
                cells.append(
                    f"{value:,.0f} µs" if mode == "baseline" else f"{value - base:+,.0f} µs (×{value / base:.2f})"
                )
            lines.append(f"| {scenario} | {figure} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Fresh processes, difference from baseline per round (each repeat runs every configuration "
        "once, in turn, so one round's processes share the machine's mood): the median over rounds of "
        "each process's figure minus its round's baseline, with a 95% bootstrap interval of that median. "
        "CPU time: the process's (every thread's) CPU time per call in its median block.",
        "",
        "| scenario | mode | typical | floor | mean of blocks | CPU time |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        for mode in modes:
            if mode == "baseline":
                continue
            cells = []
            for table, pick in (
                (results, statistics.median),
                (results, min),
                (results, statistics.mean),
                (cpu, statistics.median),
            ):
                diffs = [
                    pick(run) - pick(base) for run, base in zip(table[(scenario, mode)], table[(scenario, "baseline")])
                ]
                low, high = bootstrap_median(diffs)
                cells.append(f"{statistics.median(diffs):+,.1f} µs ({low:+,.0f} to {high:+,.0f})")
            lines.append(f"| {scenario} | {mode} | " + " | ".join(cells) + " |")
    if memory is None:
        return "\n".join(lines)
    over = memory["dspy-top"]["rss_mib"] - memory["baseline"]["rss_mib"]
    extra_growth = memory["dspy-top"]["growth_mib"] - memory["baseline"]["growth_mib"]
    lines += [
        "",
        f"Memory after {args.memory_calls:,} calls (history off on both sides): baseline "
        f"{memory['baseline']['rss_mib']:.1f} MiB, dspy-top {memory['dspy-top']['rss_mib']:.1f} MiB, "
        f"{over:+.2f} MiB over baseline in all (modules, threads, the bounded rings). Growth during the "
        f"calls: baseline {memory['baseline']['growth_mib']:+.2f} MiB, dspy-top "
        f"{memory['dspy-top']['growth_mib']:+.2f} MiB, i.e. {extra_growth / args.memory_calls * 1000:+.4f} MiB "
        f"per 1,000 calls over baseline.",
        f"Flush at exit (`close()` with a viewer attached, after 1,000 calls): median "
        f"{statistics.median(f['close_ms'] for f in flush):.1f} ms, max {max(f['close_ms'] for f in flush):.1f} ms; "
        f"viewer received the exit message: {all(f['viewer_got_exit'] for f in flush)}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
