"""CPU time of dspy-top's own per-call code: one real DSPy 3.4 call replayed through the hooks.

    python benchmarks/hot_path.py [predict|pipeline] [CALLS]
    PYTHONPATH=/path/to/other/checkout python benchmarks/hot_path.py   # the same on other code

One call of the scenario's program (overhead.py's fixed LM) is captured at DSPy's `execute`;
then `Hooks.begin` and `Hooks.finish_ok` run on it CALLS times per block inside the same
module context, with the recorder folding every 500 calls as its server thread would, and
the process's CPU time per call is printed (median and fastest of 15 blocks). No DSPy code,
no socket and no viewer run in the timed loop, so two versions of dspy-top can be compared to
a fraction of a microsecond on a machine too noisy for overhead.py's whole-call figures.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy  # noqa: E402
import overhead  # noqa: E402  (this directory)
from dspy.clients import execution  # noqa: E402

import dspy_top  # noqa: E402


def main() -> None:
    scenario = sys.argv[1] if len(sys.argv) > 1 else "pipeline"
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    handle = dspy_top.instrument(serve=False)
    hooks, recorder = handle.hooks, handle.recorder
    dspy.configure(lm=overhead.fixed_lm())
    program = overhead.build_program(scenario)
    captured = []
    original = execution.execute

    def capture(lm, call):
        result = original(lm, call)
        captured.append((lm, call, result, dspy.settings.caller_modules))
        return result

    hooks.uninstall()
    execution.execute = capture
    program(question="q 1")
    execution.execute = original
    hooks.install()
    lm, call, result, modules = captured[-1]
    blocks = []
    with dspy.settings.context(caller_modules=modules):
        for _ in range(15):
            started = time.process_time()
            for i in range(calls):
                hooks.finish_ok(hooks.begin(lm), lm, call, result)
                if i % 500 == 499:
                    recorder.fold()
            recorder.fold()
            blocks.append((time.process_time() - started) / calls * 1e6)
    print(
        f"{scenario}: {statistics.median(blocks):.2f} µs of CPU per call (fastest block {min(blocks):.2f}); "
        f"dspy_top from {Path(dspy_top.__file__).parent.parent}"
    )
    handle.close()


if __name__ == "__main__":
    main()
