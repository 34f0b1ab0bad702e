"""Counting DSPy's own history at attach: cache hits, a full history, history turned off.

The job side runs in a fresh process (dspy-top's hooks are process-wide) against a simulated LM,
calling `dspy_top.instrumentation.attached.handle` as the injected code does, without gdb.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dspy_top.simlm import SimLM
from tests.helpers.jobs import REPO, runtime_dir

SCRIPT = r"""
import json, os, sys, threading, time, urllib.request
import dspy
from dspy.clients import base_lm
from dspy_top.instrumentation import attached, runtime

directory = sys.argv[1]
out = {}

def installed(hooks):
    return sorted(f"{getattr(owner, '__name__', owner)}.{name}" for owner, name, _ in hooks._restore)

def attach_and_read(name):
    result = os.path.join(directory, name + ".json")
    original_record = base_lm.record_history
    attached.handle({"action": "attach", "result": result, "runtime_dir": directory})
    answer = json.load(open(result))
    while not runtime.active().stats()["before_attach"]["settled"]:
        time.sleep(0.05)
    # Once settled, an attached job runs exactly the hooks instrument() installs, nothing more.
    handle = runtime.active()
    out.setdefault("same_as_instrument", []).append(
        base_lm.record_history is original_record and "scope" not in vars(handle.hooks)
        and not [t for t in threading.enumerate() if t.name == "dspy-top-attach-watch"])
    out.setdefault("hooks", []).append(installed(handle.hooks))
    stats = handle.stats()
    attached.handle({"action": "detach", "result": result})
    server = json.load(urllib.request.urlopen(os.environ["SIM_URL"].rsplit("/v1", 1)[0] + "/_sim/stats"))
    out[name] = {"answer": answer, "totals": stats["totals"], "before": stats["before_attach"], "server": server,
                 "detached": json.load(open(result))["status"], "hooked": runtime.active() is not None}
    for history in (base_lm.GLOBAL_HISTORY, dspy.settings.lm.history, predict.history):
        history.clear()  # the next scenario starts from an empty history

lm = dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=True)
dspy.configure(lm=lm)
predict = dspy.Predict("question -> answer")
for _ in range(3):
    predict(question="What is 2 + 2?")  # one request, then two cache hits
attach_and_read("cache")

dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=False))
base_lm.MAX_HISTORY_SIZE = 4  # DSPy's global history keeps the last 4; the LM's own keeps all 6
for i in range(6):
    predict(question=f"What is {i} + 5?")
attach_and_read("capped")
base_lm.MAX_HISTORY_SIZE = 10_000

dspy.configure(disable_history=True)
for i in range(2):
    predict(question=f"What is {i} + 9?")
attach_and_read("disabled")
import dspy_top
plain = dspy_top.instrument(serve=False)
out["instrument_hooks"] = installed(plain.hooks)
plain.close()
print("OUT " + json.dumps(out))
"""


def run_job(script: str, sim: SimLM, directory, *args: str) -> dict:
    """`script` in a fresh Python (dspy-top's hooks are process-wide) against `sim`: its OUT line's JSON."""
    env = {
        **os.environ,
        "SIM_URL": sim.base_url,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DSPY_CACHEDIR": str(directory / "cache"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("DSPY_TOP", None)
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=str(REPO),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("OUT "))[4:])


@pytest.mark.slow
def test_history_backfill_counts_hits_reads_lm_histories_when_full_and_says_unknown_when_off():
    directory = runtime_dir()
    with SimLM(latency_scale=0.0) as sim:
        out = run_job(SCRIPT, sim, directory, str(directory))

    cache, capped, disabled = out["cache"], out["capped"], out["disabled"]
    assert cache["answer"]["status"] == "attached"
    assert cache["before"]["calls"] == 3 and cache["totals"]["cache_hits"] == 2
    assert cache["server"]["requests"] == 1
    assert cache["totals"]["prompt_tokens"] == cache["server"]["prompt_tokens"]
    assert cache["totals"]["completion_tokens"] == cache["server"]["completion_tokens"]
    assert cache["totals"]["cost_saved_usd"] == pytest.approx(2 * cache["totals"]["cost_usd"])  # hits repeat it

    assert capped["before"]["history"] == "capped" and capped["before"]["missing"] is None
    # The 2 entries DSPy's global history dropped came from the LM's own history.
    assert capped["totals"]["calls"] == 6 == capped["server"]["requests"] - cache["server"]["requests"]
    assert capped["totals"]["prompt_tokens"] == capped["server"]["prompt_tokens"] - cache["server"]["prompt_tokens"]

    assert disabled["before"]["history"] == "disabled" and disabled["before"]["calls"] == 0
    assert disabled["before"]["missing"] is None  # unknown, never 0
    assert disabled["server"]["requests"] == 9
    assert out["same_as_instrument"] == [True, True, True]
    assert all(hooks == out["instrument_hooks"] for hooks in out["hooks"]) and out["instrument_hooks"]
    for scenario in (cache, capped, disabled):
        assert scenario["detached"] == "detached" and not scenario["hooked"]


def test_the_attach_watchers_record_history_looks_like_dspys_own():
    """While an attach settles, DSPy's `record_history` is dspy-top's: it must present itself as
    DSPy's (signature, names, doc, module) and bind keywords as DSPy's does (issue 15)."""
    import inspect

    from dspy.clients import base_lm

    from dspy_top.instrumentation.history_backfill import HistoryBackfill

    original = base_lm.record_history
    backfill = HistoryBackfill()
    backfill.watch()
    try:
        wrapper = base_lm.record_history
        assert wrapper is not original and inspect.unwrap(wrapper) is original
        for name in ("__name__", "__qualname__", "__module__", "__doc__"):
            assert getattr(wrapper, name) == getattr(original, name), name
        assert inspect.signature(wrapper) == inspect.signature(original)
        assert inspect.signature(wrapper, follow_wrapped=False) == inspect.signature(original)
        with pytest.raises(TypeError) as plain:
            original(entry={})
        with pytest.raises(TypeError) as wrapped:
            wrapper(entry={})
        assert str(wrapped.value) == str(plain.value)
    finally:
        backfill.close()
    assert base_lm.record_history is original


REUSED_ADDRESS_SCRIPT = r"""
import json, os, sys, threading, time
import dspy
from dspy.clients import base_lm
from dspy_top.instrumentation.history_backfill import HistoryBackfill
from dspy_top.instrumentation.recorder import Recorder

dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=False))
predict = dspy.Predict("question -> answer")
base_lm.GLOBAL_HISTORY.clear()
backfill = HistoryBackfill()
backfill.watch()  # as attach does, before the hooks (there are none here: every call binds DSPy's execute)

predict(question="What is 1 + 1?")  # ends before the snapshot: a straggler whose entry it will hold
assert len(backfill._early) == 1
later = threading.Thread(target=predict, kwargs={"question": "What is 2 + 2?"})
later.start()  # still running at the snapshot
deadline = time.monotonic() + 30
running = set()
while not running and time.monotonic() < deadline:
    running = backfill.unhooked_calls()
    time.sleep(0.001)
assert len(running) == 1, running
# The first call's frame is gone; the allocator gave its address to the running call's frame.
entry, _ = backfill._early[0]
backfill._early[0] = (entry, next(iter(running)))

recorder = Recorder()
backfill.bind(recorder)
at_snapshot = backfill.count_recorded()
later.join()
while not backfill.settle():
    time.sleep(0.01)
print("OUT " + json.dumps({"at_snapshot": at_snapshot, "settled": dict(backfill.summary),
                           "history": len(base_lm.GLOBAL_HISTORY), "errors": backfill.errors}))
"""


def test_a_call_running_at_attach_in_the_frame_address_of_one_the_snapshot_counted_is_counted_once():
    """A call that ended between the watch and the snapshot (its entry in the snapshot) and a call
    still running whose frame took the first one's address: the running call is in flight until it
    ends, then counted, and the summary's two counts agree (the race CI met as 6 counted against 5)."""
    directory = runtime_dir()
    with SimLM(latency_scale=0.3) as sim:
        out = run_job(REUSED_ADDRESS_SCRIPT, sim, directory)
    at_snapshot, settled = out["at_snapshot"], out["settled"]
    assert at_snapshot["calls"] == 1 and at_snapshot["in_flight"] == 1 and at_snapshot["in_flight_counted"] == 0
    assert settled["settled"] and settled["calls"] == 2 == out["history"]
    assert settled["in_flight"] == settled["in_flight_counted"] == 1
    assert settled["missing"] == 0 and out["errors"] == 0
