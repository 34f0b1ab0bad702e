"""A real terminal for tests: one tmux server of our own, a fixed-size session, screen polling.

Every wait polls `capture-pane` for a marker (never a fixed sleep). The session's command
writes its exit status to a file, so a test can check how the program under test ended.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

TMUX_MISSING = shutil.which("tmux") is None
# On a developer's machine without tmux the terminal tests skip; in CI they must run.
SKIP_REASON = "tmux is not installed" if TMUX_MISSING and not os.environ.get("CI") else None


class Terminal:
    """`command` (a list) in a tmux session of `width` x `height`, with `env` added to its environment."""

    def __init__(
        self,
        command: list[str],
        status_file: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        width: int = 120,
        height: int = 40,
    ) -> None:
        self.server = f"dspy-top-test-{os.getpid()}-{id(self)}"
        self.session = "main"
        self.status_file = status_file
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in (env or {}).items())
        line = (
            f"cd {shlex.quote(str(cwd or os.getcwd()))} && unset COLUMNS LINES && "
            f"env TERM=xterm-256color {exports} {shlex.join(command)}; "
            f"echo $? > {shlex.quote(str(status_file))}; sleep 600"
        )
        self.tmux("new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), line)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.server, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def wait_for(self, predicate, what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; the screen was:\n{screen}")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def exit_status(self, timeout: float = 30.0) -> int:
        """The command's exit status, once it has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status_file.exists() and self.status_file.read_text().strip():
                return int(self.status_file.read_text())
            time.sleep(0.1)
        raise AssertionError(f"the command did not end within {timeout:g}s; the screen was:\n{self.screen()}")

    def close(self) -> None:
        try:
            socket = self.tmux("display-message", "-p", "#{socket_path}").strip()
        except subprocess.SubprocessError:
            socket = ""
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=10)
        if socket.endswith(self.server):
            Path(socket).unlink(missing_ok=True)


def header_numbers(screen: str) -> tuple[int, float] | None:
    """(calls, dollars) from dspy-top's two header lines, or None before the view shows calls."""
    lines = screen.splitlines()
    if not lines or not lines[0].lstrip().startswith("dspy-top"):
        return None
    header = " ".join(lines[:2])
    calls = re.search(r"([\d,]+) calls", header)
    cost = re.search(r"\$([\d.]+)", header)
    if calls is None or cost is None:
        return None
    return int(calls.group(1).replace(",", "")), float(cost.group(1))
