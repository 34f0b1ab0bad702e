"""`dspy-top replay` on a large recording: time to the first frame, to the end state, seeks, memory.

    python benchmarks/replay.py                      # a 100,000-call recording (about a minute)
    python benchmarks/replay.py --calls 1000000      # the issue's million calls (several minutes)
    python benchmarks/replay.py --dir DIR --keep     # keep the recordings

The recording is written by the real Recorder and RecordingWriter, driven as a busy DSPy
job on a simulated clock (benchmarks/recording.py's `Job`: 1,200 calls/s, five modules, an
optimizer trial every 2,000 calls, a `stats` every 0.5 s, small generated payloads), then
cut as SIGKILL leaves it (no footer, the last frame torn) for a second copy. Every figure is
taken in a fresh interpreter:
- first frame: `python -m dspy_top replay FILE` in tmux (120x40), from launch until its first
  frame (the replay bar: interpreter start, opening the file, Textual's first frame), and until
  the screen shows the recording's end state (its final call count);
- open: `RecordingSource` over the file, then the collector folding its end state, in process;
- seeks from there, each timed until everything up to the new moment is folded: back to 50%,
  ahead to 75% (far: from a checkpoint), back 10 s, one step back, to the trial in the middle,
  to the end; each brings 10,000 calls into the history, as the viewer's;
- batch: `dspy-top replay FILE -b -n 1 --json`, the whole process;
- peak memory (VmHWM) of the replaying process.
The last line of output is JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATE = 1200  # calls per second of the simulated job


def _recording_benchmark():
    """benchmarks/recording.py, for its `Job` (the busy job it writes recordings of)."""
    spec = importlib.util.spec_from_file_location("recording_benchmark", REPO / "benchmarks" / "recording.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def payloads(count: int = 64) -> list[dict]:
    """Small chat payloads, each a little different (the replay reads payload frames' headers only)."""
    system = (
        "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `reasoning` (str):\n"
        "2. `answer` (str):\nAll interactions will be structured in the following way, with the "
        "appropriate values filled in.\n\n[[ ## question ## ]]\n{question}\n"
    )
    return [
        {
            "model": "openai/gpt-4o-mini",
            "model_type": "chat",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"[[ ## question ## ]]\nWhat is {n} + {3 * n}?"},
            ],
            "options": {"temperature": 0.0},
            "outputs": [f"[[ ## answer ## ]]\n{4 * n}"],
            "cache_hit": False,
        }
        for n in range(count)
    ]


def write(directory: Path, calls: int) -> tuple[Path, Path, float]:
    """The recording, its SIGKILL-cut copy, and the seconds writing it took."""
    bench = _recording_benchmark()
    file = directory / "big.dtop"
    file.unlink(missing_ok=True)
    started = time.perf_counter()
    job = bench.Job(file, RATE, payloads())
    job.run(calls)
    job.close()
    written = time.perf_counter() - started
    cut = directory / "big-killed.dtop"
    from dspy_top.recording import Recording

    with Recording(file) as recording:
        last = recording.index().checkpoints[-1].offset  # the final checkpoint, the index and the trailer go
    with open(file, "rb") as source, open(cut, "wb") as target:
        shutil.copyfileobj(source, target)
        target.truncate(last - 100)
    return file, cut, written


def _worker(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env, timeout=1800, cwd=REPO
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-4000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": round(time.perf_counter() - started, 3)}


def replay_worker(path: str) -> dict:
    """In a fresh interpreter: open, the end state folded, then the seeks, each timed."""
    started = time.perf_counter()
    from dspy_top.model import Fleet
    from dspy_top.recording import Recording
    from dspy_top.sources.collector import Collector
    from dspy_top.sources.replay import RecordingSource
    from dspy_top.sources.replay_timeline import Goto

    out: dict = {"import_s": round(time.perf_counter() - started, 3)}
    source = RecordingSource([Recording(path)])
    out["opened_s"] = round(time.perf_counter() - started, 3)
    fleet = Fleet(source.clock.now)
    collector = Collector(fleet, [source]).start()
    try:
        assert source.wait_reached(source.timeline.end, 120)
        out["end_state_s"] = round(time.perf_counter() - started, 3)
        with fleet.lock:
            snapshot = fleet.snapshot()
        out["calls"] = snapshot.totals.calls
        out["history"] = len(fleet.history)
        timeline = source.timeline
        trials = [mark for mark in timeline.trials]
        moves = [
            ("back_to_50%", lambda: source.moment(Goto("fraction", 0.5))),
            ("ahead_to_75%", lambda: source.moment(Goto("fraction", 0.75))),
            ("back_10s", lambda: source.clock.position() - 10),
            ("ahead_10s", lambda: source.clock.position() + 10),
            ("step_back", None),
            ("trial_in_the_middle", lambda: trials[len(trials) // 2].end),
            ("to_the_end", lambda: timeline.end),
        ]
        for name, where in moves:
            began = time.perf_counter()
            if where is None:
                source.step(-1)
                deadline = time.monotonic() + 60
                while not source.caught_up():
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
            else:
                moment = where()
                source.seek(moment)
                assert source.wait_reached(moment, 120), name
            out[f"seek_{name}_s"] = round(time.perf_counter() - began, 3)
    finally:
        collector.stop()
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _tmux(server: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True, timeout=10).stdout


def first_frame(path: Path, calls: int, runs: int = 3) -> dict:
    """Seconds from launching `dspy-top replay FILE` in tmux until its first frame (the replay bar), and
    until it shows the recording's end state (its final call count)."""
    marker = f"{calls:,} calls"
    firsts, ends = [], []
    for run in range(runs):
        server = f"dtreplay-{os.getpid()}-{run}"
        command = f"cd {REPO} && unset COLUMNS LINES && exec {sys.executable} -m dspy_top replay {path}"
        started = time.monotonic()
        _tmux(server, "new-session", "-d", "-s", "v", "-x", "120", "-y", "40", command)
        try:
            first = None
            while True:
                screen = _tmux(server, "capture-pane", "-p", "-t", "v")
                if first is None and "recording of" in screen and "dspy-top" in screen:
                    first = time.monotonic() - started
                if marker in screen:
                    firsts.append(first if first is not None else time.monotonic() - started)
                    ends.append(time.monotonic() - started)
                    break
                if time.monotonic() - started > 120:
                    raise TimeoutError(f"the replay never showed {marker!r}")
                time.sleep(0.005)
        finally:
            _tmux(server, "kill-server")
    return {
        "first_frame_s_median": _median(firsts),
        "end_state_on_screen_s_median": _median(ends),
        "first_frame_runs": [round(t, 3) for t in firsts],
        "end_state_runs": [round(t, 3) for t in ends],
    }


def _median(values: list[float]) -> float:
    return round(sorted(values)[len(values) // 2], 3)


def batch(path: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dspy_top", "replay", str(path), "-b", "-n", "1", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    elapsed = time.perf_counter() - started
    snapshot = json.loads(done.stdout)
    return {
        "batch_n1_s": round(elapsed, 3),
        "calls": snapshot["totals"]["calls"],
        "state": snapshot["processes"][0]["state"],
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        print(json.dumps(replay_worker(argv[1])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls in the recording (default 100,000)")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the recordings")
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="dtreplay"))
    directory.mkdir(parents=True, exist_ok=True)
    results: dict = {"calls": args.calls}
    try:
        file, cut, written = write(directory, args.calls)
        results["write_s"] = round(written, 1)
        results["bytes"] = file.stat().st_size
        print(
            f"recording: {args.calls:,} calls, {file.stat().st_size / 2**20:.1f} MiB, written in {written:.0f} s",
            flush=True,
        )
        for name, path in (("complete", file), ("killed", cut)):
            results[f"replay_{name}"] = _worker(str(path))
            print(f"replay {name}: {results[f'replay_{name}']}", flush=True)
        results["first_frame"] = first_frame(file, args.calls)
        print(f"first frame: {results['first_frame']}", flush=True)
        results["batch"] = batch(file)
        print(f"batch: {results['batch']}", flush=True)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
