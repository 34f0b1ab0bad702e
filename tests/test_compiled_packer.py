"""The compiled payload packer (issue 16: recording's cost to the job) in real jobs and as it is built.

A recording job packs its payloads in C (dspy_top/instrumentation/_payload_pack.c) where the
redaction pass would leave them as they are; its recording must hold exactly what the Python pass
stores. Here a real DSPy job (tests/jobs/record_job.py, threads, the simulated LM) records with the
compiled part and with `DSPY_TOP_NO_C=1`: the payloads read back are equal, and the job says which
path packed them. The build (hatch_build.py) makes an importable module with the machine's compiler,
and without one says why and leaves dspy-top working. tests/test_payload_pack.py compares the two
paths payload by payload on generated input.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top.instrumentation import payload_pack
from dspy_top.simlm import SimLM
from tests.helpers.line_jobs import REPO
from tests.helpers.recorded import RecordJob, everything

sys.path.insert(0, str(REPO))
import hatch_build  # noqa: E402  (the build hook, at the repository's root)

pytestmark = [pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def sim():
    with SimLM(latency_scale=0.0) as server:
        yield server


def canonical(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True)


def recorded(tmp_path: Path, sim_url: str, **env: str) -> tuple[dict, tuple[int, int, int], int]:
    """A threaded job's recording: its payloads by call id; whether it had the compiled part, and
    how many payloads it packed in C and left to the Python pass; its calls."""
    job = RecordJob(tmp_path, sim_url, "--threads", "4", env={"DSPY_TOP_RECORD": str(tmp_path / "job.dtop"), **env})
    try:
        job.run(30)
        calls = job.run(20)
        packer = job.ask("packer", "PACKER")
        job.exit()
        assert job.proc.wait(30) == 0
    finally:
        job.kill()
    _, payloads = everything(job.recording)
    return payloads, tuple(map(int, packer[1:4])), calls


@pytest.mark.slow
def test_a_recording_packed_in_c_holds_what_the_python_pass_stores(tmp_path, sim):
    if not payload_pack.AVAILABLE:
        pytest.skip("the compiled payload packer is not built here (no C compiler at install)")
    fast, packer, calls = recorded(tmp_path / "c", sim.base_url)
    slow, packer_without, calls_without = recorded(tmp_path / "python", sim.base_url, DSPY_TOP_NO_C="1")
    assert calls == calls_without == 100
    # Every payload went through C in one (the LM's api_key redacted there), none in the other.
    assert packer == (1, 100, 0)
    assert packer_without == (0, 0, 0)
    assert sorted(fast) == sorted(slow) == list(range(1, 101))
    assert all(fast[call_id] is not None for call_id in fast)
    # The same payloads, read back from both files (the threads number the calls in their own order).
    assert sorted(map(canonical, fast.values())) == sorted(map(canonical, slow.values()))
    assert all("What is" in str(payload["messages"]) for payload in fast.values())


def test_the_compiled_part_is_built_where_ci_runs():
    """CI installs a C compiler and Python's headers (.ci/run): there, a missing build is a failure."""
    if not os.environ.get("CI"):
        pytest.skip("outside CI the compiled part is optional")
    assert payload_pack.AVAILABLE, "the compiled payload packer was not built (see hatch_build.py's message)"


def test_the_build_makes_an_importable_module(tmp_path):
    built = hatch_build.compile_extension(REPO, tmp_path)
    if built is None:
        pytest.skip("no C compiler or Python headers on this machine")
    assert built.parent == tmp_path and built.name.startswith("_payload_pack.")
    spec = importlib.util.spec_from_file_location("_payload_pack", built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.fingerprint("x" * 300) == module.fingerprint("".join(["x" * 300]))
    out, fresh, options = bytearray(), [], []
    kept = (7, "m", "chat", [{"role": "user", "content": "hi"}], None, {}, {}, ["ok"], {}, None, None, None, False, "m")
    packed, ends, python, gone, _ = module.pack_slots(
        [7], {7: kept}, 14, 1024, set(), {}, set(), set(), set(), fresh, [], [], out, options
    )
    assert packed == [7] and ends == [len(out)] and len(out) > 0 and "hi" in fresh and (python, gone) == ([], 0)


def build_with(compiler: str, out: Path, part: int) -> subprocess.CompletedProcess:
    """hatch_build's compile of one part (PARTS[part]) into `out`, in a fresh interpreter, with `compiler` as $CC."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import hatch_build, pathlib; "
        f"print(hatch_build.compile_extension(pathlib.Path({str(REPO)!r}), pathlib.Path({str(out)!r}), {part}))"
    )
    env = {**os.environ, "CC": compiler}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_without_a_compiler_the_build_says_why_and_goes_on(tmp_path):
    result = build_with("false", tmp_path, 0)
    assert result.returncode == 0 and result.stdout.strip() == "None"
    assert "not building the compiled payload packer" in result.stderr
    assert "works without it" in result.stderr
    assert not list(tmp_path.iterdir())


def test_without_zlibs_header_the_build_of_the_deflate_says_why_and_goes_on(tmp_path):
    fake_cc = tmp_path / "cc"
    fake_cc.write_text(
        '#!/bin/sh\necho "_deflate.c:21:10: fatal error: zlib.h: No such file or directory" >&2\nexit 1\n'
    )
    fake_cc.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    result = build_with(str(fake_cc), out, 1)
    assert result.returncode == 0 and result.stdout.strip() == "None"
    assert "not building the compiled deflate" in result.stderr
    assert "apt-get install zlib1g-dev" in result.stderr and "works without it" in result.stderr
    assert not list(out.iterdir())


def test_dspy_top_no_c_turns_both_compiled_parts_off_in_the_job():
    code = (
        "from dspy_top.instrumentation import payload_pack as p; from dspy_top.recording import segments as s; "
        "print(p.AVAILABLE, s.NATIVE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DSPY_TOP_NO_C": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["False", "False"], result.stderr
