"""Where sockets live: one private directory per user, one socket per instrumented process.

Shared by the instrumented process and the viewer, so both pick the same directory;
standard library and platformdirs only. A directory another user could have planted (not
ours, writable by others, a symbolic link) is never used: `locate()` falls back to a private
one in the user's home and says why.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "dspy-top"
SOCKET_SUFFIX = ".sock"
# AF_UNIX paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 107
SOCKET_NAME_ROOM = 24  # "/<pid>.sock" with room to spare


@dataclass(frozen=True)
class RuntimeDir:
    """The directory to use, and why it is not the usual one (a warning for the user), if it is not."""

    path: Path
    warning: str | None = None


def runtime_dir() -> Path:
    """The per-user directory holding sockets (`DSPY_TOP_RUNTIME_DIR` overrides it), or its fallback."""
    return locate().path


def locate() -> RuntimeDir:
    """The preferred runtime directory if it can be trusted, else the private fallback, with the reason."""
    preferred = preferred_runtime_dir()
    problem = untrusted(preferred)
    if problem is None:
        return RuntimeDir(preferred)
    fallback = fallback_runtime_dir()
    if fallback != preferred and untrusted(fallback) is None:
        return RuntimeDir(fallback, f"{preferred} {problem}: using {fallback} instead")
    return RuntimeDir(preferred, f"{preferred} {problem}, and {fallback} cannot be used either")


def preferred_runtime_dir() -> Path:
    """`DSPY_TOP_RUNTIME_DIR`, else platformdirs' runtime dir, else `$TMPDIR/dspy-top-<uid>`."""
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
    # per-user directory in the system temp dir; `untrusted` checks who owns it.
    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


def fallback_runtime_dir() -> Path:
    """A private directory under the user's home, where no other user can plant anything."""
    state = os.environ.get("DSPY_TOP_STATE_DIR") or platformdirs.user_state_dir(APP, appauthor=False)
    path = Path(state) / "sockets"  # beside the recordings' `runs` (see recording/runs.py)
    if len(os.fsencode(path)) + SOCKET_NAME_ROOM > MAX_SOCKET_PATH:
        return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"  # too long for a socket path: no better place
    return path


def untrusted(path: Path) -> str | None:
    """Why sockets in this directory cannot be trusted (or it cannot be created), or None when they can.

    Trusted: a real directory (not a symbolic link) owned by this user that no other user can
    write to; or one that does not exist yet under a parent this user can write to.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None if _creatable(path) else "cannot be created (no writable parent)"
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.getuid():
        return f"belongs to another user (uid {info.st_uid})"
    if stat.S_IMODE(info.st_mode) & 0o022:
        return f"can be written by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _usable_parent(path: Path) -> bool:
    parent = path.parent
    try:
        return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    except OSError:  # an unreadable parent's parent: Path.is_dir raises PermissionError
        return False


def _creatable(path: Path) -> bool:
    """Can this user make `path` (and any missing parents)? Its nearest existing ancestor decides."""
    for ancestor in path.parents:
        try:
            info = os.stat(ancestor)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        return stat.S_ISDIR(info.st_mode) and os.access(ancestor, os.W_OK | os.X_OK)
    return False


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
