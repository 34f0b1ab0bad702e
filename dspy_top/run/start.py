"""Starting the job: a private work directory with the sitecustomize shim, its environment, its process.

The shim (site/sitecustomize.py, shipped in this package) loads the instrumentation where
dspy-top's .pth file is not installed; a `fallback` directory links dspy-top's own copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from dspy_top import paths
from dspy_top.run.job import RunningJob

SHIM = Path(__file__).with_name("site") / "sitecustomize.py"
EXIT_WAIT = 3.0  # seconds an instrumented job waits at exit for the viewer to attach, if it has not yet
# What the fallback copy of dspy-top needs beyond the standard library.
FALLBACK_PACKAGES = ("dspy_top", "msgpack", "platformdirs")


def prepare_work_dir(work_dir: Path) -> Path:
    """The sitecustomize shim (returned: the directory to put first on PYTHONPATH) and its fallback."""
    site = work_dir / "site"
    site.mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(SHIM, site / "sitecustomize.py")
    fallback = work_dir / "fallback"
    fallback.mkdir(mode=0o700, exist_ok=True)
    for name in FALLBACK_PACKAGES:
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if locations:
            try:
                os.symlink(locations[0], fallback / name)
            except OSError:
                pass
    return site


def job_environment(base: dict[str, str], site_dir: Path, runtime_dir: Path,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base)
    env["DSPY_TOP"] = "1"
    env["DSPY_TOP_RUNTIME_DIR"] = str(runtime_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("DSPY_TOP_EXIT_WAIT", str(EXIT_WAIT))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site_dir), base.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


class StartError(Exception):
    """The command could not be started; `status` is what `dspy-top run` exits with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def start_job(command: list[str], *, log_path: Path | None = None, env: dict[str, str] | None = None,
              runtime_dir: Path | None = None) -> RunningJob:
    """Start `command` instrumented, in its own process group, its output in a private log file."""
    if not command:
        raise StartError("no command to run", 2)
    work_dir = Path(tempfile.mkdtemp(prefix="dspy-top-run-"))  # 0700
    if log_path is None:
        log_path = work_dir / "job.log"
    log_path = log_path.absolute()
    runtime_dir = runtime_dir or paths.runtime_dir()
    paths.ensure_private_dir(runtime_dir)
    site = prepare_work_dir(work_dir)
    environment = job_environment(dict(os.environ if env is None else env), site, runtime_dir)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        with _sigint_not_ignored():
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                env=environment, process_group=0, close_fds=True,
            )
    except FileNotFoundError:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise StartError(f"command not found: {command[0]}", 127) from None
    except PermissionError:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise StartError(f"permission denied: {command[0]}", 126) from None
    except OSError as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise StartError(f"cannot run {command[0]}: {exc.strerror or exc}", 126) from None
    finally:
        os.close(log_fd)
    return RunningJob(process, list(command), log_path, work_dir)


@contextlib.contextmanager
def _sigint_not_ignored():
    """Let the job start with SIGINT's default action even if ours is ignored.

    A shell starts a background command (`dspy-top run ... &` in a script) with SIGINT
    ignored, and an ignored signal stays ignored across exec: the job would never see the
    ctrl+c dspy-top forwards. Its own process group already keeps a terminal's ctrl+c away
    from it. A caught signal is reset to the default on exec, so catch it (doing nothing)
    while the job starts."""
    caught = False
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        try:
            signal.signal(signal.SIGINT, lambda signum, frame: None)
            caught = True
        except ValueError:  # not the main thread: leave it
            pass
    try:
        yield
    finally:
        if caught:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
