"""Regenerate docs/screenshot.svg: the live view of a real `dspy-top demo` run, captured headless.

    python scripts/screenshot.py [--out docs/screenshot.svg] [--size 120x40] [--calls 600]

It starts the simulated LM and the demo job exactly as `dspy-top demo` does, opens the
viewer with Textual's headless driver, waits until the optimizer phase is under way
(`--calls` LM calls), and saves the screen as SVG.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from dspy_top import run
from dspy_top.model import Fleet
from dspy_top.simlm import SimLM
from dspy_top.viewer.app import TopApp

REPO = Path(__file__).resolve().parents[1]


async def capture(out: Path, width: int, height: int, calls: int, speed: float) -> None:
    sim = SimLM(latency_scale=speed).start()
    env = {**os.environ, "DSPY_TOP_DEMO_LM_URL": sim.base_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    runtime = Path(tempfile.mkdtemp(prefix="dts", dir="/tmp"))
    job = run.start_job([sys.executable, "-m", "dspy_top.demos.tour", "--questions", "40"], env=env,
                        runtime_dir=runtime)
    try:
        fleet = Fleet()
        app = TopApp(fleet, run.job_collector(fleet, job, runtime), delay=0.5, job=job)
        async with app.run_test(size=(width, height)) as pilot:
            for _ in range(1200):  # at most ten minutes
                await pilot.pause(0.5)
                if job.returncode() is not None:
                    raise SystemExit(f"the demo ended before {calls} calls; see {job.log_path}")
                snapshot = app.snapshot
                if snapshot is not None and snapshot.totals.calls >= calls:
                    break
            await pilot.pause(0.6)  # one more refresh, so the tables and sparklines agree
            out.parent.mkdir(parents=True, exist_ok=True)
            app.save_screenshot(filename=out.name, path=str(out.parent))
    finally:
        job.stop()
        job.close()
        sim.stop()
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.svg")
    parser.add_argument("--size", default="120x40", help="terminal columns x rows (default 120x40)")
    parser.add_argument("--calls", type=int, default=600, help="capture once the job made this many LM calls")
    parser.add_argument("--speed", type=float, default=0.5, help="simulated latency scale (default 0.5)")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.lower().split("x"))
    asyncio.run(capture(args.out, width, height, args.calls, args.speed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
