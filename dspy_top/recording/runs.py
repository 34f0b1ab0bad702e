"""The runs directory: where recordings go by default, their names, and the retention rule.

`<user state dir>/runs/<start time>-<pid>-<script>.dtop`, the state dir being platformdirs'
`user_state_dir("dspy-top")` (or `$DSPY_TOP_STATE_DIR`). Standard library and platformdirs
only: the job builds its default path with it.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import platformdirs

from dspy_top import paths

SUFFIX = ".dtop"
LOG_SUFFIX = ".log"  # a run's output, kept beside its recordings by `dspy-top run`
DEFAULT_KEEP_BYTES = 5 * 1024**3
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def state_dir() -> Path:
    override = os.environ.get("DSPY_TOP_STATE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_state_dir(paths.APP, appauthor=False))


def runs_dir(create: bool = False) -> Path:
    """The default directory of recordings; with `create`, made (0700, this user's) if needed."""
    directory = state_dir() / "runs"
    return paths.ensure_private_dir(directory) if create else directory


def script_name(argv: Sequence[str]) -> str:
    """What a recording's name calls the program: the script, `-m` module or console script."""
    argv = list(argv)
    name = ""
    if argv:
        name = Path(argv[0]).name
        if argv[0] == "-m" and len(argv) > 1:
            name = argv[1]
        elif argv[0] == "-c":
            name = "python-c"
    if name.endswith(".py"):
        name = name[:-3]
    name = script_safe(name)[:40]
    return name or "python"


def script_safe(name: str) -> str:
    """`name` with only letters, digits, `.`, `_` and `-`: safe in a file name."""
    return _UNSAFE.sub("_", name).strip("._")


def default_path(
    argv: Sequence[str], pid: int | None = None, started_at: float | None = None, directory: Path | None = None
) -> Path:
    """`runs/<start time>-<pid>-<script>.dtop` (the directory is not created here)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started_at if started_at is not None else time.time()))
    pid = os.getpid() if pid is None else pid
    return (directory if directory is not None else runs_dir()) / f"{stamp}-{pid}-{script_name(argv)}{SUFFIX}"


def recordings(directory: Path) -> list[Path]:
    """The recordings in a directory, newest first (by when they were last written)."""
    return _files(directory, (SUFFIX,))


def _files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        if entry.name.endswith(suffixes) and entry.is_file(follow_symlinks=False):
            try:
                found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name, Path(entry.path)))
            except OSError:
                continue
    found.sort(reverse=True)
    return [path for _, _, path in found]


def prune(directory: Path, keep_bytes: int = DEFAULT_KEEP_BYTES) -> list[Path]:
    """Remove the oldest recordings and run logs until those left take at most `keep_bytes`;
    returns what went.

    The newest recording is always kept, and a file in use is never removed (a recording whose
    writer, or a reader, holds its lock; the log of a run still going, which `dspy-top run`'s
    job holds locked through its output); both still count towards the total."""
    removed = []
    total = 0
    newest_kept = False
    for path in _files(directory, (SUFFIX, LOG_SUFFIX)):
        try:
            size = path.stat().st_size
        except OSError:
            continue
        is_recording = path.name.endswith(SUFFIX)
        if (is_recording and not newest_kept) or total + size <= keep_bytes:
            newest_kept = newest_kept or is_recording
            total += size
            continue
        if _remove_unless_in_use(path):
            removed.append(path)
        else:
            total += size
    return removed


def _remove_unless_in_use(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
