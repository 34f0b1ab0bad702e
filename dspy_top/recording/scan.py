"""Finding frames in a recording file: walk forward, resync past damage, search back from the end.

Reads by offset (`os.pread`), so any number of readers, and a writer, share a file
without sharing a position. Damage is noted (offset and reason), never raised: whatever
is readable is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from dspy_top.recording import frames
from dspy_top.recording.frames import Broken, Damage, Frame, Torn

HEAD_READ = frames.FRAME_HEADER.size + 512  # one read usually holds a frame's header and meta
SCAN_CHUNK = 1024 * 1024


class FileView:
    """One open recording file, read by offset."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.damage: list[Damage] = []
        self._noted: set[tuple[int, str]] = set()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        chunks = []
        while length > 0:
            chunk = os.pread(self.fd, length, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def note(self, offset: int, reason: str) -> None:
        """Remember one damaged stretch (once, however many times it is read)."""
        if (offset, reason) not in self._noted:
            self._noted.add((offset, reason))
            self.damage.append(Damage(self.path, offset, reason))

    # --- one frame ----------------------------------------------------------------------

    def frame_at(self, offset: int, size: int) -> Frame:
        """The frame at `offset` (its header and meta checked), or Torn / Broken."""
        buffer = self.read(offset, min(HEAD_READ, max(0, size - offset)))
        try:
            found = frames.check_head(buffer, offset)
        except Torn:
            if len(buffer) >= frames.FRAME_HEADER.size:
                _, _, meta_length, _, _, _ = frames.parse_head(buffer, offset)
                buffer = self.read(offset, min(frames.FRAME_HEADER.size + meta_length, size - offset))
                found = frames.check_head(buffer, offset)
            else:
                raise
        if found.end > size:
            raise Torn
        return found

    def data(self, frame: Frame) -> bytes:
        """A frame's data, checksum checked (Broken if it does not match)."""
        data = self.read(frame.data_offset, frame.data_length)
        frames.check_data(frame, data)
        return data

    def is_trailer(self, offset: int, size: int) -> bool:
        return size - offset == frames.TRAILER.size and self.read(offset, 8) == frames.TRAILER_MAGIC

    # --- walking ------------------------------------------------------------------------

    def walk(self, start: int, size: int | None = None, quiet_tail: bool = False) -> Iterator[Frame]:
        """Every whole frame from `start` to the end of the file (as it is now), in order.

        Skips damaged stretches (noted) to the next good frame. A frame cut off by the end of
        the file ends the walk; it is noted as damage unless `quiet_tail` (a file still being
        written: its last frame may be on its way)."""
        size = self.size() if size is None else size
        offset = start
        while offset < size:
            if self.is_trailer(offset, size):
                return
            try:
                found = self.frame_at(offset, size)
            except Torn:
                if not quiet_tail:
                    self.note(
                        offset,
                        f"the file ends inside a frame ({size - offset:,} bytes of it were written; "
                        "the writer stopped mid-write): everything before it was read",
                    )
                return
            except Broken as exc:
                resumed = self.resync(offset + 1, size)
                if resumed is None:
                    if quiet_tail and size - offset < frames.FRAME_HEADER.size:
                        return
                    self.note(offset, f"damaged data ({exc}); nothing readable after it")
                    return
                self.note(
                    offset,
                    f"damaged data ({exc}); skipped {resumed - offset:,} bytes to the next "
                    f"good frame at byte {resumed:,}",
                )
                offset = resumed
                continue
            yield found
            offset = found.end

    def resync(self, start: int, size: int) -> int | None:
        """The offset of the next frame at or after `start` whose header checks out."""
        position = start
        while position < size:
            chunk = self.read(position, min(SCAN_CHUNK + len(frames.SYNC), size - position))
            at = chunk.find(frames.SYNC)
            while at != -1:
                try:
                    self.frame_at(position + at, size)
                    return position + at
                except (Torn, Broken):
                    pass
                at = chunk.find(frames.SYNC, at + 1)
            if len(chunk) <= len(frames.SYNC):
                return None
            position += len(chunk) - len(frames.SYNC) + 1
        return None

    def last_frame(self, start: int, size: int) -> Frame | None:
        """The last whole frame of the file at or after `start`, searching back from the end
        (where a recording without a footer, killed or still written, has its newest state)."""
        end = size
        while end > start:
            begin = max(start, end - SCAN_CHUNK)
            chunk = self.read(begin, end - begin + len(frames.SYNC))
            at = chunk.rfind(frames.SYNC)
            while at != -1:
                try:
                    found = self.frame_at(begin + at, size)
                    self.data(found)
                    return found
                except (Torn, Broken):
                    pass
                at = chunk.rfind(frames.SYNC, 0, at)
            end = begin
        return None
