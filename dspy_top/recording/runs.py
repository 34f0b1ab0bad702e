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
from pathlib import Path
from typing import Sequence

import platformdirs

from dspy_top import paths

SUFFIX = ".dtop"
DEFAULT_KEEP_BYTES = 5 * 1024 ** 3
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
    name = _UNSAFE.sub("_", name).strip("._")[:40]
    return name or "python"


def default_path(argv: Sequence[str], pid: int | None = None, started_at: float | None = None,
                 directory: Path | None = None) -> Path:
    """`runs/<start time>-<pid>-<script>.dtop` (the directory is not created here)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started_at if started_at is not None else time.time()))
    pid = os.getpid() if pid is None else pid
    return (directory if directory is not None else runs_dir()) / f"{stamp}-{pid}-{script_name(argv)}{SUFFIX}"


def recordings(directory: Path) -> list[Path]:
    """The recordings in a directory, newest first (by when they were last written)."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        if entry.name.endswith(SUFFIX) and entry.is_file(follow_symlinks=False):
            try:
                found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name, Path(entry.path)))
            except OSError:
                continue
    found.sort(reverse=True)
    return [path for _, _, path in found]


def prune(directory: Path, keep_bytes: int = DEFAULT_KEEP_BYTES) -> list[Path]:
    """Remove the oldest recordings until those left take at most `keep_bytes`; returns what went.

    The newest recording is always kept, and one in use (its writer, or a reader, holds its
    lock) is never removed; both still count towards the total."""
    removed = []
    total = 0
    for number, path in enumerate(recordings(directory)):
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if number == 0 or total + size <= keep_bytes:
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
