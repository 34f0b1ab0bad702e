"""With dspy-top on, a program sees exactly what it sees without it: arguments, signatures,
exceptions, warnings, pickles, DSPy's own save/load, and object lifetimes.

Each probe (tests/helpers/*_probe.py) runs in fresh processes on the simulated LM, plainly
and instrumented, with DSPy 3.4's wrappers (`--top`) and with those older DSPy gets
(`--top-legacy`, forced here; on an older DSPy both are the legacy ones), and the outputs
must be equal. Some values are also checked on their own, so that equal cannot mean
equally broken.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HELPERS = Path(__file__).parent / "helpers"
# Before 3.4 DSPy gets the legacy wrappers either way: forcing them would run the same thing twice.
MODES = ["--top"] + (["--top-legacy"] if importlib.util.find_spec("dspy.clients.execution") else [])

pytestmark = [pytest.mark.exactness, pytest.mark.slow]


def run_probe(script: str, mode: str, tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DSPY_TOP_RUNTIME_DIR": str(tmp_path),
        "DSPY_CACHEDIR": str(tmp_path / "cache"),
    }
    env.pop("DSPY_TOP", None)
    done = subprocess.run(
        [sys.executable, str(HELPERS / script), mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("PROBE "))
    return json.loads(line[len("PROBE ") :])


@pytest.fixture(scope="module")
def plain_probe(tmp_path_factory):
    return run_probe("invisible_probe.py", "--plain", tmp_path_factory.mktemp("plain"))


def differences(plain, top, path=""):
    """Every place where the two reports differ, as readable lines."""
    if isinstance(plain, dict) and isinstance(top, dict):
        return [
            line
            for key in sorted(set(plain) | set(top))
            for line in differences(plain.get(key, "<absent>"), top.get(key, "<absent>"), f"{path}.{key}")
        ]
    return [] if plain == top else [f"{path}: without {plain!r:.300} / with {top!r:.300}"]


@pytest.mark.parametrize("mode", MODES)
def test_wrapped_dspy_looks_and_behaves_the_same(plain_probe, mode, tmp_path):
    top = run_probe("invisible_probe.py", mode, tmp_path)
    assert differences(plain_probe, top) == []
    # Equal, and right: an optimizer's compile presents the program's own signature, name and doc.
    compile = top["targets"]["bound:Outer.compile"]
    assert compile["signature"] == "(student, *, trainset, optimizer=None, tool=None, call=None, lm=None, **kwargs)"
    assert (compile["qualname"], compile["module"], compile["method"]) == ("Outer.compile", "__main__", True)
    # The program's keywords reach the program, its exceptions reach it.
    collisions = top["collisions"]
    assert collisions["nested_optimizer"] == {"ok": ["answer"]}
    assert collisions["nested_optimizer_seen"] == {"ok": ["lm", "tool"]}
    assert collisions["tool_keywords"] == {"ok": 10} and collisions["tool_acall_keywords"] == {"ok": 6}
    assert "ok" in collisions["evaluate_keywords"]
    assert collisions["compile_self_keyword"]["message"] == "Outer.compile() got multiple values for argument 'self'"
    assert collisions["tool_self_keyword"]["message"].startswith("Tool.__call__() got multiple values")
    assert collisions["compile_is_same_method"] == {"ok": [True, "compile", "compile"]}
    assert collisions["compile_bound_equal"] == {"ok": [True, True, True]}
    exceptions = top["exceptions"]
    for name in ("tool", "tool_acall", "compile"):
        assert exceptions[name] == {"type": "Boom", "is_the_programs": True}, name
    assert exceptions["compile_unprintable"] is True
    # DSPy's warnings still name the program's line (a DeprecationWarning naming another module
    # is not shown by Python's default filters): none is attributed to dspy-top's wrappers.
    for name, seen in top["warnings"].items():
        assert all(warning[1] == "invisible_probe.py" for warning in seen["warnings"]), (name, seen)
    pickles = top["pickles"]
    for key, result in pickles.items():
        if key.endswith((":pickle", ":cloudpickle")) and "ok" in result:
            assert result["ok"]["mentions_dspy_top"] is False, key
    for key in (
        "module:cloudpickle",
        "lm:cloudpickle",
        "outer_optimizer:cloudpickle",
        "local_optimizer:cloudpickle",
        "local_optimizer_class:cloudpickle",
        "tool:cloudpickle",
        "local_optimizer_class:compiles",
    ):
        assert "ok" in pickles[key], (key, pickles[key])
    assert top["lm_requests"] > 0  # the evaluation really called the LM


@pytest.mark.parametrize("mode", MODES)
def test_an_optimizer_class_pickled_under_dspy_top_works_where_dspy_top_is_absent(mode, tmp_path):
    """cloudpickle copies a class from `__main__` or a function by value (as Ray, joblib and spawn do)."""
    pickled = tmp_path / "optimizers.pkl"
    writer = textwrap.dedent(f"""
        import os, sys
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        if {mode!r} == "--top-legacy":
            from dspy_top.instrumentation import lm_calls
            lm_calls.execution_is_familiar = lambda execution: False
        import cloudpickle, dspy, dspy_top
        from dspy.teleprompt.teleprompt import Teleprompter
        dspy_top.instrument(serve=False)

        class InMain(Teleprompter):
            def compile(self, student, *, trainset, optimizer=None):
                return (optimizer or dspy.LabeledFewShot(k=1)).compile(student, trainset=trainset)

        def make():
            class InFunction(dspy.BootstrapFewShot):
                pass
            return InFunction

        InMain().compile(dspy.Predict("q -> a"), trainset=[dspy.Example(q="1", a="2").with_inputs("q")])
        with open({str(pickled)!r}, "wb") as f:
            cloudpickle.dump([InMain, make()], f)
    """)
    reader = textwrap.dedent(f"""
        import os, pickle, sys
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        sys.modules["dspy_top"] = None  # this process has no dspy-top: importing it fails
        import dspy
        in_main, in_function = pickle.load(open({str(pickled)!r}, "rb"))
        trainset = [dspy.Example(q=str(i), a=str(i + 1)).with_inputs("q") for i in range(3)]
        compiled = in_main().compile(dspy.Predict("q -> a"), trainset=trainset, optimizer=dspy.LabeledFewShot(k=2))
        print("DEMOS", len(compiled.demos), in_function.__name__, sorted(vars(in_main)))
    """)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DSPY_TOP_RUNTIME_DIR": str(tmp_path)}
    env.pop("DSPY_TOP", None)
    for script in (writer, reader):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["DEMOS", "2", "InFunction", "['__doc__',", "'__module__',", "'compile']"]


@pytest.fixture(scope="module")
def plain_lifetimes(tmp_path_factory):
    return run_probe("lifetime_probe.py", "--plain", tmp_path_factory.mktemp("plain-life"))


@pytest.mark.parametrize("mode", MODES)
def test_objects_the_program_drops_are_freed_even_before_a_fold(plain_lifetimes, mode, tmp_path):
    top = run_probe("lifetime_probe.py", mode, tmp_path)
    assert top["pending"] > 0  # calls were still waiting for their fold when the objects died
    assert top["alive"] == plain_lifetimes["alive"]
    assert top["alive_after_fold"] == plain_lifetimes["alive_after_fold"]
    # Equal, and not because DSPy keeps them anyway (3.4's trace keeps an evaluated predictor,
    # 3.0 the LM of an async call, 3.2 the LM of a failed one): nothing dspy-top holds reaches them.
    assert top["held"] == [] and {"lm", "program", "failed_lm", "evaluated_lm"} <= set(top["checked"])
    # After an optimizer too: its LM, the optimizer and the program it compiled.
    assert {"optimized_lm", "optimizer", "compiled"} <= set(top["checked"])
    assert "optimized_lm" not in top["alive"] or "optimized_lm" in plain_lifetimes["alive"]
    assert top["calls"] >= 21 + 3
    # The dropped LM's HTTP connections close with it, as without dspy-top. (DSPy 3.4's LM owns
    # its pool; before, litellm's shared clients keep theirs, as many as the threads happened to
    # open, with or without dspy-top.)
    assert top["connections_in_use"] > 0 and plain_lifetimes["connections_in_use"] > 0
    if plain_lifetimes["connections_left"] == 0:
        assert top["connections_left"] == 0
