"""The agent's log: one line when a job is seen, one when it ends (or cannot be attached), from `JobView`s."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dspy_top.serve.watch import ENDED, FAILED, LOST, RUNNING, JobView


class Journal:
    """Says what changed since the last `update`; each job is announced once and its end once."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self._said: dict[tuple, str] = {}  # job identity -> the last state logged

    def update(self, jobs: Iterable[JobView]) -> None:
        for job in jobs:
            identity = _identity(job)
            said = self._said.get(identity)
            if job.state == RUNNING and said is None:
                self.log(f"job {job.pid} ({job.job}) seen: {job.command}")
                self._said[identity] = RUNNING
            elif job.state in (ENDED, LOST) and said != job.state:
                if said is None:  # ended before this agent saw it run: still one line for its start
                    self.log(f"job {job.pid} ({job.job}) seen: {job.command}")
                self.log(f"job {job.pid} ({job.job}) {job.status}: {_numbers(job)}")
                self._said[identity] = job.state
            elif job.state == FAILED and said != FAILED:
                what = f"job {job.pid}" if job.pid else "a socket"
                self.log(f"{what} at {job.key}: cannot attach: {job.status} (the other jobs are served)")
                self._said[identity] = FAILED

    def forget(self, job: JobView) -> None:
        self._said.pop(_identity(job), None)


def _identity(job: JobView) -> tuple:
    # Not the key alone: a job whose pid a new process reuses is kept under another key, and is the same job.
    return (job.pid, job.started_at) if job.started_at else (job.key,)


def _numbers(job: JobView) -> str:
    totals = job.totals
    cost = f"${totals.cost_usd:.4f}" + ("" if totals.cost_known else f" (+{totals.unpriced_calls} unpriced calls)")
    return f"{totals.calls:,} calls, {totals.prompt_tokens + totals.completion_tokens:,} tokens, {cost}"
