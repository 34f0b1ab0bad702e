"""The code `dspy-top attach` puts into a job, and where the job answers.

The injected code is small and self-contained: in a namespace of its own (never the job's
`__main__`), it starts one thread and returns, so the thread it interrupted goes on at once.
That thread imports dspy-top (the job's own copy, else this installation's, through a
directory of links as `dspy-top run` does) and runs `dspy_top.instrumentation.attached`,
which writes the outcome as JSON into this user's private runtime directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspy_top import paths

STALE_AFTER = 24 * 3600  # seconds after which a leftover request or result file is removed

# Runs in the job. Plain Python that any 3.x parses, so an old interpreter gets a clear answer.
SOURCE = """\
def _dspy_top_attach(request):
    import json, os, sys

    def report(result):
        path = request["result"]
        temporary = "%s.%d.tmp" % (path, os.getpid())
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(result, out)
        os.replace(temporary, path)

    try:
        if sys.version_info < (3, 11):
            report({"status": "unsupported-python", "python": sys.version.split()[0], "pid": os.getpid()})
            return
        try:
            from dspy_top.instrumentation import attached
        except ImportError:
            if "dspy_top" in sys.modules:
                report({"status": "old-dspy-top", "pid": os.getpid(),
                        "path": getattr(sys.modules["dspy_top"], "__file__", "?")})
                return
            # Not installed in this interpreter: borrow the viewer's copy, behind the job's packages.
            sys.path.append(request["fallback"])
            request["fallback_added"] = request["fallback"]
            from dspy_top.instrumentation import attached
        attached.handle(request)
    except BaseException as exc:
        try:
            report({"status": "error", "message": "%s: %s" % (type(exc).__name__, exc), "pid": os.getpid()})
        except BaseException:
            pass


import threading

threading.Thread(target=_dspy_top_attach, args=(REQUEST,), name="dspy-top-attach", daemon=True).start()
"""


@dataclass(frozen=True)
class Request:
    """One attach or detach: what the job is told, and the file it answers in."""

    pid: int
    action: str
    result_path: Path
    payload: dict[str, Any]

    def code(self) -> str:
        """The Python source to run in the job: never raises, binds nothing in the job's namespaces.

        It holds the bare word `CODE_PAGE`, to be replaced by the `[address, size]` of the memory
        the debugger wrote it into (so the job can unmap it), or by `None`."""
        request = repr(self.payload)[:-1] + ", 'code_page': CODE_PAGE}"
        source = SOURCE.replace("REQUEST", request)
        return (
            f"try:\n    exec(compile({source!r}, '<dspy-top attach>', 'exec'), "
            "{'__name__': '__dspy_top_attach__'})\nexcept BaseException:\n    pass\n"
        )

    def read_result(self) -> dict[str, Any] | None:
        try:
            text = self.result_path.read_text()
        except FileNotFoundError:
            return None
        try:
            result = json.loads(text)
        except ValueError:
            return None  # not yet renamed into place? it is written whole, so this is someone else's file
        return result if isinstance(result, dict) else None

    def forget(self) -> None:
        self.result_path.unlink(missing_ok=True)


def new_request(pid: int, action: str, runtime_dir: Path | None = None) -> Request:
    """A request for `pid`, its result file in this user's private runtime directory."""
    runtime_dir = paths.ensure_private_dir(runtime_dir or paths.runtime_dir())
    work = paths.ensure_private_dir(runtime_dir / "attach")
    _sweep(work)
    nonce = secrets.token_hex(6)
    result_path = work / f"{pid}-{nonce}.json"
    payload = {
        "action": action,
        "result": str(result_path),
        "runtime_dir": str(runtime_dir),
        "fallback": str(fallback_dir(work)),
        "viewer": os.getpid(),
    }
    return Request(pid, action, result_path, payload)


def fallback_dir(work: Path) -> Path:
    """Links to this installation's dspy-top, msgpack and platformdirs (one directory per installation)."""
    from dspy_top.run.start import link_fallback

    here = str(Path(__file__).resolve().parents[1])
    return link_fallback(work / f"fallback-{hashlib.sha256(here.encode()).hexdigest()[:12]}")


def _sweep(work: Path) -> None:
    """Remove result files nobody will read (an attach that timed out answers later), and the
    scripts `sys.remote_exec` was given, once their job is gone."""
    now = time.time()
    for entry in [*work.glob("*.json"), *work.glob("*.py")]:
        try:
            pid = int(entry.name.split("-", 1)[0])
            if not Path(f"/proc/{pid}").exists() or now - entry.stat().st_mtime > STALE_AFTER:
                entry.unlink()
        except (ValueError, OSError):
            continue
