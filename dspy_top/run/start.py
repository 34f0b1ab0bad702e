"""Starting the job: a private work directory with the sitecustomize shim, its environment, its process.

The shim (site/sitecustomize.py, shipped in this package) loads the instrumentation where
dspy-top's .pth file is not installed; a `fallback` directory links dspy-top's own copy.
"""

from __future__ import annotations

import contextlib
import fcntl
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
    link_fallback(work_dir / "fallback")
    return site


def link_fallback(fallback: Path) -> Path:
    """A directory of links to dspy-top's own copy of what the job side imports (`dspy-top attach` uses it too)."""
    fallback.mkdir(mode=0o700, exist_ok=True)
    for name in FALLBACK_PACKAGES:
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if locations and not (fallback / name).exists():
            try:
                (fallback / name).unlink(missing_ok=True)  # a dangling link from an older installation
                os.symlink(locations[0], fallback / name)
            except OSError:
                pass
    return fallback


def job_environment(
    base: dict[str, str], site_dir: Path, runtime_dir: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
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


def start_job(
    command: list[str],
    *,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
    runtime_dir: Path | None = None,
) -> RunningJob:
    """Start `command` instrumented, in its own process group, its output in a private log file."""
    if not command:
        raise StartError("no command to run", 2)
    work_dir = Path(tempfile.mkdtemp(prefix="dspy-top-run-"))  # 0700
    try:  # whatever fails from here on, the work dir goes with it
        if log_path is None:
            log_path = work_dir / "job.log"
        log_path = log_path.absolute()
        notice = None
        if runtime_dir is None:
            runtime_dir, notice = job_runtime_dir(work_dir)
        else:
            paths.ensure_private_dir(runtime_dir)
        site = prepare_work_dir(work_dir)
        environment = job_environment(dict(os.environ if env is None else env), site, runtime_dir)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            # Held by the job through its stdout for as long as it runs: the runs directory's
            # retention never removes a log being written (recording/runs.py).
            fcntl.flock(log_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pass
        try:
            with _sigint_not_ignored():
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    process_group=0,
                    close_fds=True,
                )
        except FileNotFoundError:
            raise StartError(f"command not found: {command[0]}", 127) from None
        except PermissionError:
            raise StartError(f"permission denied: {command[0]}", 126) from None
        except OSError as exc:
            raise StartError(f"cannot run {command[0]}: {exc.strerror or exc}", 126) from None
        finally:
            os.close(log_fd)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return RunningJob(process, list(command), log_path, work_dir, runtime_dir, notice)


def job_runtime_dir(work_dir: Path) -> tuple[Path, str | None]:
    """Where the job serves its sockets, and a warning when that is not the usual runtime directory.

    The user's runtime directory when it can be trusted (or its private fallback, `paths.locate`);
    when neither can be used, a private directory inside the run's work dir, removed with it.
    """
    located = paths.locate()
    problem = located.warning
    if paths.untrusted(located.path) is None:
        try:
            return paths.ensure_private_dir(located.path), problem
        except OSError as exc:
            problem = f"{located.path} cannot be used ({exc.strerror or exc})"
    private = work_dir / "run"
    private.mkdir(mode=0o700)
    return private, (
        f"{problem}: the job's sockets are in {private} instead "
        f"(another dspy-top finds them with DSPY_TOP_RUNTIME_DIR={private})"
    )


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
