"""Instrumentation at its edges: no-code-change start, other callbacks beside it, an unfamiliar
DSPy, internal failures. Each runs a real DSPy job on the simulated LM in a fresh process."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = pytest.mark.slow  # every test here starts a job, a terminal or the real app

JOB = """
import json, os, sys
os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'
import dspy
{setup}
lm = dspy.LM('openai/gpt-4o-mini', api_base=os.environ['SIM_URL'], api_key='sim', cache=False)
dspy.configure(lm=lm{configure})
program = dspy.ChainOfThought('question -> answer')
answers = [program(question=f'What is {{i}} + 2?').answer for i in range(3)]
{after}
from dspy_top.instrumentation import runtime

handle = runtime.active()
totals = handle.stats()['totals'] if handle else None
print(json.dumps({{'answers': answers, 'totals': totals, 'mechanism': handle.mechanism if handle else None,
                   'history': len(lm.history), **extra}}))
"""


def run_job(sim, setup="", configure="", after="extra = {}", env=None):
    script = textwrap.dedent(JOB).format(
        setup=textwrap.dedent(setup), configure=configure, after=textwrap.dedent(after)
    )
    sim.reset()
    runtime = tempfile.mkdtemp(prefix="dt", dir="/tmp")
    full_env = {**os.environ, "SIM_URL": sim.base_url, "DSPY_TOP_RUNTIME_DIR": runtime, **(env or {})}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=full_env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_dspy_top_env_instruments_with_no_code_change(sim):
    result, stderr = run_job(sim, env={"DSPY_TOP": "1"})
    assert result["mechanism"] == "execution-hooks"
    assert result["totals"]["calls"] == 3 == sim.stats()["requests"]
    assert result["totals"]["prompt_tokens"] == sim.stats()["prompt_tokens"]
    assert "Traceback" not in stderr


def test_without_the_env_nothing_is_instrumented(sim):
    result, _ = run_job(sim, env={"DSPY_TOP": ""})
    assert result["mechanism"] is None


def test_user_callbacks_set_later_keep_working_beside_it(sim):
    setup = """
    import dspy_top
    dspy_top.instrument()
    from dspy.utils.callback import BaseCallback
    class Counting(BaseCallback):
        lm_ends = 0
        module_starts = 0
        def on_lm_end(self, call_id, outputs, exception=None):
            Counting.lm_ends += 1
        def on_module_start(self, call_id, instance, inputs):
            Counting.module_starts += 1
    """
    after = "extra = {'lm_ends': Counting.lm_ends, 'module_starts': Counting.module_starts}"
    result, _ = run_job(sim, setup=setup, configure=", callbacks=[Counting()]", after=after)
    assert result["lm_ends"] == 3 and result["module_starts"] >= 3
    assert result["totals"]["calls"] == 3 == sim.stats()["requests"]


def test_mlflow_autolog_beside_it(sim):
    pytest.importorskip("mlflow")
    setup = """
    import tempfile, os
    os.environ['MLFLOW_ALLOW_FILE_STORE'] = 'true'
    os.environ['MLFLOW_ENABLE_ASYNC_TRACE_LOGGING'] = 'false'
    import mlflow
    mlflow.set_tracking_uri('file://' + tempfile.mkdtemp())
    mlflow.set_experiment('beside-dspy-top')
    mlflow.dspy.autolog()
    import dspy_top
    dspy_top.instrument()
    """
    after = """
    traces = mlflow.search_traces(return_type='list')
    extra = {'traces': len(traces)}
    """
    result, _ = run_job(sim, setup=setup, after=after)
    assert result["traces"] == 3
    assert result["totals"]["calls"] == 3 == sim.stats()["requests"]
    assert result["totals"]["completion_tokens"] == sim.stats()["completion_tokens"]


def test_an_unfamiliar_dspy_gets_the_exact_fallback(sim):
    setup = """
    from dspy_top.instrumentation import lm_calls
    lm_calls.execution_is_familiar = lambda execution: False
    import dspy_top
    dspy_top.instrument()
    """
    result, _ = run_job(sim, setup=setup)
    assert result["mechanism"] == "lm-call-fallback"
    stats = sim.stats()
    assert result["totals"]["calls"] == 3 == stats["requests"] == result["history"]
    assert result["totals"]["prompt_tokens"] == stats["prompt_tokens"]
    assert result["totals"]["completion_tokens"] == stats["completion_tokens"]
    assert result["totals"]["cost_usd"] > 0


def run_with_broken_recorder(sim, *methods):
    """The job with these recorder methods raising, and the same job without dspy-top."""
    baseline, _ = run_job(sim)
    setup = (
        "import dspy_top\nhandle = dspy_top.instrument()\n"
        "def broken(*args, **kwargs):\n    raise RuntimeError('a bug inside dspy-top')\n"
        + "".join(f"handle.recorder.{name} = broken\n" for name in methods)
    )
    after = "extra = {'internal_errors': handle.recorder.internal_errors}"
    result, stderr = run_job(sim, setup=setup, after=after)
    return baseline, result, stderr


def test_internal_failures_are_swallowed_counted_and_change_no_output(sim):
    baseline, result, stderr = run_with_broken_recorder(sim, "finish", "begin")
    assert result["answers"] == baseline["answers"]
    assert result["internal_errors"] == 3  # each failed begin, counted; the call itself went ahead
    assert "a bug inside dspy-top" not in stderr


def test_a_call_dspy_top_fails_to_finish_is_counted_and_not_left_in_flight(sim):
    baseline, result, stderr = run_with_broken_recorder(sim, "finish")
    assert result["answers"] == baseline["answers"]
    assert result["internal_errors"] == 3 and result["totals"]["in_flight"] == 0
    assert "a bug inside dspy-top" not in stderr


def test_module_paths_are_cached_only_while_every_module_of_the_chain_lives():
    import gc

    from dspy_top.instrumentation.hooks import Hooks
    from dspy_top.instrumentation.recorder import Recorder

    class Module:
        pass

    hooks = Hooks(Recorder())
    program, inner = Module(), Module()
    program.generate_answer = inner
    assert hooks.module_path([program, inner]) == ("Module.generate_answer", "Module", ("Module", "Module"))
    assert len(hooks._paths) == 1
    assert hooks.module_path([program, inner])[0] == "Module.generate_answer"  # from the cache
    # Once a module is collected its id may be reused by a new object: the entry must go.
    del program.generate_answer, inner
    gc.collect()
    assert hooks._paths == {}
