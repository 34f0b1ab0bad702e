"""Another local user, for real: `nobody` (when the tests run as root) serving a fake job.

Used by the tests that a viewer or a relay trusts only its own user's jobs: `Planted` is
`nobody`'s fake job (planted_server.py, standard library only) in a directory it may create,
`as_another_user` skips a test when
no other user is at hand.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top import protocol
from tests.helpers.fake_server import hello, snapshot

HELPERS = Path(__file__).parent


def _as_nobody() -> dict:
    """subprocess arguments that run a command as `nobody` (and its own group), or {} when not possible."""
    if os.geteuid() != 0:
        return {}
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return {}
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


AS_NOBODY = _as_nobody()


def _nobody_python() -> str | None:
    """A python3 that `nobody` can run (the test's own may live in root's home), or None."""
    if not AS_NOBODY:
        return None
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        try:
            if (
                candidate
                and subprocess.run([candidate, "-c", "pass"], capture_output=True, cwd="/", **AS_NOBODY).returncode == 0
            ):
                return candidate
        except OSError:  # not executable by nobody
            continue
    return None


NOBODY_PYTHON = _nobody_python()
as_another_user = pytest.mark.skipif(NOBODY_PYTHON is None, reason="needs root (and a python3 nobody can run)")


class Planted:
    """`nobody`'s fake job, serving in `directory` (which it creates 0777 when missing)."""

    def __init__(self, directory: Path, argv0: str = "FAKE-JOB") -> None:
        frames = directory.parent / f"frames-{os.getpid()}-{id(self)}"
        frames.write_bytes(protocol.encode(hello(4242, [argv0])) + protocol.encode(snapshot(7)))
        # Copied where `nobody` can read it: the checkout may sit in a home it cannot enter.
        script = directory.parent / f"planted-{os.getpid()}-{id(self)}.py"
        shutil.copyfile(HELPERS / "planted_server.py", script)
        for path in (frames, script):
            os.chmod(path, 0o644)
        self.proc = subprocess.Popen(
            [NOBODY_PYTHON, str(script), str(directory), str(frames)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
            **AS_NOBODY,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), line
        self.socket_path = Path(line.split()[1])

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)
