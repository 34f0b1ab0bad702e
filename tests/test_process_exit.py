"""Final numbers from multiprocessing workers, which end through os._exit (no atexit):
pools ended by terminate() (what `with Pool()` does) and by close()/join(), fork and forkserver."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POOL_JOB = HERE / "jobs" / "pool_job.py"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "end"),
    [
        ("fork", "terminate"),
        ("fork", "join"),
        ("forkserver", "terminate"),
        ("forkserver", "join"),
        # The workers import dspy only in their first task: the worker they run is dspy-top's all the same.
        ("forkserver", "terminate-lazy"),
    ],
)
def test_pool_workers_final_numbers_reach_the_viewer(tmp_path, method, end):
    runtime = Path(tempfile.mkdtemp(prefix="dtp", dir="/tmp"))
    env = {
        **os.environ,
        "DSPY_TOP_RUNTIME_DIR": str(runtime),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "DSPY_TOP_CONFIG": str(tmp_path / "none.toml"),
    }
    env.pop("DSPY_TOP", None)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dspy_top",
                "run",
                "-b",
                "--json",
                "-d",
                "0.5",
                "--",
                sys.executable,
                str(POOL_JOB),
                method,
                end.split("-")[0],
                "40",
                *end.split("-")[1:],
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=REPO,
            env=env,
        )
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads(done.stdout.strip().splitlines()[-1])
    workers = [p for p in final["processes"] if p["calls"]]
    assert len(workers) == 2, [(p["pid"], p["state"], p["status"], p["calls"]) for p in final["processes"]]
    assert final["totals"]["calls"] == 200  # every worker's last calls included
    if end == "join":  # the workers ended by themselves: each sent its exit frame
        assert all(p["state"] == "ended" for p in workers), [p["state"] for p in workers]


WORKER_LOOKS = r"""
import inspect, json, pickle, sys
from multiprocessing import pool

def looks(worker):
    return {"signature": str(inspect.signature(worker)), "name": worker.__name__, "qualname": worker.__qualname__,
            "module": worker.__module__, "doc": worker.__doc__, "pickled": pickle.dumps(worker).decode("latin-1")}

before = looks(pool.worker)
from dspy_top.instrumentation import process_exit
process_exit.install(lambda: None, lambda: None)
hooked = pool.worker is not inspect.unwrap(pool.worker)
print(json.dumps({"before": before, "after": looks(pool.worker), "hooked": hooked}))
"""


def test_the_pool_worker_dspy_top_installs_looks_like_multiprocessings_own():
    """multiprocessing.pool.worker, wrapped so pool workers send their totals after each task, keeps its
    signature, names and doc, and pickles (a spawn or forkserver Process's target) as multiprocessing's."""
    done = subprocess.run([sys.executable, "-c", WORKER_LOOKS], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["hooked"] is True
    assert seen["after"] == seen["before"]
    assert "dspy_top" not in seen["after"]["pickled"]
