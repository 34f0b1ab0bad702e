"""Real instrumented DSPy jobs for the viewer's tests, driven line by line over stdin.

As a script (the job): instruments itself, serves on `DSPY_TOP_RUNTIME_DIR`, prints
`READY <socket>`, then obeys stdin: `run N` makes N program calls (each 2 LM calls)
and prints `TRUTH <json>` (the recorder's exact stats); `exit` ends it.
As a module (the test side): `start_job()`, `JobProcess.run(n)`, `runtime_dir()`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.job_process import REPO, JobSubprocess

HERE = Path(__file__).resolve()


def runtime_dir() -> Path:
    """A fresh, short socket directory (AF_UNIX paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="dt", dir="/tmp"))


class JobProcess(JobSubprocess):
    """One job subprocess (this file as a script) and its line protocol."""

    def __init__(self, directory: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        super().__init__(
            [sys.executable, str(HERE), *args],
            cwd=REPO,
            env={
                "DSPY_TOP_RUNTIME_DIR": str(directory),
                "DSPY_CACHEDIR": str(directory / "cache"),
                "PYTHONPATH": str(REPO),
                **(env or {}),
            },
        )
        self.socket_path = Path(self.next("READY")[1])

    def run(self, calls: int) -> dict:
        """Make `calls` program calls; returns the job's own exact stats afterwards."""
        self.send(f"run {calls}")
        return json.loads(self.answer("TRUTH"))

    def exit(self, timeout: float = 15.0) -> int:
        return super().exit(timeout)


def start_job(
    directory: Path, *, lm: str = "dummy", history: int | None = None, cache: bool = False, errors: int | None = None
) -> JobProcess:
    args = ["--lm", lm]
    if history is not None:
        args += ["--history", str(history)]
    if cache:
        args.append("--cache")
    if errors is not None:
        args += ["--errors", str(errors)]
    return JobProcess(directory, *args)


# --- the job itself ----------------------------------------------------------------------


def _job_main() -> None:  # pragma: no cover - runs in the subprocess
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--lm", choices=("dummy", "sim", "url"), default="dummy")  # url: the SimLM at $SIM_URL
    parser.add_argument("--history", type=int)
    parser.add_argument("--cache", action="store_true")
    parser.add_argument("--errors", type=int)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import dspy

    import dspy_top

    handle = dspy_top.instrument(history=args.history)
    if args.lm in ("sim", "url"):
        if args.lm == "sim":
            from dspy_top.simlm import SimLM

            sim = SimLM(latency_scale=0.0, error_every=args.errors).start()  # kept: it serves while the job runs
            base_url = sim.base_url
        else:
            base_url = os.environ["SIM_URL"]  # the test's own: its ledger is the truth
        lm = dspy.LM("openai/gpt-4o-mini", api_base=base_url, api_key="sim", cache=args.cache, num_retries=3)
    else:
        from dspy.utils.dummies import DummyLM

        lm = DummyLM([{"query": "q", "reasoning": "r", "answer": "4"}] * 100_000)
    dspy.configure(lm=lm)

    class RAG(dspy.Module):
        def __init__(self):
            super().__init__()
            self.generate_query = dspy.ChainOfThought("question -> query")
            self.answer = dspy.Predict("question, query -> answer")

        def forward(self, question):
            query = self.generate_query(question=question).query
            return self.answer(question=question, query=query)

    program = RAG()
    print("READY", handle.socket_path, flush=True)
    done = 0
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "run":
            for _ in range(int(command[1])):
                question = f"What is {done % 3 if args.cache else done} + 2?"
                try:
                    program(question=question)
                except Exception:
                    pass
                done += 1
            time.sleep(0.01)
            print("TRUTH", json.dumps(handle.stats(), default=str), flush=True)
        elif command[0] == "exit":
            break


if __name__ == "__main__":
    _job_main()
