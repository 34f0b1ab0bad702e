"""Where Python's and libc's functions are in a running process, from its ELF files and /proc/PID/maps.

Worked out before gdb attaches, so the job is not stopped while symbols are read: each
library's exported symbols (`.dynsym`) plus the address it is mapped at. Also reads the
interpreter's `Py_Version` from the file. Standard library only; 64-bit little-endian ELF.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

PYTHON_SYMBOLS = ("Py_AddPendingCall", "PyRun_SimpleString", "Py_Version")
LIBC_SYMBOLS = ("mmap",)
_SHT_DYNSYM = 11
_PT_LOAD = 1


class SymbolError(Exception):
    """The process's files do not hold what is needed (not CPython, not glibc, not 64-bit ELF)."""


@dataclass(frozen=True)
class Addresses:
    """Absolute addresses in the process, and its Python version from `Py_Version`."""

    add_pending_call: int
    run_simple_string: int
    mmap: int
    entry: int  # the executable's entry point: never run again, so a safe place to return to
    python: tuple[int, int] | None  # None: an interpreter older than 3.11 (no Py_Version)

    def as_request(self) -> dict[str, int]:
        return {
            "add_pending_call": self.add_pending_call,
            "run_simple_string": self.run_simple_string,
            "mmap": self.mmap,
            "entry": self.entry,
        }


@dataclass(frozen=True)
class _Elf:
    path: str
    kind: int  # e_type: 2 executable (fixed addresses), 3 shared object or PIE
    entry: int
    first_load_vaddr: int
    symbols: dict[str, tuple[int, int]]  # name -> (value, size), exported and defined
    segments: tuple[tuple[int, int, int], ...]  # PT_LOAD (vaddr, file offset, file size)

    def file_offset(self, vaddr: int) -> int | None:
        for start, offset, size in self.segments:
            if start <= vaddr < start + size:
                return offset + vaddr - start
        return None


def addresses(pid: int) -> Addresses:
    """The addresses the injection calls in `pid` (/proc and file reads only)."""
    maps = _mappings(pid)
    exe = os.readlink(f"/proc/{pid}/exe")
    python_path = next((p for p in maps if "libpython" in os.path.basename(p)), exe)
    libc_path = next((p for p in maps if os.path.basename(p).startswith("libc.so")), None)
    if libc_path is None:
        raise SymbolError("no glibc in the process")
    python = _read(_proc_path(pid, python_path), PYTHON_SYMBOLS)
    libc = _read(_proc_path(pid, libc_path), LIBC_SYMBOLS)
    program = python if python_path == exe else _read(_proc_path(pid, exe), ())
    missing = [name for name in PYTHON_SYMBOLS[:2] if name not in python.symbols]
    if missing:
        raise SymbolError(f"no {', '.join(missing)}: not a CPython interpreter")
    if "mmap" not in libc.symbols:
        raise SymbolError("no mmap in the C library")
    python_base = _base(python, maps[python_path])
    version = None
    if "Py_Version" in python.symbols:
        version = _py_version(python, _proc_path(pid, python_path))
    return Addresses(
        add_pending_call=python_base + python.symbols["Py_AddPendingCall"][0],
        run_simple_string=python_base + python.symbols["PyRun_SimpleString"][0],
        mmap=_base(libc, maps[libc_path]) + libc.symbols["mmap"][0],
        entry=_base(program, maps[exe]) + program.entry,
        python=version,
    )


def _mappings(pid: int) -> dict[str, int]:
    """Each mapped file -> the lowest address of its offset-0 mapping."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith("/"):
                continue
            path = fields[5].strip()
            if path.endswith(" (deleted)"):
                path = path[: -len(" (deleted)")]
            start = int(fields[0].split("-")[0], 16)
            if int(fields[2], 16) == 0 and (path not in out or start < out[path]):
                out[path] = start
    return out


def _proc_path(pid: int, path: str) -> str:
    """The file as the process sees it (its own mount namespace), through /proc/PID/root."""
    inside = f"/proc/{pid}/root{path}"
    return inside if os.path.exists(inside) else path


def _base(elf: _Elf, mapped_at: int) -> int:
    return 0 if elf.kind == 2 else mapped_at - (elf.first_load_vaddr & ~0xFFF)


def _read(path: str, wanted: tuple[str, ...]) -> _Elf:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SymbolError(f"cannot read {path}: {exc.strerror}") from None
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SymbolError(f"{path} is not a 64-bit little-endian ELF file")
    kind, _, _, entry, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _ = struct.unpack_from(
        "<HHIQQQIHHHHHH", data, 16
    )
    segments = []
    for index in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + index * phentsize
        )
        if p_type == _PT_LOAD:
            segments.append((p_vaddr, p_offset, p_filesz))
    symbols: dict[str, tuple[int, int]] = {}
    names = set(wanted)
    for index in range(shnum):
        _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + index * shentsize
        )
        if sh_type != _SHT_DYNSYM or not names:
            continue
        strtab_offset = struct.unpack_from("<Q", data, shoff + sh_link * shentsize + 24)[0]
        for entry_at in range(sh_offset, sh_offset + sh_size, sh_entsize or 24):
            st_name, _, _, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", data, entry_at)
            if st_shndx == 0 or st_value == 0:
                continue  # undefined here (imported)
            end = data.index(b"\0", strtab_offset + st_name)
            name = data[strtab_offset + st_name : end].decode(errors="replace").split("@", 1)[0]
            if name in names and name not in symbols:
                symbols[name] = (st_value, st_size)
    first = min((s[0] for s in segments), default=0)
    return _Elf(path, kind, entry, first, symbols, tuple(segments))


def _py_version(elf: _Elf, path: str) -> tuple[int, int] | None:
    value, _ = elf.symbols["Py_Version"]
    offset = elf.file_offset(value)
    if offset is None:
        return None
    with open(path, "rb") as handle:
        handle.seek(offset)
        hexversion = struct.unpack("<I", handle.read(4))[0]
    return hexversion >> 24, hexversion >> 16 & 0xFF
