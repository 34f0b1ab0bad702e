"""Regenerate the README's pictures: the live view of a real `dspy-top demo` run, captured headless.

    python scripts/screenshot.py [--out docs/screenshot.svg] [--optimizers-out docs/screenshot-optimizers.svg]
                                 [--size 120x40] [--calls 600] [--speed 0.5]

It starts the simulated LM and the demo job exactly as `dspy-top demo` does, opens the viewer
with Textual's headless driver, waits until MIPROv2 is under way (`--calls` LM calls and a
trial), saves the main screen (the job's output pane hidden with `l`, so the data has the
room), then presses `o` and saves the optimizer view.
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


def _mipro_trial_running(app: TopApp) -> bool:
    snapshot = app.snapshot
    return snapshot is not None and any(
        run.class_name == "MIPROv2" and run.current is not None and run.current.number >= 2
        for run in snapshot.optimizers
    )


async def capture(main_out: Path, optimizers_out: Path, width: int, height: int, calls: int, speed: float) -> None:
    sim = SimLM(latency_scale=speed).start()
    env = {**os.environ, "DSPY_TOP_DEMO_LM_URL": sim.base_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    runtime = Path(tempfile.mkdtemp(prefix="dts", dir="/tmp"))
    job = run.start_job(
        [sys.executable, "-m", "dspy_top.demos.tour", "--questions", "40"], env=env, runtime_dir=runtime
    )
    try:
        fleet = Fleet()
        app = TopApp(fleet, run.job_collector(fleet, job, runtime), delay=0.5, job=job)
        async with app.run_test(size=(width, height)) as pilot:
            for _ in range(1200):  # at most ten minutes
                await pilot.pause(0.5)
                if job.returncode() is not None:
                    raise SystemExit(f"the demo ended before {calls} calls and a MIPROv2 trial")
                snapshot = app.snapshot
                if snapshot is not None and snapshot.totals.calls >= calls and _mipro_trial_running(app):
                    break
            await pilot.press("l")  # the job's output pane steps aside: the data gets the room
            await pilot.pause(1.1)  # a refresh or two, so the tables and sparklines agree
            for out in (main_out, optimizers_out):
                out.parent.mkdir(parents=True, exist_ok=True)
            app.save_screenshot(filename=main_out.name, path=str(main_out.parent))
            await pilot.press("o")
            await pilot.pause(0.6)
            app.save_screenshot(filename=optimizers_out.name, path=str(optimizers_out.parent))
    finally:
        job.stop()
        job.close()
        sim.stop()
    print(f"wrote {main_out} and {optimizers_out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.svg")
    parser.add_argument("--optimizers-out", type=Path, default=REPO / "docs" / "screenshot-optimizers.svg")
    parser.add_argument("--size", default="120x40", help="terminal columns x rows (default 120x40)")
    parser.add_argument("--calls", type=int, default=600, help="capture once the job made this many LM calls")
    parser.add_argument("--speed", type=float, default=0.5, help="simulated latency scale (default 0.5)")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.lower().split("x"))
    asyncio.run(capture(args.out, args.optimizers_out, width, height, args.calls, args.speed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
