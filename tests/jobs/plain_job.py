"""A DSPy job started WITHOUT dspy-top, for the `dspy-top attach` tests: it never imports dspy_top.

    python plain_job.py MODE [N]      (env: SIM_URL, the simulated LM; DSPY_CACHEDIR)

Prints `READY <pid>` once dspy is imported and the LM configured, then runs MODE:
- `sequential N`: N program calls (two LM calls each), one after another;
- `evaluate N`: `dspy.Evaluate(num_threads=8)` over N examples;
- `mipro`: MIPROv2 (light) on an arithmetic set, its metric slow enough to attach mid-trial;
- `busy`: 8 threads making program calls until stdin says `stop`;
- `idle`: nothing.
Then prints `RESULT <json>` (what the program returned, to compare with an unattached run) and
obeys stdin: `status` prints `STATUS <json>` (threads, file descriptors, calls made, errors,
the longest pause a 1 ms ticker thread saw), `stop` ends `busy`, `exit` ends the job. A thread
reads stdin; the main thread waits meanwhile in a C call (joining `busy`'s threads, or on an
event), as a job joining a thread pool does.
"""

import json
import os
import sys
import threading
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

assert "dspy_top" not in sys.modules, "this job must run without dspy-top"

lm = dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=False)
dspy.configure(lm=lm)


class Pause:
    """A thread ticking every millisecond: the longest gap it sees is the longest pause of the job."""

    def __init__(self) -> None:
        self.longest = 0.0
        threading.Thread(target=self._tick, name="ticker", daemon=True).start()

    def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def take(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest


class RAG(dspy.Module):
    def __init__(self):
        super().__init__()
        self.generate_query = dspy.ChainOfThought("question -> query")
        self.answer = dspy.Predict("question, query -> answer")

    def forward(self, question):
        query = self.generate_query(question=question).query
        return self.answer(question=question, query=query)


def examples(n, offset=0):
    return [
        dspy.Example(question=f"What is {i} + {3 * i + offset}?", answer=str(4 * i + offset)).with_inputs("question")
        for i in range(n)
    ]


def metric(example, prediction, trace=None):
    return example.answer == str(prediction.answer).strip()


def slow_metric(example, prediction, trace=None):
    time.sleep(0.02)
    return metric(example, prediction)


def sequential(n):
    program = RAG()
    return [program(question=e.question).answer for e in examples(n)]


def evaluate(n):
    result = dspy.Evaluate(devset=examples(n), metric=metric, num_threads=8, display_progress=False)(
        dspy.Predict("question -> answer")
    )
    return {"score": result.score, "answers": [str(p.answer) for _, p, _ in result.results]}


def mipro():
    data = examples(40)
    optimizer = dspy.MIPROv2(metric=slow_metric, auto="light", num_threads=2, verbose=False, seed=9)
    program = optimizer.compile(dspy.ChainOfThought("question -> answer"), trainset=data[:20], valset=data[20:])
    logs = {
        str(k): {"full": v.get("full_eval_score"), "minibatch": v.get("mb_score")}
        for k, v in sorted(program.trial_logs.items())
    }
    return {"best": program.score, "trial_logs": logs}


class Busy:
    def __init__(self) -> None:
        self.calls = self.errors = 0
        self.stopping = threading.Event()
        self.program = RAG()
        self.threads = [threading.Thread(target=self._work, args=(i,), name=f"busy-{i}") for i in range(8)]
        for thread in self.threads:
            thread.start()

    def _work(self, index):
        n = 0
        while not self.stopping.is_set():
            try:
                self.program(question=f"What is {index} + {n}?")
                self.calls += 1
            except Exception:
                self.errors += 1
            n += 1

    def join(self):
        """Until `stop`: the main thread waits here, in a lock acquire (a C call), as on a thread pool."""
        for thread in self.threads:
            thread.join()
        return {"calls": self.calls, "errors": self.errors}


def status(pause, busy):
    fds = os.listdir("/proc/self/fd")
    return {
        "threads": threading.active_count(),
        "tasks": len(os.listdir("/proc/self/task")),
        "fds": len(fds),
        "calls": busy.calls if busy else None,
        "errors": busy.errors if busy else None,
        "longest_pause_s": pause.take(),
        "dspy_top_hooks": _hooked(),
    }


def _hooked():
    from dspy.clients import execution

    return execution.execute.__module__ != "dspy.clients.execution"


def main():
    mode = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    pause = Pause()
    finished = threading.Event()
    jobs = {"busy": None}

    def commands():
        for line in sys.stdin:
            command = line.strip()
            if command == "status":
                print("STATUS " + json.dumps(status(pause, jobs["busy"])), flush=True)
            elif command == "stop" and jobs["busy"] is not None:
                jobs["busy"].stopping.set()
            elif command == "exit":
                break
        if jobs["busy"] is not None:
            jobs["busy"].stopping.set()
        finished.set()

    print("READY", os.getpid(), flush=True)
    if mode == "sequential":
        print("RESULT " + json.dumps(sequential(n)), flush=True)
    elif mode == "evaluate":
        print("RESULT " + json.dumps(evaluate(n)), flush=True)
    elif mode == "mipro":
        print("RESULT " + json.dumps(mipro()), flush=True)
    elif mode == "busy":
        jobs["busy"] = Busy()
    threading.Thread(target=commands, name="commands", daemon=True).start()
    if jobs["busy"] is not None:
        print("RESULT " + json.dumps(jobs["busy"].join()), flush=True)
    finished.wait()


if __name__ == "__main__":
    main()
