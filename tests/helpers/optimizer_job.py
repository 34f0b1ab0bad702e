"""tests/jobs/optimizer_job.py in a subprocess, for the optimizer view's and the replay's tests: one optimizer
command at a time, with the simulated LM's own count around it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dspy_top.simlm import SimLM
from tests.helpers.job_process import REPO, JobSubprocess

JOB = REPO / "tests" / "jobs" / "optimizer_job.py"


class OptimizerJob(JobSubprocess):
    """One optimizer job on `sim`, serving on `directory`."""

    def __init__(self, sim: SimLM, directory: Path) -> None:
        self.sim = sim
        self.directory = directory
        super().__init__(
            [sys.executable, str(JOB)],
            cwd=REPO,
            env={"SIM_URL": sim.base_url, "DSPY_TOP_RUNTIME_DIR": str(directory), "PYTHONPATH": str(REPO)},
        )
        self.socket_path = self.answer("READY", 120)

    def start(self, command: str) -> None:
        self.send(command)

    def run(self, command: str) -> dict:
        """The optimizer's own account, plus what the simulated LM counted during it."""
        before = self.sim.stats()
        self.start(command)
        truth = json.loads(self.answer("TRUTH", 600))
        after = self.sim.stats()
        truth["sim"] = {key: after[key] - before[key] for key in ("requests", "prompt_tokens")}
        return truth

    def close(self) -> None:
        self.kill()
