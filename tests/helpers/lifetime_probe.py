"""Does anything keep the program's objects alive once it drops them? Prints one JSON line.

Run plainly, or instrumented (`--top`, `--top-legacy`): a program on the simulated LM makes
ordinary, async, failing, evaluated and optimizer calls, then drops its LMs, modules, optimizer and
the exception it caught; after `gc.collect()` the probe reports which weak references died, how many calls
were still waiting for the recorder's fold when they did (the recorder's lock is held meanwhile,
so no fold can run), and how many TCP connections the dropped LM left open to its own
simulated LM (an LM kept alive keeps its engine's connection pool open).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import weakref

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from invisible_probe import MODEL, QA  # noqa: E402  (this script's directory is on sys.path)

from dspy_top.simlm import SimLM  # noqa: E402


def held_by(handle) -> set[int]:
    """Ids of every object dspy-top's own state reaches: its recorder, hooks, pending records,
    payload ring and scopes, through containers and dspy-top's objects (not through functions,
    classes or modules, which reach everything, nor through DSPy's settings)."""
    import types
    from collections import deque

    containers = (dict, list, tuple, set, frozenset, deque)
    stop = (types.FunctionType, types.MethodType, types.ModuleType, type, types.CodeType, types.BuiltinFunctionType)
    # DSPy's own settings, which the hooks read on each call: what is in them is DSPy's doing.
    seen: set[int] = {id(handle.hooks._main_config)}
    todo = [handle.recorder, handle.hooks]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, stop):
            continue
        if isinstance(obj, containers) or type(obj).__module__.startswith("dspy_top"):
            todo.extend(gc.get_referents(obj))
            slots = getattr(type(obj), "__slots__", ())
            todo.extend(getattr(obj, name) for name in slots if hasattr(obj, name))
    return seen


def open_connections(port: int) -> int:
    """This process's established TCP connections to 127.0.0.1:`port` (the client ends only)."""
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # remote port, ESTABLISHED
                count += 1
    return count


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "--plain"
    handle = None
    if mode == "--top-legacy":
        from dspy_top.instrumentation import lm_calls

        lm_calls.execution_is_familiar = lambda execution: False
    if mode != "--plain":
        import dspy_top

        handle = dspy_top.instrument()
    # The LM the program drops in `called` has a server of its own, so its connections can be counted.
    with SimLM(latency_scale=0.0) as sim, SimLM(latency_scale=0.0) as own:
        refs, report = {}, {"dspy": dspy.__version__}

        def evaluated():
            lm = dspy.LM(MODEL, api_base=sim.base_url, api_key="sim", cache=False)
            program = QA()
            program.answer.lm = lm
            devset = [
                dspy.Example(question=f"What is {i} + 1?", answer=str(i + 1)).with_inputs("question") for i in range(8)
            ]
            dspy.Evaluate(devset=devset, metric=lambda e, p, t=None: 1.0, num_threads=4, display_progress=False)(
                program
            )
            refs["evaluated_lm"], refs["evaluated_program"] = weakref.ref(lm), weakref.ref(program)

        def called():
            lm = dspy.LM(MODEL, api_base=own.base_url, api_key="sim", cache=False)
            program = QA()
            dspy.configure(lm=lm)
            for i in range(3):
                program(question=f"What is {i} + 2?")
            asyncio.run(program.acall(question="What is 5 + 5?"))
            dspy.Parallel(num_threads=4)([(program, {"question": f"What is {i} + 4?"}) for i in range(8)])
            dspy.configure(lm=None)
            report["connections_in_use"] = open_connections(own.port)
            refs["lm"], refs["program"], refs["predict"] = (
                weakref.ref(lm),
                weakref.ref(program),
                weakref.ref(program.answer),
            )

        def failed():
            lm = dspy.LM(MODEL, api_base="http://127.0.0.1:9/v1", api_key="sim", cache=False, num_retries=0)
            program = QA()
            program.answer.lm = lm
            try:
                program(question="unreachable")
            except Exception as exc:  # the program catches it, then drops it
                try:
                    refs["error"] = weakref.ref(exc)
                except TypeError:  # DSPy 2.6 raises a plain RuntimeError, which takes no weak reference
                    pass
            refs["failed_lm"] = weakref.ref(lm)

        def optimized():
            lm = dspy.LM(MODEL, api_base=sim.base_url, api_key="sim", cache=False)
            program = QA()
            trainset = [
                dspy.Example(question=f"What is {i} + 3?", answer=str(i + 3)).with_inputs("question") for i in range(4)
            ]
            optimizer = dspy.BootstrapFewShot(metric=lambda e, p, t=None: True, max_bootstrapped_demos=2)
            with dspy.context(lm=lm):
                compiled = optimizer.compile(program, trainset=trainset)
                compiled(question="What is 9 + 3?")
            refs["optimized_lm"], refs["optimizer"], refs["compiled"] = (
                weakref.ref(lm),
                weakref.ref(optimizer),
                weakref.ref(compiled),
            )

        evaluated()
        optimized()  # as evaluated(), before the lock: a compile and an evaluation tell the recorder at once
        # No fold while the rest runs: what dspy-top keeps must be free of the program's objects
        # even before its records are folded.
        lock = handle.recorder.lock if handle is not None else contextlib.nullcontext()
        with lock:
            called()
            failed()
            gc.collect()
            report["connections_left"] = open_connections(own.port)
            report["pending"] = len(handle.recorder.pending) if handle is not None else 0
            report["alive"] = sorted(name for name, ref in refs.items() if ref() is not None)
            reached = held_by(handle) if handle is not None else set()
            report["held"] = sorted(name for name, ref in refs.items() if ref() is not None and id(ref()) in reached)
            report["checked"] = sorted(refs)
        gc.collect()
        report["alive_after_fold"] = sorted(name for name, ref in refs.items() if ref() is not None)
        if handle is not None:
            report["calls"] = handle.stats()["totals"]["calls"]
    print("PROBE " + json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
