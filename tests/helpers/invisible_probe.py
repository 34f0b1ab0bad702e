"""Everything a program can observe of DSPy's wrapped functions (signatures, keywords,
exceptions, warnings, pickles, DSPy's save/load), printed as one JSON object.

Run as a script, once plainly and once instrumented (`--top`, or `--top-legacy` to force the
wrappers DSPy 2.6 to 3.3 get): tests/test_invisible.py compares the two outputs, which must be
equal, and checks some values on their own. Every check catches what it raises, so a check
that fails without dspy-top must fail the same way with it. Runs against the simulated LM.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import inspect
import json
import os
import pickle
import re
import sys
import tempfile
import traceback

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import cloudpickle  # noqa: E402
import dspy  # noqa: E402
from dspy.teleprompt.teleprompt import Teleprompter  # noqa: E402

from dspy_top.simlm import SimLM  # noqa: E402

MODEL = "openai/gpt-4o-mini"


class Boom(Exception):
    """The program's own exception, raised as one prepared instance so identity can be checked."""


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("this exception cannot be printed")


def outcome(run):
    """What running `run()` gave: its value, or the exception's type and message."""
    try:
        return {"ok": run()}
    except BaseException as exc:  # noqa: BLE001 - the probe reports every outcome
        try:
            message = str(exc)
        except Exception:
            message = "<unprintable>"
        return {"raised": type(exc).__name__, "message": message.replace(os.getcwd(), ".")}


def describe(obj):
    """How a callable presents itself: signature, names, doc, kind."""
    try:
        signature = str(inspect.signature(obj))
    except (TypeError, ValueError) as exc:
        signature = f"<{type(exc).__name__}>"
    doc = inspect.getdoc(obj) or ""
    return {
        "signature": signature,
        "name": getattr(obj, "__name__", None),
        "qualname": getattr(obj, "__qualname__", None),
        "module": getattr(obj, "__module__", None),
        "doc": hashlib.sha1(doc.encode()).hexdigest()[:12],
        "coroutine": inspect.iscoroutinefunction(obj),
        "method": inspect.ismethod(obj),
    }


def targets():
    """Every function and method dspy-top may wrap, on whichever DSPy is installed."""
    import importlib

    names = [
        ("dspy.clients.execution", "execute"),
        ("dspy.clients.execution", "aexecute"),
        ("dspy.clients.execution", "_delay"),
        ("dspy.clients.execution", "_account_failed_call"),
        ("dspy.clients.base_lm", "BaseLM.__call__"),
        ("dspy.clients.base_lm", "BaseLM.acall"),
        ("dspy.clients.base_lm", "BaseLM._process_lm_response"),
        ("dspy.clients.base_lm", "BaseLM._finalize_lm_response"),
        ("dspy.clients.base_lm", "BaseLM.update_history"),
        ("dspy.clients.base_lm", "BaseLM.update_global_history"),
        ("dspy.utils.dummies", "DummyLM.__call__"),
        ("dspy.utils.dummies", "DummyLM.acall"),
        ("dspy.clients.cache", "Cache.get"),
        ("httpx", "Client.send"),
        ("httpx", "AsyncClient.send"),
        ("dspy.evaluate.evaluate", "Evaluate.__call__"),
        ("dspy.utils.parallelizer", "ParallelExecutor._update_progress"),
        ("dspy.adapters.types.tool", "Tool.__call__"),
        ("dspy.adapters.types.tool", "Tool.acall"),
        ("dspy.clients.lm", "_get_stream_completion_fn"),
        ("dspy.teleprompt.teleprompt", "Teleprompter.__getattribute__"),
        ("dspy.teleprompt.teleprompt", "Teleprompter.compile"),
    ]
    out = {}
    for module_name, path in names:
        try:
            obj = importlib.import_module(module_name)
            for part in path.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        out[f"{module_name}:{path}"] = describe(obj)
    # What a program looks up on its own objects: an optimizer's compile (dspy-top hands it out
    # bound to a scoped wrapper), a Tool's and an Evaluate's call.
    for name, make in (
        ("Outer.compile", lambda: Outer().compile),
        ("Local.compile", lambda: make_optimizer_class()().compile),
        ("BootstrapFewShot.compile", lambda: dspy.BootstrapFewShot(metric=metric).compile),
        ("Tool.__call__", lambda: dspy.Tool(tool_function).__call__),
        ("Tool.acall", lambda: dspy.Tool(tool_function).acall),
        ("Evaluate.__call__", lambda: dspy.Evaluate(devset=trainset(), metric=metric).__call__),
    ):
        out[f"bound:{name}"] = describe(make())
    return out


# --- the program's own classes ---------------------------------------------------------


class QA(dspy.Module):
    def __init__(self):
        super().__init__()
        self.answer = dspy.Predict("question -> answer")

    def forward(self, question):
        return self.answer(question=question)

    async def aforward(self, question):
        return await self.answer.acall(question=question)


class Outer(Teleprompter):
    """A nested optimizer: its compile takes keywords named like dspy-top's own parameters."""

    def __init__(self, k=2):
        self.k = k

    def compile(self, student, *, trainset, optimizer=None, tool=None, call=None, lm=None, **kwargs):
        inner = optimizer or dspy.LabeledFewShot(k=self.k)
        compiled = inner.compile(student, trainset=trainset)
        compiled.seen = sorted(k for k, v in {"tool": tool, "call": call, "lm": lm, **kwargs}.items() if v is not None)
        return compiled


def make_optimizer_class(base=Teleprompter):
    """A Teleprompter subclass defined in a function: cloudpickle copies it by value."""

    class Local(base):
        def __init__(self, k=1):
            self.k = k

        def compile(self, student, *, trainset, teacher=None, valset=None):
            return dspy.LabeledFewShot(k=self.k).compile(student, trainset=trainset)

    return Local


def trainset():
    return [dspy.Example(question=f"What is {i} + {i}?", answer=str(2 * i)).with_inputs("question") for i in range(4)]


def metric(example, prediction, trace=None):
    return float(str(getattr(prediction, "answer", "")).strip() == example.answer)


def tool_function(tool: int, lm: int = 0, call: int = 0, args: int = 0) -> int:
    """Adds numbers; its parameters are named like dspy-top's own."""
    return tool + lm + call + args


BOOM = Boom("raised by the program")


class RaisingLM(dspy.BaseLM):
    """An LM of the program's whose every call raises the program's own exception instance."""

    def forward(self, prompt=None, messages=None, **kwargs):
        raise BOOM

    async def aforward(self, prompt=None, messages=None, **kwargs):
        raise BOOM


def raising_tool(x: int) -> int:
    """Always raises the program's own exception instance."""
    raise BOOM


# --- the checks ------------------------------------------------------------------------


def collisions():
    program = QA()
    out = {
        "nested_optimizer": outcome(
            lambda: sorted(
                Outer()
                .compile(program, trainset=trainset(), optimizer=dspy.LabeledFewShot(k=1), tool=1, call=2, lm=3)
                .dump_state()
            )
        ),
        "nested_optimizer_seen": outcome(lambda: Outer().compile(program, trainset=trainset(), tool=1, lm=3).seen),
        "compile_self_keyword": outcome(lambda: Outer().compile(program, trainset=trainset(), self=1)),
        "compile_missing_argument": outcome(lambda: Outer().compile()),
        "compile_by_class": outcome(lambda: sorted(Outer.compile(Outer(), program, trainset=trainset()).dump_state())),
        "compile_is_same_method": outcome(
            lambda: (lambda o: [o.compile.__self__ is o, o.compile.__name__, o.compile.__func__.__name__])(Outer())
        ),
        "compile_bound_equal": outcome(_bound_compile_equality),
        "tool_keywords": outcome(lambda: dspy.Tool(tool_function)(tool=1, lm=2, call=3, args=4)),
        "tool_acall_keywords": outcome(lambda: asyncio.run(dspy.Tool(tool_function).acall(tool=1, lm=2, call=3))),
        "tool_self_keyword": outcome(lambda: dspy.Tool(tool_function)(self=1)),
        "tool_positional": outcome(lambda: dspy.Tool(tool_function)(1)),
        "evaluate_keywords": outcome(
            lambda: _score(dspy.Evaluate(devset=trainset(), metric=metric, display_progress=False)(program=program))
        ),
        "evaluate_self_keyword": outcome(lambda: dspy.Evaluate(devset=trainset(), metric=metric)(program, self=1)),
        "evaluate_no_program": outcome(lambda: dspy.Evaluate(devset=trainset(), metric=metric)()),
        "lm_self_keyword": outcome(lambda: dspy.settings.lm(self=1)),
    }
    return out


def _bound_compile_equality():
    """Two lookups of a method give equal bound methods (a program may compare or hash them)."""
    optimizer = Outer()
    held = optimizer.compile
    return [optimizer.compile == optimizer.compile, held == optimizer.compile, hash(held) == hash(optimizer.compile)]


def _predict_with(lm):
    with dspy.context(lm=lm):
        return dspy.Predict("question -> answer")(question="What is 1 + 1?")


def _score(result):
    return float(getattr(result, "score", result[0] if isinstance(result, tuple) else result))


def exceptions():
    def raised(run):
        try:
            run()
        except BaseException as exc:  # noqa: BLE001
            return {"type": type(exc).__name__, "is_the_programs": exc is BOOM}
        return None

    unprintable = Unprintable()

    class Failing(Teleprompter):
        def compile(self, student, *, trainset):
            raise BOOM

    class FailingUnprintably(Teleprompter):
        def compile(self, student, *, trainset):
            raise unprintable

    def caught(run, instance):
        try:
            run()
        except BaseException as exc:  # noqa: BLE001
            return exc is instance
        return None

    return {
        "tool": raised(lambda: dspy.Tool(raising_tool)(x=1)),
        "tool_acall": raised(lambda: asyncio.run(dspy.Tool(raising_tool).acall(x=1))),
        "compile": raised(lambda: Failing().compile(QA(), trainset=trainset())),
        "lm": raised(lambda: RaisingLM("custom/raising")("hello")),
        "lm_acall": raised(lambda: asyncio.run(RaisingLM("custom/raising").acall("hello"))),
        "lm_in_predict": raised(lambda: _predict_with(RaisingLM("custom/raising"))),
        "compile_unprintable": caught(lambda: FailingUnprintably().compile(QA(), trainset=trainset()), unprintable),
        "evaluate_bad_devset": outcome(lambda: dspy.Evaluate(devset=None, metric=metric)(QA())),
    }


def pickles(tmp):
    lm = dspy.settings.lm
    program = QA()
    program.answer.lm = lm
    local_class = make_optimizer_class()
    objects = {
        "module": program,
        "lm": lm,
        "optimizer": dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=1),
        "outer_optimizer": Outer(k=3),
        "local_optimizer": local_class(k=2),
        "local_optimizer_class": local_class,
        "evaluate": dspy.Evaluate(devset=trainset(), metric=metric),
        "tool": dspy.Tool(tool_function),
    }
    out = {}
    for name, obj in objects.items():
        for how, dump, load in (
            ("pickle", pickle.dumps, pickle.loads),
            ("cloudpickle", cloudpickle.dumps, pickle.loads),
        ):

            def round_trip(dump=dump, load=load, obj=obj):
                data = dump(obj)
                loaded = load(data)
                return {"mentions_dspy_top": b"dspy_top.instrumentation" in data, "state": _state(loaded)}

            out[f"{name}:{how}"] = outcome(round_trip)
        out[f"{name}:deepcopy"] = outcome(lambda obj=obj: _state(copy.deepcopy(obj)))
    # The pickled class still compiles once loaded.
    out["local_optimizer_class:compiles"] = outcome(
        lambda: sorted(
            pickle.loads(cloudpickle.dumps(local_class))(k=1).compile(QA(), trainset=trainset()).dump_state()
        )
    )
    # DSPy's own persistence.
    path = os.path.join(tmp, "program.json")
    out["save_json"] = outcome(lambda: (program.save(path), json.load(open(path)))[1])
    out["load_json"] = outcome(lambda: (lambda fresh: (fresh.load(path), fresh.dump_state())[1])(QA()))
    directory = os.path.join(tmp, "whole")
    out["save_program"] = outcome(
        lambda: (
            program.save(directory, save_program=True),
            b"dspy_top.instrumentation" in open(os.path.join(directory, "program.pkl"), "rb").read(),
        )[1]
    )
    out["load_program"] = outcome(lambda: _state(dspy.load(directory)))
    out["lm_dump_state"] = outcome(lambda: lm.dump_state())
    return out


class ShortcutEngine:
    """A custom engine (DSPy 3.4) still using the deprecated `complete_legacy` shortcut, which
    DSPy warns about from inside its execution, aiming the warning at the program's line."""

    def complete(self, request):
        raise NotImplementedError

    def complete_legacy(self, lm, request, *, prompt=None, messages=None, **context):
        from dspy.clients.call_result import CallResult
        from dspy.lm15 import Message, Response, TextPart, Usage

        text = "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
        return CallResult.native(
            Response(
                id=None,
                model="shortcut",
                message=Message.assistant([TextPart(text)]),
                finish_reason="stop",
                usage=Usage(input_tokens=1, output_tokens=1, total_tokens=2),
            )
        )


def _evaluate_on_shortcut_engine():
    """An evaluation on the program's thread of a DSPy module itself: the walk out of DSPy's frames
    passes Evaluate.__call__ to reach the program's line."""
    with dspy.context(lm=dspy.LM("custom/shortcut", engine=ShortcutEngine(), cache=False)):
        return _score(
            dspy.Evaluate(devset=trainset()[:1], metric=metric, num_threads=1, display_progress=False)(
                dspy.Predict("question -> answer")
            )
        )


def warned():
    """The warnings DSPy raises through the wrapped functions, and where each is attributed:
    Python's default filters show a DeprecationWarning only when it names `__main__`."""
    import warnings

    out = {}
    for name, run in (
        ("shortcut_engine", lambda: dspy.LM("custom/shortcut", engine=ShortcutEngine(), cache=False)("hello")),
        ("legacy_lm", lambda: outcome(lambda: RaisingLM("custom/raising")("hello"))),
        ("in_evaluate", _evaluate_on_shortcut_engine),
    ):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result = outcome(run)
        out[name] = {
            "outcome": "ok" if "ok" in result else result,
            # A ResourceWarning comes from whatever the garbage collector finalizes then.
            "warnings": [
                [w.category.__name__, os.path.basename(w.filename), w.lineno]
                for w in seen
                if not issubclass(w.category, ResourceWarning)
            ],
        }
    return out


def _state(obj):
    """A comparable summary of an object: its DSPy state, or its attributes' names."""
    if isinstance(obj, type):
        return {"class": obj.__name__, "dict": sorted(k for k in vars(obj) if k not in ("__weakref__", "__dict__"))}
    if hasattr(obj, "dump_state"):
        try:
            return obj.dump_state()
        except Exception as exc:  # noqa: BLE001
            return f"dump_state raised {type(exc).__name__}"
    return {"class": type(obj).__name__, "attributes": sorted(vars(obj))}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "--plain"
    if mode == "--top-legacy":
        from dspy_top.instrumentation import lm_calls

        lm_calls.execution_is_familiar = lambda execution: False
    if mode in ("--top", "--top-legacy"):
        import dspy_top

        handle = dspy_top.instrument(serve=False)
        assert handle.mechanism in ("execution-hooks", "lm-call-fallback"), handle.mechanism
    with SimLM(latency_scale=0.0) as sim, tempfile.TemporaryDirectory() as tmp:
        dspy.configure(lm=dspy.LM(MODEL, api_base=sim.base_url, api_key="sk-sim-0123456789", cache=False))
        report = {"dspy": dspy.__version__}
        for name, check in (
            ("targets", targets),
            ("collisions", collisions),
            ("exceptions", exceptions),
            ("pickles", lambda: pickles(tmp)),
            ("warnings", warned),
        ):
            try:
                report[name] = check()
            except Exception:  # noqa: BLE001 - a broken check must show, not hide the others
                report[name] = {"probe_failed": traceback.format_exc()}
        report["lm_requests"] = sim.stats()["requests"]
        text = json.dumps(report, sort_keys=True, default=repr).replace(sim.base_url, "<sim>")
    # Object addresses differ from run to run.
    print("PROBE " + re.sub(r"0x[0-9a-f]+", "0x?", text))


if __name__ == "__main__":
    main()
