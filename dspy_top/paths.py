"""Where sockets live: one private directory per user, one socket per instrumented process.

Shared by the instrumented process and the viewer; standard library and platformdirs only.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from pathlib import Path

import platformdirs

APP = "dspy-top"
SOCKET_SUFFIX = ".sock"
# AF_UNIX paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 107


def runtime_dir() -> Path:
    """The per-user directory holding sockets (`DSPY_TOP_RUNTIME_DIR` overrides it)."""
    override = os.environ.get("DSPY_TOP_RUNTIME_DIR")
    if override:
        return Path(override)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the job's stderr is not ours to use.
        warnings.simplefilter("ignore")
        base = Path(platformdirs.user_runtime_dir(APP, appauthor=False, ensure_exists=False))
    if _usable_parent(base):
        return base
    # No XDG runtime dir (containers, root without a login session): fall back to a
    # per-user directory in the system temp dir; `ensure_private_dir` checks who owns it.
    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


def _usable_parent(path: Path) -> bool:
    parent = path.parent
    return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)


def ensure_private_dir(path: Path) -> Path:
    """Create the directory 0700 if needed and refuse one another user could read."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory owned by this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def socket_path(pid: int | None = None) -> Path:
    return runtime_dir() / f"{pid if pid is not None else os.getpid()}{SOCKET_SUFFIX}"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP, appauthor=False))
