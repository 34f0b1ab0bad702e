"""`dspy-top attach` refusals: each a one-line message and its own exit status, the target unharmed.

Real processes, real gdb, real ptrace. What this machine cannot show: a Yama `ptrace_scope`
refusal (the kernel has no Yama) and a Python older than 3.11 (none is installed); the
non-dumpable case stands for "ptrace not permitted", and the version parsing is tested alone.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import time

import pytest

from dspy_top.attach import refusals, target
from tests.helpers.jobs import REPO, runtime_dir
from tests.helpers.plain_jobs import dspy_top

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3.11"  # Debian's, without dspy-top, dspy, msgpack or platformdirs
needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)")
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="running a process as another user needs root")
needs_system_python = pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason=f"no {SYSTEM_PYTHON}")


@functools.cache
def nobody_can_run_dspy_top() -> str | None:
    """PYTHONPATH with which `nobody` runs this checkout's dspy-top under the system Python, or None."""
    path = f"{REPO}:{sysconfig.get_paths()['purelib']}"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import dspy_top.attach.session, msgpack, platformdirs"],
        capture_output=True,
        user=NOBODY,
        cwd="/tmp",
        timeout=60,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": path, "HOME": "/tmp"},
    )
    return path if probe.returncode == 0 else None


@pytest.fixture
def directory():
    path = runtime_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Target:
    """A process to attach to: started, waited for (`READY` on stdout), and checked alive after."""

    def __init__(self, argv: list[str], user: int | None = None, env: dict | None = None) -> None:
        environment = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}
        environment.pop("DSPY_TOP", None)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            user=user,
            cwd="/tmp",
        )
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.pid = self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def python(setup: str, then: str, executable: str = sys.executable, **options) -> Target:
    """A Python process that runs `setup`, says READY, then runs `then`."""
    return Target([executable, "-c", f"{setup}\nprint('READY', flush=True)\n{then}"], **options)


def refused(result: subprocess.CompletedProcess, status: int, words: str) -> None:
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dspy-top: "), result.stderr
    assert words in lines[0], lines[0]


WAIT_FOREVER = "import threading\nthreading.Event().wait()"


def test_no_such_process(directory):
    refused(dspy_top("attach", "999999999", runtime_dir=directory), refusals.NO_PROCESS, "no process 999999999")


def test_not_a_python_process(directory):
    sleeper = Target(["/bin/sh", "-c", "echo READY; exec sleep 60"])
    try:
        refused(
            dspy_top("attach", str(sleeper.pid), runtime_dir=directory),
            refusals.NOT_PYTHON,
            "is not a Python process (sleep)",
        )
        assert sleeper.running
    finally:
        sleeper.stop()


@needs_root
@needs_system_python
def test_another_users_process(directory):
    other = python("import time", "time.sleep(60)", executable=SYSTEM_PYTHON, user=NOBODY)
    try:
        refused(
            dspy_top("attach", str(other.pid), runtime_dir=directory),
            refusals.NOT_YOURS,
            f"belongs to another user (uid {NOBODY})",
        )
        assert other.running
    finally:
        other.stop()


@needs_root
@needs_gdb
@needs_system_python
def test_ptrace_not_permitted_on_a_non_dumpable_process(tmp_path):
    # Both as nobody (no CAP_SYS_PTRACE): the target made itself non-dumpable, so the kernel refuses.
    site = nobody_can_run_dspy_top()
    if site is None:
        pytest.skip("nobody cannot read this checkout (run from a directory others can read)")
    other = python(
        "import ctypes, time\nctypes.CDLL(None).prctl(4, 0)  # PR_SET_DUMPABLE",
        "time.sleep(60)",
        executable=SYSTEM_PYTHON,
        user=NOBODY,
    )
    directory = tmp_path / "rt"
    directory.mkdir()
    os.chown(tmp_path, NOBODY, NOBODY)
    os.chown(directory, NOBODY, NOBODY)
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-m", "dspy_top", "attach", str(other.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            user=NOBODY,
            cwd="/tmp",
            env={
                "PATH": os.environ["PATH"],
                "PYTHONPATH": site,
                "HOME": "/tmp",
                "DSPY_TOP_RUNTIME_DIR": str(directory),
            },
        )
        refused(done, refusals.PTRACE_DENIED, "the process is not dumpable")
        assert other.running
    finally:
        other.stop()


def test_ptrace_hint_names_what_this_machine_has():
    """The one line says why; which reason applies depends on the machine, each branch is one sentence."""
    hint = target.ptrace_hint(os.getpid())
    scope = target._read_int(target.PROC / "sys/kernel/yama/ptrace_scope")
    if scope is not None and scope >= 1 and not target.has_cap_sys_ptrace():
        assert "kernel.yama.ptrace_scope" in hint
    else:
        assert "ptrace_scope" not in hint
    assert "\n" not in hint


@needs_gdb
def test_no_gdb(directory, tmp_path):
    job = python("", WAIT_FOREVER)
    try:
        refused(
            dspy_top("attach", str(job.pid), runtime_dir=directory, env={"PATH": str(tmp_path)}),
            refusals.NO_GDB,
            "gdb is not installed",
        )
        assert job.running
    finally:
        job.stop()


@needs_gdb
@needs_system_python
def test_no_dspy_imported_in_a_python_without_dspy_top(directory):
    # Debian's own Python has neither dspy nor dspy-top: the injected code borrows this installation's
    # dspy-top (its fallback links), runs, and says there is no dspy. The main thread waits on an event:
    # its futex wait is interrupted so that it runs the queued code.
    job = python("", WAIT_FOREVER, executable=SYSTEM_PYTHON)
    try:
        refused(
            dspy_top("attach", str(job.pid), runtime_dir=directory),
            refusals.NO_DSPY,
            f"pid {job.pid} has not imported dspy",
        )
        assert job.running
    finally:
        job.stop()


def test_python_versions_come_from_the_mapped_library_or_the_executable():
    assert target._python_version("7f0 r-xp /usr/lib/libpython3.12.so.1.0\n", "/usr/bin/python3") == (3, 12)
    assert target._python_version("", "/usr/bin/python3.10") == (3, 10)
    assert target._python_version("7f0 /opt/py/lib/libpython3.13t.so.1.0", "/opt/py/bin/python3.13t") == (3, 13)
    assert target._python_version("", "/usr/bin/myapp") is None  # gdb reads Py_Version from the process then


@pytest.mark.slow
@needs_gdb
def test_unsupported_dspy(directory):
    # A real DSPy whose version reads as one dspy-top does not support (no older DSPy is installed here).
    job = python("import dspy\ndspy.__version__ = '2.6.27'", WAIT_FOREVER)
    try:
        refused(
            dspy_top("attach", str(job.pid), runtime_dir=directory),
            refusals.UNSUPPORTED_DSPY,
            "uses DSPy 2.6.27, which dspy-top does not support",
        )
        assert job.running
        assert not (directory / f"{job.pid}.sock").exists()
    finally:
        job.stop()


@pytest.mark.slow
@needs_gdb
def test_a_process_that_exits_during_the_attach(directory):
    # Its main thread sleeps (a system call that does not run pending calls), then the process ends.
    job = python("import dspy, time", "time.sleep(5)")
    try:
        refused(
            dspy_top("attach", "--timeout", "60", str(job.pid), runtime_dir=directory),
            refusals.EXITED,
            "exited during the attach",
        )
        assert job.proc.wait(10) == 0
    finally:
        job.stop()


@pytest.mark.slow
@needs_gdb
def test_a_main_thread_blocked_in_sleep_gets_the_attach_when_it_returns(directory):
    job = python("import dspy, time", "time.sleep(4)\n" + WAIT_FOREVER)
    try:
        refused(
            dspy_top("attach", "--timeout", "1", str(job.pid), runtime_dir=directory),
            refusals.NO_ANSWER,
            "waits in clock_nanosleep (time.sleep)",
        )
        socket_path = directory / f"{job.pid}.sock"
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert socket_path.exists()  # the queued attach completed once the sleep returned
        assert job.running
    finally:
        job.stop()


@pytest.mark.slow
@needs_gdb
def test_a_process_with_no_thread_in_a_system_call_is_busy(directory):
    spinner = python("", "while True:\n    pass")
    try:
        refused(
            dspy_top("attach", str(spinner.pid), runtime_dir=directory),
            refusals.BUSY,
            "no thread of the process is waiting in a system call",
        )
        assert spinner.running
    finally:
        spinner.stop()


@needs_gdb
def test_detach_of_a_process_never_attached(directory):
    job = python("", WAIT_FOREVER)
    try:
        refused(
            dspy_top("detach", str(job.pid), runtime_dir=directory),
            refusals.NOT_ATTACHED,
            "was not attached by `dspy-top attach`",
        )
        assert job.running
    finally:
        job.stop()


def test_help_lists_every_exit_status():
    done = subprocess.run(
        [sys.executable, "-m", "dspy_top", "attach", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )
    assert done.returncode == 0
    for status, meaning in refusals.STATUSES:
        assert f"{status:>2}  {meaning.split(' (')[0]}" in done.stdout
    assert len({status for status, _ in refusals.STATUSES}) == len(refusals.STATUSES)
