"""The bytes of a recording file: the file header, self-checking frames, the trailer.

Standard library and msgpack only (it runs inside the user's job). The layout is
documented in docs/recording-format.md; this module owns it, the writer and the reader
only call it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

# The file starts with MAGIC (PNG-style: a high byte, then line endings and ^Z, so a file
# mangled by a text-mode transfer is told apart from a foreign one), then the format
# version. A reader accepts any minor version of its major one: a minor version only adds
# frame kinds, message types or keys, which readers skip.
MAGIC = b"\x89DSPYTOP\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 1
FILE_HEADER = struct.Struct(">12sHH")  # magic, major, minor

# Every frame starts with SYNC, so a reader that lost its place (a damaged stretch) can
# find the next frame by searching for it; the header checksum rules out chance matches.
SYNC = b"\xa7DTf"
# sync, kind, codec, meta length, data length, data crc32, head crc32 (of the first 16
# bytes and the meta): a walk checks a frame's header and meta without reading its data.
FRAME_HEADER = struct.Struct(">4sBBHIII")
HEAD_CHECKED = 16  # bytes of FRAME_HEADER covered by the head checksum
MAX_META = 0xFFFF
# No frame the writer makes comes near this; a longer one is damage, never an allocation.
MAX_DATA = 64 * 1024 * 1024

# Frame kinds.
HEADER = ord("H")  # the recording's header: format, the process's hello, the writer's settings
MESSAGES = ord("M")  # protocol messages, a part of the messages' deflate stream
PAYLOADS = ord("P")  # [call id, payload] pairs, a part of the payloads' deflate stream
CHECKPOINT = ord("C")  # the full state at one moment (see state.py), standalone
INDEX = ord("I")  # the footer: where every segment and checkpoint is, written at close
KIND_NAMES = {HEADER: "header", MESSAGES: "messages", PAYLOADS: "payloads", CHECKPOINT: "checkpoint", INDEX: "index"}

# Codecs of a frame's data.
PLAIN = 0  # msgpack, uncompressed
STREAM = 1  # raw deflate, one part of a segment: decode the segment's frames in order
ZLIB = 2  # zlib, standalone

# Meta keys. Short, because a frame is written every half second whatever happens, and on a
# quiet tick its header and meta are most of the bytes.
SEGMENT = "s"  # M, P: offset of the segment's first frame
WRITTEN = "t"  # M: when the frame was written (the writer's clock, epoch seconds); C: the state's time
CALLS = "n"  # M: call events in the frame; P: payloads in it; C: call events in the file
SEQ = "q"  # M, C: the highest event sequence number so far
CALLS_BEFORE = "b"  # M, a segment's first frame: call events in the file before the segment
CHECKPOINT_AT = "c"  # M, P: offset of the latest checkpoint before the frame (nil: none yet)
IDS = "i"  # P: [lowest, highest] call id in the frame (nil: none)
PREVIOUS = "p"  # C: offset of the previous checkpoint (nil: none)

# The last bytes of a closed recording: TRAILER_MAGIC and the offset of the index frame.
TRAILER = struct.Struct(">8sQ")
TRAILER_MAGIC = b"\x89DTOPEND"


class RecordingError(Exception):
    """A file that cannot be read as a recording at all: says which file and where."""

    def __init__(self, path: Any, offset: int, reason: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: {reason} (at byte {offset:,})")


@dataclass(frozen=True)
class Damage:
    """A damaged stretch found while reading: what was lost and where; what came before was read."""

    path: str
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} (at byte {self.offset:,})"


@dataclass(frozen=True)
class Frame:
    """One frame's header and meta, as a walk finds it (its data is read only when needed)."""

    offset: int
    kind: int
    codec: int
    meta: dict[str, Any]
    data_offset: int
    data_length: int
    data_crc: int

    @property
    def end(self) -> int:
        return self.data_offset + self.data_length


def file_header() -> bytes:
    return FILE_HEADER.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR)


def pack_meta(meta: dict[str, Any]) -> bytes:
    return msgpack.packb(meta, use_bin_type=True)


def frame(kind: int, codec: int, meta: dict[str, Any], data: bytes, data_crc: int | None = None) -> bytes:
    """One frame, ready to write; `data_crc`: zlib.crc32(data), when the caller has it already."""
    meta_bytes = pack_meta(meta)
    if len(meta_bytes) > MAX_META or len(data) > MAX_DATA:
        raise ValueError(f"frame too large: meta {len(meta_bytes)} bytes, data {len(data)} bytes")
    if data_crc is None:
        data_crc = zlib.crc32(data)
    head = struct.pack(">4sBBHII", SYNC, kind, codec, len(meta_bytes), len(data), data_crc)
    return head + struct.pack(">I", zlib.crc32(meta_bytes, zlib.crc32(head))) + meta_bytes + data


def trailer(index_offset: int) -> bytes:
    return TRAILER.pack(TRAILER_MAGIC, index_offset)


class Torn(Exception):
    """The bytes end inside this frame: a torn tail, or a live file's frame still being written."""


class Broken(Exception):
    """The bytes at this offset are not a frame (damage)."""


def parse_head(buffer: bytes, offset: int) -> tuple[int, int, int, int, int, int]:
    """(kind, codec, meta length, data length, data crc, head crc) of the frame at the start of
    `buffer`, or Torn / Broken."""
    if len(buffer) < FRAME_HEADER.size:
        raise Torn
    sync, kind, codec, meta_length, data_length, data_crc, head_crc = FRAME_HEADER.unpack_from(buffer)
    if sync != SYNC:
        raise Broken("no frame starts here")
    if data_length > MAX_DATA:
        raise Broken(f"frame length {data_length:,} is impossible")
    return kind, codec, meta_length, data_length, data_crc, head_crc


def check_head(buffer: bytes, offset: int) -> Frame:
    """The frame whose header and meta are all in `buffer` (read at `offset`), checked; or Torn / Broken."""
    kind, codec, meta_length, data_length, data_crc, head_crc = parse_head(buffer, offset)
    meta_end = FRAME_HEADER.size + meta_length
    if len(buffer) < meta_end:
        raise Torn
    meta_bytes = bytes(buffer[FRAME_HEADER.size : meta_end])
    if zlib.crc32(meta_bytes, zlib.crc32(bytes(buffer[:HEAD_CHECKED]))) != head_crc:
        raise Broken("frame header checksum mismatch")
    try:
        meta = msgpack.unpackb(meta_bytes, raw=False, strict_map_key=False) if meta_bytes else {}
    except Exception:
        raise Broken("undecodable frame meta") from None
    if not isinstance(meta, dict):
        raise Broken("frame meta is not a map")
    return Frame(offset, kind, codec, meta, offset + meta_end, data_length, data_crc)


def check_data(frame_: Frame, data: bytes) -> None:
    if len(data) < frame_.data_length:
        raise Torn
    if zlib.crc32(data) != frame_.data_crc:
        raise Broken(f"{KIND_NAMES.get(frame_.kind, 'frame')} data checksum mismatch")


def unpack_standalone(frame_: Frame, data: bytes) -> Any:
    """The msgpack value a PLAIN or ZLIB frame holds."""
    try:
        if frame_.codec == ZLIB:
            data = zlib.decompress(data)
        elif frame_.codec != PLAIN:
            raise Broken(f"unknown codec {frame_.codec}")
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Broken:
        raise
    except Exception:
        raise Broken(f"undecodable {KIND_NAMES.get(frame_.kind, 'frame')}") from None
