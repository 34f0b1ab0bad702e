"""A job whose LM calls are made in multiprocessing pool workers, for the final-numbers tests.

Usage: python pool_job.py METHOD END [TASKS [lazy]]
METHOD: fork or forkserver. END: `terminate` (`with Pool() as pool:`, which terminates the
workers on leaving, as most programs do) or `join` (close() and join(): the workers end
by themselves). Each task makes 5 LM calls (DummyLM); prints DONE <calls> at the end.
`lazy`: dspy is imported by the tasks only, so a forkserver worker imports it in its first task.
"""

import multiprocessing
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

if "lazy" not in sys.argv[4:]:
    import dspy  # noqa: F401

CALLS_PER_TASK = 5


def task(number: int) -> int:
    import dspy
    from dspy.utils.dummies import DummyLM

    lm = DummyLM([{"answer": str(number)}] * CALLS_PER_TASK)
    lm.cache = False
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        for _ in range(CALLS_PER_TASK):
            predict(question=f"task {number}")
    _wait_for_a_viewer()
    time.sleep(0.02)
    return CALLS_PER_TASK


def _wait_for_a_viewer(timeout: float = 60.0) -> None:
    """Each worker's first task waits until dspy-top has attached to it (its socket starts with
    its first LM call): a worker the viewer never saw could not send it anything."""
    from dspy_top.instrumentation import runtime

    handle = runtime.active()
    deadline = time.monotonic() + timeout
    while handle is not None and handle.server is not None and not handle.server.ever_attached:
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)


def main() -> None:
    method, end = sys.argv[1], sys.argv[2]
    tasks = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    context = multiprocessing.get_context(method)
    if end == "terminate":
        with context.Pool(2) as pool:
            total = sum(pool.map(task, range(tasks), chunksize=1))
    else:
        pool = context.Pool(2)
        total = sum(pool.map(task, range(tasks), chunksize=1))
        pool.close()
        pool.join()
    print("DONE", total, flush=True)


if __name__ == "__main__":
    main()
