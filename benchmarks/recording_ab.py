"""A change's effect on what recording costs a job: this checkout against an older commit, paired.

    python benchmarks/recording_ab.py --base d7bbd30 [--rounds 8] [--calls 8000] [--scenario predict]

On a shared machine whose speed drifts by half over an hour, the recording's cost measured at two
times cannot be compared; measured in turns, it can. This runs the `predict` job of
benchmarks/overhead.py (a fixed-answer LM: all CPU, so every microsecond the recording's server
thread holds the GIL is the job's) recording, in fresh processes, alternately with this checkout
and with `--base` (a worktree made for it, its compiled parts built with its own hatch_build.py),
the order swapped every round. Each process reports per LM call: the job thread's waits for the
server thread's turns for the GIL (`giving_us`, instrumentation/gil_handoff.py: what the job
waits for the recording's work), the server thread's CPU holding the GIL (`gil_held_us`: its CPU
less what Python's zlib took with the GIL let go, where the commit compresses with it), how often
the job gave it and how often in vain (`given`, `missed`), and the wall time. The result is each
figure's difference (this checkout less the base) round by round, its median and a 95% bootstrap
interval. `--scenario pipeline` runs overhead.py's two-module pipeline instead (two LM calls a
run, in one thread). The last line of output is JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("giving_us", "gil_held_us", "wall_us", "given", "missed")


def worker(scenario: str, calls: int) -> dict:
    import gc
    import threading

    sys.path.insert(0, str(REPO / "benchmarks"))
    import dspy
    import overhead

    import dspy_top
    from dspy_top.recording import segments

    zlib_cpu = [0.0]  # the server thread's CPU inside Python's zlib calls (the GIL let go)
    if not getattr(segments, "NATIVE", False):
        compress_pending, take = segments.SegmentedStream.compress_pending, segments.SegmentedStream.take

        def timed_compress(self):
            started = time.thread_time()
            try:
                return compress_pending(self)
            finally:
                zlib_cpu[0] += time.thread_time() - started

        def timed_take(self, end_segment):
            self.compress_pending()  # counted there
            started = time.thread_time()
            try:
                return take(self, end_segment)
            finally:
                zlib_cpu[0] += time.thread_time() - started

        segments.SegmentedStream.compress_pending = timed_compress
        segments.SegmentedStream.take = timed_take
    directory = tempfile.mkdtemp(prefix="dtop-ab-")
    handle = dspy_top.instrument(record=f"{directory}/")
    dspy.configure(lm=overhead.fixed_lm())
    program = overhead.build_program("pipeline" if scenario == "pipeline" else "predict")
    per_run = 2 if scenario == "pipeline" else 1
    runs = calls // per_run
    for i in range(300):
        program(question=f"q {i}")
    gc.collect()
    server = next(thread for thread in threading.enumerate() if thread.name == "dspy-top-server")
    clock = time.pthread_getcpuclockid(server.ident)
    handoff = handle.recorder.handoff
    given, missed, waited = handoff.given, handoff.missed, handoff.waited
    server_cpu, zlib_before, started = time.clock_gettime(clock), zlib_cpu[0], time.perf_counter()
    for i in range(runs):
        program(question=f"q {1000 + i}")
    handle.server.push_totals(timeout=5.0)  # its last calls' work counts too
    wall = time.perf_counter() - started
    server_cpu = time.clock_gettime(clock) - server_cpu
    done = runs * per_run
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "giving_us": (handoff.waited - waited) / done * 1e6,
        "gil_held_us": (server_cpu - (zlib_cpu[0] - zlib_before)) / done * 1e6,
        "wall_us": wall / done * 1e6,
        "given": handoff.given - given,
        "missed": handoff.missed - missed,
    }


def build_base(base: str, into: Path) -> None:
    """A worktree of `base` with its compiled parts built beside their sources, by its own build hook."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), base], check=True, capture_output=True
    )
    spec = importlib.util.spec_from_file_location("base_hatch_build", into / "hatch_build.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    parts = getattr(hook, "PARTS", None)
    if parts is None:  # before the compiled deflate: one part, the payload packer
        built = [hook.compile_extension(into, (into / hook.SOURCE).parent)]
    else:
        built = [hook.compile_extension(into, (into / part[0]).parent, number) for number, part in enumerate(parts)]
    if None in built:
        raise SystemExit(f"cannot build the compiled parts of {base} (see the message above)")


def run(tree: Path, scenario: str, calls: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, __file__, "--worker", scenario, str(calls)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"worker in {tree} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return round(ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2, 2)


def interval(samples: list[float], draws: int = 2000) -> list[float]:
    """A 95% bootstrap interval of the median."""
    draw = random.Random(1)
    medians = sorted(median([draw.choice(samples) for _ in samples]) for _ in range(draws))
    return [medians[int(0.025 * draws)], medians[int(0.975 * draws)]]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(argv[1], int(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (a worktree is made for it)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=8000, help="LM calls a process")
    parser.add_argument("--scenario", choices=("predict", "pipeline"), default="predict")
    args = parser.parse_args(argv)
    base_tree = Path(tempfile.mkdtemp(prefix="dtop-ab-base-")) / "tree"
    build_base(args.base, base_tree)
    samples: dict[str, list[dict]] = {"base": [], "head": []}
    try:
        for number in range(args.rounds):
            order = ("base", "head") if number % 2 == 0 else ("head", "base")
            for side in order:
                samples[side].append(run(base_tree if side == "base" else REPO, args.scenario, args.calls))
            base, head = samples["base"][-1], samples["head"][-1]
            print(
                f"round {number + 1} of {args.rounds}: "
                + ", ".join(f"{name} {base[name]:.2f} -> {head[name]:.2f}" for name in FIGURES),
                flush=True,
            )
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], capture_output=True)
        shutil.rmtree(base_tree.parent, ignore_errors=True)
    result = {"base": args.base, "scenario": args.scenario, "rounds": args.rounds, "calls": args.calls}
    for name in FIGURES:
        differences = [head[name] - base[name] for base, head in zip(samples["base"], samples["head"])]
        result[name] = {
            "base": median([sample[name] for sample in samples["base"]]),
            "head": median([sample[name] for sample in samples["head"]]),
            "difference": median(differences),
            "difference_ci": interval(differences),
        }
        print(f"{name}: {result[name]}", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main(sys.argv[1:])
    if sys.argv[1:2] != ["--worker"]:
        print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
