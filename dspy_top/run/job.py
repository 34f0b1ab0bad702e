"""The job's process as `dspy-top run` holds it (the viewer's `Job`): exit status, signals, its output.

The output goes to a private log file; `read_new_output` hands the log pane what was added,
cleaned (no colour codes, a redrawn progress line shown once finished, a flood skipped). The
log lives while the run does: `close()` removes it with the run's work directory, unless it
was given with `--log` or `keep_log` (the seam for keeping it with the run's recording) moved
it somewhere that stays.
"""

from __future__ import annotations

import codecs
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when dspy-top stops the job
READ_CHUNK = 64 * 1024  # bytes the log pane takes per refresh
SKIP_ABOVE = 1024 * 1024  # a backlog larger than this is skipped to its tail (the file keeps it all)

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class RunningJob:
    """The job's process (the viewer's `Job`): its exit status, SIGINT, and new log output."""

    def __init__(
        self,
        process: subprocess.Popen,
        command: list[str],
        log_path: Path,
        work_dir: Path | None = None,
        runtime_dir: Path | None = None,
        notice: str | None = None,
    ) -> None:
        self.process = process
        # Where the log goes at close when it is the run's own (not --log): a function of its path that
        # returns where it kept it, or None (the default) to let it go with the work directory.
        self.keep_log: Callable[[Path], Path | None] | None = None
        self.pid = process.pid
        self.command = command
        self.log_path = log_path
        self.work_dir = work_dir
        self.runtime_dir = runtime_dir  # where the job serves its sockets
        self.notice = notice  # why that is not the usual runtime directory, if it is not
        self.recorded_to: str | None = None  # where its processes record (run/record.py), to say so
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
            until = " until the run ends (--log FILE keeps it)" if self.log_is_ours else ""
            # Two short lines, the path first: the pane cuts long lines at its edge, and a pid or a
            # path cut there would mislead.
            note = (
                f"[dspy-top: pid {self.pid}: {self.command_line}]\n"
                f"[dspy-top: this output is also in {self.log_path}{until}]\n"
            )
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

    @property
    def log_is_ours(self) -> bool:
        """The log is the run's own file (in its work directory), not one given with --log."""
        return self.work_dir is not None and self.work_dir in self.log_path.parents

    def close(self) -> Path | None:
        """Remove the run's work directory (the shim, a private socket directory and the run's own log);
        the log's path afterwards: a --log file stays, the run's own goes unless `keep_log` kept it."""
        self._log.close()
        kept: Path | None = self.log_path
        if self.log_is_ours:
            kept = None
            if self.keep_log is not None:
                try:
                    kept = self.keep_log(self.log_path)
                except OSError:
                    kept = None
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        return kept


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
        return "".join(shown), partial[partial.rfind("\r") :]
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
