"""Real instrumented DSPy jobs for the viewer's tests, driven line by line over stdin.

As a script (the job): instruments itself, serves on `DSPY_TOP_RUNTIME_DIR`, prints
`READY <socket>`, then obeys stdin: `run N` makes N program calls (each 2 LM calls)
and prints `TRUTH <json>` (the recorder's exact stats); `exit` ends it.
As a module (the test side): `start_job()`, `JobProcess.run(n)`, `runtime_dir()`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


def runtime_dir() -> Path:
    """A fresh, short socket directory (AF_UNIX paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="dt", dir="/tmp"))


class JobProcess:
    """One job subprocess and its line protocol."""

    def __init__(self, directory: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        environment = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(directory), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                       "DSPY_CACHEDIR": str(directory / "cache"), "PYTHONPATH": str(REPO), **(env or {})}
        environment.pop("DSPY_TOP", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=environment, cwd=str(REPO),
        )
        self.socket_path = Path(self._expect("READY").split(" ", 1)[1])
        self.pid = self.proc.pid

    def _expect(self, word: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"job ended before {word}: {self.proc.stderr.read()[-3000:]}")
            if line.startswith(word):
                return line.strip()
        raise TimeoutError(word)

    def run(self, calls: int) -> dict:
        """Make `calls` program calls; returns the job's own exact stats afterwards."""
        self.proc.stdin.write(f"run {calls}\n")
        self.proc.stdin.flush()
        return json.loads(self._expect("TRUTH").split(" ", 1)[1])

    def exit(self, timeout: float = 15.0) -> int:
        try:
            self.proc.stdin.write("exit\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_job(directory: Path, *, lm: str = "dummy", history: int | None = None, cache: bool = False,
              errors: int | None = None) -> JobProcess:
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
