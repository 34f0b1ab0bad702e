"""A recording's payloads packed in C where the redaction pass would leave them as they are.

A recording stores every call's payload, redacted exactly as a viewer's `payload` reply is
(payload.redacted), then packed. Done in Python, that cost the job's CPU 15-20 µs a call on
the server thread. Most of a payload comes out of the pass unchanged: its module's
instructions and demos, its options, its usage. So `_payload_pack.pack_slots` (C) walks each
kept call once, straight from the payload ring's slot (looked up, and marked taken once packed,
under the ring's lock: Recorder.take_payloads), and packs it as the pass would leave it,
setting aside each text and map key not known to pass unchanged; here they are looked at
together, once a batch: the texts with the pass's own `Redactor.changes` over them all joined
by line ends (its changes never cross a line's end, and what could, a PEM key, makes it look at
each alone; the lines it would look at, those not known clean, found in C as well, with no str
made for a known one: `know_clean_lines`), the keys by the pass's own rules. A payload is
stored from those bytes only when every text and key set aside comes out unchanged and the
credentials the batch's calls were given (those the Python pass takes too) were learned first;
any other goes through the Python pass. The bytes are therefore those of the redacted payload
(tests/test_payload_pack.py compares them with the Python pass on generated payloads,
credentials among them).

The texts and keys found unchanged are remembered (bounded, and forgotten when the known
credentials change). Without the compiled part (no C compiler where dspy-top was installed, or
DSPY_TOP_NO_C=1 in the job's environment) every payload takes the Python pass: the same file,
at the older cost. The same compiled part packs each `calls` message the recording stores
(`pack_plain`: plain data, the bytes msgpack would make, in about half its time).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dspy_top.instrumentation import payload
from dspy_top.instrumentation.payload_ring import TAKEN
from dspy_top.instrumentation.redact import Redactor, SeenTwice, is_secret_name

try:  # built from _payload_pack.c when dspy-top is installed (hatch_build.py)
    if os.environ.get("DSPY_TOP_NO_C") == "1":  # the Python pass for every payload, by request
        raise ImportError("DSPY_TOP_NO_C=1")
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        # It walks the job's lists and dicts knowing no other thread runs meanwhile: under a GIL only.
        raise ImportError("no GIL")
    from dspy_top.instrumentation import _payload_pack
except ImportError:  # no compiler where dspy-top was installed, or DSPY_TOP_NO_C=1
    _payload_pack = None

AVAILABLE = _payload_pack is not None
# Texts remembered as unchanged by the pass, in characters (then begun again), and those found so
# once, waiting to be found so again (see `PayloadPacker._remember`).
CLEAN_CHARS = 2 * 2**20
ONCE_CHARS = 256 * 2**10
LONG_TEXT = 128  # texts at least this long are found by fingerprint first (_payload_pack.c)
KEYS_KEPT = 4096
KEY_LIMIT = 1024  # the pass cuts a map key at this many characters (redact.Redactor._mapping)


def pack_plain(value: Any) -> bytes | None:
    """msgpack's bytes for plain data (a `calls` message's rows), packed in C as msgpack would pack
    them, in about half its time; None without the compiled part or for anything else (msgpack decides)."""
    return None if _payload_pack is None else _payload_pack.pack_plain(value)


@dataclass
class PackedBatch:
    """What became of a batch of kept calls: `data` holds `[call id, payload]` packed for each
    of `ids`, one after another, the last byte of each at `ends`; `python` the ids the Python
    pass must build; `gone` how many the ring no longer held."""

    data: bytes | bytearray = b""
    ids: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    python: list[int] = field(default_factory=list)
    gone: int = 0


def _secrets_in(options: Any) -> list[str]:
    """payload.secrets_in, or none for options it cannot read (a call's payload the pass cannot
    build either: payload_of raises, and nothing of it is stored)."""
    try:
        return payload.secrets_in(options)
    except Exception:
        return []


class PayloadPacker:
    """Packs kept calls for the recording, in C where the pass would change nothing."""

    def __init__(self, redactor: Redactor, limit: int, secrets_of: Callable[[Any], list[str]] | None) -> None:
        if secrets_of is not None and secrets_of is not payload.secrets_of:
            raise ValueError("payload_pack learns the credentials as payload.secrets_of finds them")
        self.redactor = redactor
        self.limit = limit
        self.learns = secrets_of is not None
        # Texts found to come out of the pass unchanged (`clean`, looked up in C for every text
        # once found so twice), and the longer of them by fingerprint (_payload_pack.c).
        self._texts = SeenTwice(CLEAN_CHARS, ONCE_CHARS)
        self.long_clean: dict[int, str] = {}
        self.keys: set[str] = set()  # map keys: plain, a credential's name, a headers map's
        self.secret_keys: set[str] = set()
        self.header_keys: set[str] = set()
        self.generation = redactor.generation
        self._lines_known: set[str] | None = None  # the redactor's clean lines the C table holds
        self.packed = 0  # payloads packed here, and left to the Python pass, so far
        self.by_python = 0

    def pack(self, call_ids: list[int], take: Callable[[list[int], Callable], Any]) -> PackedBatch:
        """These calls' payloads, straight from the payload ring's slots: packed, left to the Python
        pass, or gone. `take(call_ids, walk)` (Recorder.take_payloads) runs `walk(call_ids, slots)`
        over the ring's map of call id -> slot, under the ring's lock; the walk marks the slots it
        packs taken."""
        if _payload_pack is None:
            raise RuntimeError("payload_pack: no compiled part (see AVAILABLE)")
        if self.redactor.generation != self.generation:  # what was found unchanged may not be any more
            self.forget()
        walked, out, fresh, fresh_keys, fresh_lines, options = self._walk(call_ids, take)
        if self.learns and self._learn(options):  # a credential not known before: all again
            self.forget()
            walked, out, fresh, fresh_keys, fresh_lines, options = self._walk(call_ids, take)
        bad_keys = self._look_at_keys(fresh_keys) if fresh_keys else ()
        if bad_keys and not bad_keys.isdisjoint(self.secret_keys | self.header_keys):
            # Names of credentials or headers met for the first time, now known: packed again,
            # their values redacted in C (once a name; then they are known).
            walked, out, fresh, fresh_keys, fresh_lines, options = self._walk(call_ids, take)
            bad_keys = self._look_at_keys(fresh_keys) if fresh_keys else ()
        changed = self._look(fresh, fresh_lines) if fresh else ()
        if changed or bad_keys:  # a packed call holds a text or key the pass changes: the pass's
            return self._unpack_changed(call_ids, walked, out, fresh, fresh_keys, changed, bad_keys)
        ids, ends, python, gone, _ = walked
        self.packed += len(ids)  # the usual case: no call looked at here one by one
        self.by_python += len(python)
        return PackedBatch(out, ids, ends, python, gone)

    def _unpack_changed(
        self,
        call_ids: list[int],
        walked: tuple,
        out: bytearray,
        fresh: list[str],
        fresh_keys: list[str],
        changed: set[str],
        bad_keys: set[str],
    ) -> PackedBatch:
        """The batch with the packed calls holding a text in `changed` or a key in `bad_keys` left to
        the Python pass too (in the batch's order)."""
        ids, ends, python, gone, bounds = walked
        bounds = memoryview(bounds).cast("n")  # len(fresh), len(fresh_keys) after each packed call
        batch = PackedBatch(gone=gone)
        texts_from = keys_from = out_from = 0
        spans = []  # where the bytes of each payload kept are in `out`
        for at, call_id in enumerate(ids):
            texts_to, keys_to, out_to = bounds[2 * at], bounds[2 * at + 1], ends[at]
            if any(text in changed for text in fresh[texts_from:texts_to]) or any(
                key in bad_keys for key in fresh_keys[keys_from:keys_to]
            ):
                python.append(call_id)
            else:
                batch.ids.append(call_id)
                spans.append((out_from, out_to))
            texts_from, keys_from, out_from = texts_to, keys_to, out_to
        order = {call_id: at for at, call_id in enumerate(call_ids)}
        batch.python = sorted(python, key=order.__getitem__)
        batch.data = b"".join(out[start:end] for start, end in spans)
        self.packed += len(batch.ids)
        self.by_python += len(batch.python)
        size = 0
        for start, end in spans:
            size += end - start
            batch.ends.append(size)
        return batch

    def _know_lines(self) -> None:
        """The C table of lines known clean kept as the redactor's set: read whole when the set was
        begun again (another set; this holds it, so its identity is its own), else added to with
        the lines that joined it since."""
        redactor = self.redactor
        lines = redactor.clean_lines
        if lines is not self._lines_known or redactor.new_clean_lines is None:
            redactor.new_clean_lines = []
            _payload_pack.know_clean_lines(lines)
            self._lines_known = lines
        elif redactor.new_clean_lines:
            joined, redactor.new_clean_lines = redactor.new_clean_lines, []
            _payload_pack.add_clean_lines(joined)

    def _walk(self, call_ids: list[int], take: Callable[[list[int], Callable], Any]) -> tuple:
        """One walk of the ring's slots of these ids (pack_slots): what it gave back, the bytes,
        the texts and map keys set aside, the lines of those texts not known clean, and the
        options maps of the calls it held."""
        out: bytearray = bytearray()
        fresh: list[str] = []
        fresh_keys: list[str] = []
        fresh_lines: list[str] = []
        options: list[dict] = []
        self._know_lines()
        pack_slots, limit, clean, long_clean = _payload_pack.pack_slots, self.limit, self.clean, self.long_clean
        keys, secret_keys, header_keys = self.keys, self.secret_keys, self.header_keys

        def walk(call_ids: list[int], slots: dict[int, list]) -> tuple:
            return pack_slots(
                call_ids,
                slots,
                TAKEN,
                limit,
                clean,
                long_clean,
                keys,
                secret_keys,
                header_keys,
                fresh,
                fresh_keys,
                fresh_lines,
                out,
                options,
            )

        return take(call_ids, walk), out, fresh, fresh_keys, fresh_lines, options

    def _learn(self, options: list[dict]) -> bool:
        """The credentials in the options maps of the batch's calls, packed or left to the Python
        pass (which redacts them wherever they appear, in the packed calls too), as the pass learns
        them (payload.secrets_of): whether one was new."""
        redactor = self.redactor
        generation = redactor.generation
        for found in map(_secrets_in, options):
            if found:
                redactor.learn(found)
        return redactor.generation != generation

    def forget(self) -> None:
        self._texts = SeenTwice(CLEAN_CHARS, ONCE_CHARS)
        self.long_clean = {}
        self.keys = set()
        self.secret_keys = set()
        self.header_keys = set()
        self.generation = self.redactor.generation

    def _look(self, fresh: list[str], fresh_lines: list[str] | None = None) -> set[str]:
        """The texts the pass would change, of those set aside; the others are remembered.
        `fresh_lines`: their lines not known clean, found in C (no str made for the others)."""
        redactor = self.redactor
        distinct = set(fresh)
        joined = "\n".join(distinct)
        if not redactor.changes(joined, valid=True, lines=fresh_lines):  # _payload_pack.c took only valid UTF-8
            changed: set[str] = set()
        else:  # one of them changes (or a PEM key spans two): each alone
            limit = self.limit
            changed = {text for text in distinct if redactor.text(text, limit) != text}
            distinct -= changed
        self._remember(distinct)
        return changed

    def _remember(self, unchanged: set[str]) -> None:
        """Texts found unchanged (SeenTwice); the longer of those now in `clean` by fingerprint too."""
        clean = self._texts.clean
        joined = self._texts.found_clean(unchanged)
        if self._texts.clean is not clean:  # `clean` was full and begun again
            self.long_clean = {}
        longer = [text for text in joined if len(text) >= LONG_TEXT]
        self.long_clean.update(zip(map(_payload_pack.fingerprint, longer), longer))

    @property
    def clean(self) -> set[str]:
        return self._texts.clean

    @property
    def seen_once(self) -> set[str]:
        return self._texts.once

    def _look_at_keys(self, fresh_keys: list[str]) -> set[str]:
        """The map keys set aside, sorted as the pass's _mapping sorts them: plain; a credential's
        name (C redacts its text values from now on); a headers map's (C redacts its values); or
        one whose own text changes. All but the plain ones were packed with their values as they
        are: the payloads holding them take the Python pass this time (returned)."""
        text = self.redactor.text
        bad = set()
        for key in set(fresh_keys):
            if text(key, KEY_LIMIT) != key:
                bad.add(key)
                continue
            if is_secret_name(key):
                kind = self.secret_keys
                bad.add(key)
            elif key.lower().endswith("headers"):
                kind = self.header_keys
                bad.add(key)
            else:
                kind = self.keys
            if len(kind) >= KEYS_KEPT:
                kind.clear()
            kind.add(key)
        return bad
