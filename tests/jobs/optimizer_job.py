"""A job that runs DSPy optimizers on the simulated LM on command, for the optimizer view's tests.

Reads one command a line on stdin (random_search, mipro_light, mipro_slow, mipro_minibatch, gepa,
evaluate, exit) and after each prints `TRUTH <json>`: what the optimizer itself reported (candidate
scores, trial logs, returned score). It prints `READY <socket>` once instrumented. Env: SIM_URL.
"""

import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

import dspy_top  # noqa: E402

handle = dspy_top.instrument()
dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=False))
data = [dspy.Example(question=f"What is {i} + {3 * i}?", answer=str(4 * i)).with_inputs("question") for i in range(40)]
trainset, valset = data[:20], data[20:]


def metric(example, prediction, trace=None):
    return example.answer == str(prediction.answer).strip()


def random_search():
    optimizer = dspy.BootstrapFewShotWithRandomSearch(
        metric=metric, num_candidate_programs=2, num_threads=4, max_bootstrapped_demos=2
    )
    program = optimizer.compile(dspy.Predict("question -> answer"), trainset=trainset, valset=valset)
    return {"by_seed": {c["seed"]: c["score"] for c in program.candidate_programs}}


def slow_metric(example, prediction, trace=None):
    time.sleep(0.05)  # slow enough for a viewer to attach while trials are running
    return metric(example, prediction)


def mipro(slow=False, **compile_args):
    auto = compile_args.pop("auto", None)
    extra = {} if auto else {"num_candidates": 3}
    optimizer = dspy.MIPROv2(
        metric=slow_metric if slow else metric, auto=auto, num_threads=2 if slow else 4, verbose=False, **extra
    )
    program = optimizer.compile(
        dspy.ChainOfThought("question -> answer"), trainset=trainset, valset=valset, **compile_args
    )
    logs = {}
    for number, log in sorted(program.trial_logs.items()):
        logs[number] = {
            "full": log.get("full_eval_score"),
            "minibatch": log.get("mb_score"),
            "examples_so_far": log.get("total_eval_calls_so_far"),
        }
    return {"trial_logs": logs, "best": program.score}


def gepa():
    def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        return dspy.Prediction(score=float(gold.answer == str(pred.answer).strip()), feedback="check the sum")

    reflection = dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=False)
    optimizer = dspy.GEPA(
        metric=feedback_metric, max_metric_calls=60, reflection_lm=reflection, num_threads=2, track_stats=True
    )
    program = optimizer.compile(dspy.Predict("question -> answer"), trainset=trainset[:8], valset=valset[:8])
    results = program.detailed_results
    return {
        "val_scores": list(results.val_aggregate_scores),
        "full_val_evals": results.num_full_val_evals,
        "metric_calls": results.total_metric_calls,
    }


def evaluate():
    result = dspy.Evaluate(devset=valset, metric=metric, num_threads=4)(dspy.Predict("question -> answer"))
    return {"score": result.score, "examples": len(result.results)}


COMMANDS = {
    "random_search": random_search,
    "mipro_light": lambda: mipro(auto="light"),
    "mipro_slow": lambda: mipro(slow=True, auto="light"),
    "mipro_minibatch": lambda: mipro(num_trials=4, minibatch=True, minibatch_size=10, minibatch_full_eval_steps=2),
    "gepa": gepa,
    "evaluate": evaluate,
}

print("READY", handle.socket_path, flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "exit":
        break
    if command in COMMANDS:
        print("TRUTH " + json.dumps({"command": command, **COMMANDS[command]()}), flush=True)
