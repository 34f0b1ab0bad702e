"""`dspy-top run`: start a command instrumented (no code change) and watch it live in this terminal.

The job runs in its own process group with `DSPY_TOP=1`, its stdout and stderr in a
private log file that the viewer tails into a pane. The viewer attaches to the job and
to any descendant that serves dspy-top (a shell wrapper's python, multiprocessing
workers). Nothing here imports dspy or litellm, and batch mode does not import Textual.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TextIO

from dspy_top import client, paths
from dspy_top.cli import positive_number, price_option

USAGE = ("dspy-top run [-d SECONDS] [-b [-n N] [--json]] [--log FILE]\n"
         "                    [--budget USD [--on-exceed warn|raise|stop]] [--price MODEL=IN/OUT[/CACHED]]\n"
         "                    [--] COMMAND [ARG...]")
DESCRIPTION = """\
Run COMMAND with DSPy instrumentation (no code change) and show the live view in this
terminal. Works for `python job.py`, `python -m pkg`, console scripts and shell
wrappers: every Python process of the job that imports dspy is attached.

The job's stdout and stderr go to a log pane and to a log file (its path is on screen).
When the job ends the view stays, with the final numbers and the exit status, until q.
ctrl+c once sends SIGINT to the job; twice quits (and stops the job).
"""
EPILOG = """\
examples:
  dspy-top run -- python job.py --epochs 3
  dspy-top run -- python -m mypkg.optimize
  dspy-top run -b -d 5 -- ./run_eval.sh      # a text snapshot every 5 s, then the job's status
  dspy-top run --budget 5 --on-exceed stop -- python optimize.py   # end the run once $5 is spent

exit status: the job's (128+N when a signal N ended it), 127 when COMMAND is not found,
126 when it cannot be run, 2 on a usage error.

The job's environment gets DSPY_TOP=1, PYTHONUNBUFFERED=1 (so its output shows up live),
DSPY_TOP_RUNTIME_DIR, DSPY_TOP_BUDGET, DSPY_TOP_ON_EXCEED and DSPY_TOP_PRICES from
--budget, --on-exceed and --price, and a PYTHONPATH entry holding a sitecustomize.py that
loads the instrumentation where dspy-top's .pth file is not installed (it runs any other
sitecustomize too). The job's stdin is /dev/null, and it starts with SIGINT's default
action even if dspy-top's is ignored, so the ctrl+c dspy-top forwards reaches it.
"""

STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when dspy-top stops the job
READ_CHUNK = 64 * 1024  # bytes the log pane takes per refresh
SKIP_ABOVE = 1024 * 1024  # a backlog larger than this is skipped to its tail (the file keeps it all)
EXIT_WAIT = 3.0  # seconds an instrumented job waits at exit for the viewer to attach, if it has not yet
JOB_RESCAN = 0.2  # seconds between looks for the job's sockets (short jobs must not be missed)

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --- the job ---------------------------------------------------------------------------------


class RunningJob:
    """The job's process (the viewer's `Job`): its exit status, SIGINT, and new log output."""

    def __init__(self, process: subprocess.Popen, command: list[str], log_path: Path,
                 work_dir: Path | None = None) -> None:
        self.process = process
        self.pid = process.pid
        self.command = command
        self.log_path = log_path
        self.work_dir = work_dir
        self._log = open(log_path, "rb")
        self._offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._introduced = False

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    def returncode(self) -> int | None:
        code = self.process.poll()
        return None if code is None else exit_status(code)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return exit_status(self.process.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self) -> None:
        """SIGINT to the job's whole process group, as a terminal's ctrl+c would send it."""
        self._signal_group(signal.SIGINT)

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM to the group, SIGKILL after `grace` seconds; the exit status."""
        code = self.returncode()
        if code is not None:
            return code
        self._signal_group(signal.SIGTERM)
        code = self.wait(grace)
        if code is None:
            self._signal_group(signal.SIGKILL)
            code = self.wait(10.0)
        return code if code is not None else 128 + signal.SIGKILL

    def terminate(self) -> None:
        """SIGTERM to the job's process group, without waiting."""
        self._signal_group(signal.SIGTERM)

    def _signal_group(self, signum: int) -> None:
        if self.process.poll() is not None:
            return  # once the job is reaped its pid (the group id) may belong to someone else
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def read_new_output(self) -> str:
        """What the job wrote since the last call, cleaned for a log pane ('' when nothing new).

        A flood is skipped to its tail (with a note); colour codes and other control
        characters go; a line redrawn with carriage returns (a progress bar) shows its
        last state, once it is finished.
        """
        size = os.fstat(self._log.fileno()).st_size
        note = ""
        if not self._introduced:  # the log file's path, on screen
            self._introduced = True
            note = f"[dspy-top: this output is also in {self.log_path} · pid {self.pid}: {self.command_line}]\n"
        if size - self._offset > SKIP_ABOVE:
            skipped = size - READ_CHUNK - self._offset
            self._offset = size - READ_CHUNK
            self._decoder.reset()
            self._pending = ""
            note += f"\n[dspy-top: {_size(skipped)} of output skipped here; all of it is in {self.log_path}]\n"
        if size <= self._offset:
            return note
        data = os.pread(self._log.fileno(), READ_CHUNK, self._offset)
        self._offset += len(data)
        text, self._pending = clean_output(self._pending + self._decoder.decode(data))
        return note + text

    def tail(self, lines: int = 20) -> str:
        """The last lines of the log file, as written."""
        size = os.fstat(self._log.fileno()).st_size
        start = max(0, size - 16 * 1024)
        data = os.pread(self._log.fileno(), size - start, start).decode("utf-8", "replace")
        return "\n".join(_ANSI.sub("", data).splitlines()[-lines:])

    def close(self) -> None:
        """Remove the shim; the log file stays (its path was shown)."""
        self._log.close()
        if self.work_dir is None:
            return
        if self.work_dir in self.log_path.parents:
            for name in ("site", "fallback"):
                shutil.rmtree(self.work_dir / name, ignore_errors=True)
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def clean_output(text: str) -> tuple[str, str]:
    """(text to show, text to hold back until its line is finished)."""
    text = _ANSI.sub("", text)
    lines = text.split("\n")
    partial = lines.pop()
    shown = []
    for line in lines:
        line = line.rstrip("\r")
        if "\r" in line:
            line = line.rsplit("\r", 1)[1]
        shown.append(_CONTROL.sub("", line) + "\n")
    if "\r" in partial:  # a line being redrawn: keep its latest state only
        return "".join(shown), partial[partial.rfind("\r"):]
    return "".join(shown) + _CONTROL.sub("", partial), ""


def exit_status(code: int) -> int:
    """A shell's view of an exit code: 128+N for a process killed by signal N."""
    return 128 - code if code < 0 else code


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if count < 1024 or unit == "MiB":
            return f"{count:,} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


# --- starting it -------------------------------------------------------------------------------

SHIM = '''\
"""Written by `dspy-top run`: loads dspy-top's instrumentation (DSPY_TOP=1) in interpreters
where its .pth file is not installed, after running the sitecustomize this one shadows."""


def _dspy_top_shim():
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\\n{type(exc).__name__}: {exc}\\n")
    try:
        import dspy_top.autoload  # noqa: F401
    except ImportError:
        # Not installed in this interpreter: borrow dspy-top's own copy, behind the job's packages.
        sys.path.append(os.path.join(os.path.dirname(here), "fallback"))
        try:
            import dspy_top.autoload  # noqa: F401
        except Exception as exc:
            sys.stderr.write(f"dspy-top: cannot instrument this interpreter: {type(exc).__name__}: {exc}\\n")
    except Exception as exc:
        sys.stderr.write(f"dspy-top: cannot instrument this interpreter: {type(exc).__name__}: {exc}\\n")


_dspy_top_shim()
'''

# What the fallback copy of dspy-top needs beyond the standard library.
FALLBACK_PACKAGES = ("dspy_top", "msgpack", "platformdirs")


def prepare_work_dir(work_dir: Path) -> Path:
    """The sitecustomize shim (returned: the directory to put first on PYTHONPATH) and its fallback."""
    site = work_dir / "site"
    site.mkdir(mode=0o700, exist_ok=True)
    (site / "sitecustomize.py").write_text(SHIM)
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


# --- which processes are the job's --------------------------------------------------------------


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # pid (comm) state ppid ...; comm may hold spaces and parentheses
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # gone
    except (OSError, ValueError, IndexError):
        return None
    try:  # no /proc (macOS)
        out = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True, timeout=2)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def descends_from(pid: int, root: int, known: set[int] = frozenset(), parent: Callable[[int], int | None] = parent_pid) -> bool:
    """True when `pid` is `root`, or one of `known`, or a child of one of them (at any depth)."""
    for _ in range(64):
        if pid == root or pid in known:
            return True
        if pid <= 1:
            return False
        next_pid = parent(pid)
        if next_pid is None:
            return False
        pid = next_pid
    return False


def job_collector(fleet, job: RunningJob, runtime_dir: Path | None = None):
    """A collector that attaches to the job's pid and to every descendant that serves dspy-top."""
    from dspy_top.viewer.collector import Collector

    class JobCollector(Collector):
        # The viewer's Collector takes a fixed pid list; this refreshes it from the job's
        # process tree before each scan (see the report: a `pid_filter` hook would do).
        def __init__(self) -> None:
            super().__init__(fleet, directory=runtime_dir, pids=[job.pid], rescan_every=JOB_RESCAN)
            self.members: list[int] = []
            self._strangers: set[tuple[int, int]] = set()  # (pid, socket inode) of other people's jobs
            self._root_dropped = False

        def _scan(self) -> None:
            for endpoint in client.discover(self.runtime_dir, cleanup=False):
                if endpoint.pid in self.members:
                    continue
                try:
                    seen = (endpoint.pid, endpoint.socket_path.stat().st_ino)
                except OSError:
                    continue
                if seen in self._strangers:
                    continue
                if descends_from(endpoint.pid, job.pid, set(self.members)):
                    self.members.append(endpoint.pid)
                else:
                    self._strangers.add(seen)
            self.pids = list(self.members) or [job.pid]
            super()._scan()
            if self.members and job.pid not in self.members and not self._root_dropped:
                self._root_dropped = True
                # The job's own pid is a wrapper (a shell) that will never serve: stop waiting for it.
                key = str(client.socket_for_pid(job.pid, self.runtime_dir))
                with fleet.lock:
                    process = fleet.processes.get(key)
                    if process is not None and process.events == 0:
                        fleet.failed(key, "not a DSPy process (a wrapper of the job)")
                        fleet.dismiss(key)

    return JobCollector()


# --- the two ways to watch it ----------------------------------------------------------------------


def watch_interactive(job: RunningJob, delay: float, runtime_dir: Path | None = None) -> int:
    """The live view until the user quits; stops the job if it still runs then. The job's status."""
    from dspy_top.model import Fleet
    from dspy_top.viewer.app import TopApp

    fleet = Fleet()
    app = TopApp(fleet, job_collector(fleet, job, runtime_dir), delay=delay, job=job)

    def on_signal(signum, frame) -> None:  # the terminal went away, or we were told to stop
        job.terminate()
        app.exit()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        app.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return job.stop()


class _Quit(Exception):
    """The second ctrl+c (or SIGTERM/SIGHUP) in batch mode."""


def watch_batch(job: RunningJob, delay: float, iterations: int | None = None, as_json: bool = False,
                out: TextIO | None = None, runtime_dir: Path | None = None) -> int:
    """Snapshots every `delay` seconds while the job runs, a final one when it ends. The job's status."""
    from dspy_top.model import Fleet
    from dspy_top.viewer.batch import snapshot_json, snapshot_text

    out = out or sys.stdout
    fleet = Fleet()
    collector = job_collector(fleet, job, runtime_dir).start()
    printed = 0
    interrupts = 0
    armed = True  # ctrl+c may end the wait for the job (not the final snapshot)

    def emit() -> None:
        nonlocal printed
        with fleet.lock:
            snapshot = fleet.snapshot(history_limit=0)
        printed += 1
        if as_json:
            out.write(json.dumps(snapshot_json(snapshot, printed), separators=(",", ":")) + "\n")
        else:
            out.write(("\n" if printed > 1 else "") + snapshot_text(snapshot))
        out.flush()

    def on_signal(signum, frame) -> None:
        nonlocal interrupts
        if signum == signal.SIGINT and interrupts == 0:
            interrupts += 1
            job.interrupt()
            print("dspy-top: sent SIGINT to the job; ctrl+c again stops it and quits", file=sys.stderr)
            return
        if armed:
            raise _Quit()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        print(f"dspy-top: running {job.command_line} (pid {job.pid}); its output goes to {job.log_path}",
              file=sys.stderr, flush=True)
        try:
            next_at = time.monotonic() + delay
            while job.returncode() is None:
                job.wait(min(0.1, max(0.0, next_at - time.monotonic())))
                if job.returncode() is None and time.monotonic() >= next_at:
                    next_at += delay
                    if iterations is None or printed < iterations:
                        emit()
            code = job.returncode()
        except _Quit:
            code = job.stop()
        armed = False
        _wait_for_final_numbers(fleet, collector)
        emit()
        if not collector.members:
            print("dspy-top: no process of the job served dspy-top (did it import dspy?)", file=sys.stderr)
        print(f"dspy-top: the job exited with status {code}; its output is in {job.log_path}", file=sys.stderr)
        if code != 0:
            tail = job.tail()
            if tail:
                print(f"dspy-top: the end of its output:\n{tail}", file=sys.stderr)
        return code
    except BrokenPipeError:
        return job.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        collector.stop()


def _wait_for_final_numbers(fleet, collector, timeout: float = 3.0) -> None:
    """Give the collector a moment to read the job's `exit` messages (and to find a last socket)."""
    deadline = time.monotonic() + timeout
    time.sleep(min(timeout, 2 * JOB_RESCAN))
    while time.monotonic() < deadline:
        with fleet.lock:
            live = [p for p in fleet.processes.values() if p.live and p.events > 0]
        if not live:
            return
        time.sleep(0.05)


# --- the command ----------------------------------------------------------------------------------


def build_parser(prog: str = "dspy-top run", usage: str = USAGE, description: str = DESCRIPTION,
                 epilog: str = EPILOG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, usage=usage, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_view_options(parser)
    add_money_options(parser.add_argument_group("the job's budget and prices"))
    return parser


def add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--delay", type=positive_number, default=1.0, metavar="SECONDS",
                        help="seconds between screen updates or batch snapshots (default 1)")
    parser.add_argument("-b", "--batch", action="store_true",
                        help="print snapshots instead of the live view; exit with the job's status")
    parser.add_argument("-n", "--iterations", type=int, metavar="N",
                        help="batch mode: at most N snapshots while the job runs (the final one always prints)")
    parser.add_argument("--json", action="store_true", help="batch mode: one JSON object per snapshot")
    parser.add_argument("--log", type=Path, metavar="FILE",
                        help="write the job's output to FILE (default: a new private file, shown on screen)")


def add_money_options(parser) -> None:
    """The job's own budget guard and prices: they act in the job, exactly, on every call."""
    parser.add_argument("--budget", type=positive_number, metavar="USD",
                        help="the job's spending limit: a warning at 80%% and 100%%, then what --on-exceed says")
    parser.add_argument("--on-exceed", choices=("warn", "raise", "stop"),
                        help="once the budget is spent: warn and carry on (default), raise BudgetExceeded "
                             "at the next LM call, or stop the run there (exit status 1, with the reason)")
    parser.add_argument("--price", type=price_option, action="append", metavar="MODEL=IN/OUT[/CACHED]", dest="prices",
                        help="price MODEL's calls at IN/OUT (and CACHED) USD per million tokens in the job "
                             "(repeat for several models)")


def money_environment(args: argparse.Namespace, base: dict[str, str]) -> dict[str, str]:
    """The job's environment entries for --budget, --on-exceed and --price (given prices win)."""
    env: dict[str, str] = {}
    if args.budget is not None:
        env["DSPY_TOP_BUDGET"] = repr(args.budget)
    if args.on_exceed:
        env["DSPY_TOP_ON_EXCEED"] = args.on_exceed
    if args.prices:
        given = [f"{model}={price.input!r}/{price.output!r}" + (f"/{price.cached!r}" if price.cached is not None else "")
                 for model, price in args.prices]
        env["DSPY_TOP_PRICES"] = ",".join(filter(None, [base.get("DSPY_TOP_PRICES", ""), *given]))
    return env


def check_view_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.iterations is not None and args.iterations < 1:
        parser.error("-n must be at least 1")
    if (args.json or args.iterations is not None) and not args.batch:
        parser.error("-n and --json need -b (batch mode)")


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(dspy-top's options, the command): split at the first `--`, else at the first non-option."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    takes_value = {"-d", "--delay", "-n", "--iterations", "--log", "--budget", "--on-exceed", "--price"}
    index = 0
    while index < len(argv):
        word = argv[index]
        if not word.startswith("-") or word == "-":
            break
        index += 2 if word in takes_value else 1
    return argv[:index], argv[index:]


def run_command(command: list[str], args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    """Start `command` and watch it as `args` (the view options) say; the job's exit status."""
    env = dict(os.environ if env is None else env)
    env.update(money_environment(args, env))
    try:
        job = start_job(command, log_path=args.log, env=env)
    except StartError as exc:
        print(f"dspy-top: {exc}", file=sys.stderr)
        return exc.status
    except OSError as exc:
        print(f"dspy-top: cannot start the job: {exc}", file=sys.stderr)
        return 1
    try:
        if args.batch:
            return watch_batch(job, args.delay, args.iterations, args.json)
        code = watch_interactive(job, args.delay)
        print(f"dspy-top: the job exited with status {code}; its output is in {job.log_path}", file=sys.stderr)
        return code
    finally:
        if job.returncode() is None:
            job.stop()
        job.close()


def main(argv: list[str]) -> int:
    options, command = split_command(list(argv))
    parser = build_parser()
    args = parser.parse_args(options)
    check_view_options(parser, args)
    if not command:
        parser.error("no command given: dspy-top run [options] -- COMMAND [ARG...]")
    return run_command(command, args)
