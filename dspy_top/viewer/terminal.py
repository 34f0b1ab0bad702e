"""What may reach a terminal: strings from a job or an LM made inert, and an ASCII fallback.

`inert` is the one function every string from a job, an LM or a socket passes through before
it is shown (the TUI's widgets, batch text, stderr): control characters (C0, DEL, C1 with
CSI `\\x9b`) and bidirectional overrides become visible stand-ins, so no escape sequence can
retitle, clear or reprogram the user's terminal, nor reorder what is shown; a lone surrogate (the
undecodable byte of a file name) becomes its escape, which any terminal takes. `for_stream`
makes text fit a stream that cannot encode Unicode (LANG=C, PYTHONIOENCODING=ascii, an old
tool on a pipe): sparklines, arrows and box characters get ASCII stand-ins, anything else a
backslash escape. No Textual here: batch mode uses it too.
"""

from __future__ import annotations

import codecs
import re
from typing import TextIO

# C0 and DEL as their Unicode "control pictures" (ESC shows as ␛): one cell wide, like the
# character they stand for, so column layouts hold.
_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)} | {0x7F: "\u2421"}
# C1 (0x9b is a one-byte CSI), bidirectional embeddings, overrides and isolates, line and
# paragraph separators: shown as escapes (there are no pictures for them).
_ESCAPED = [*range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x2028, 0x202F), *range(0x2066, 0x206A)]
# Lone surrogates (no terminal can be sent one): an undecodable byte of a file name, kept by
# Python's surrogateescape, as the byte's escape (`\\xff`); any other as its code (`\\ud800`).
_SURROGATES = {
    code: f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}" for code in range(0xD800, 0xE000)
}
_SINGLE_LINE = str.maketrans(
    {
        **_PICTURES,
        **{code: f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}" for code in _ESCAPED},
        **_SURROGATES,
    }
)
_MULTI_LINE = str.maketrans({**{k: v for k, v in _SINGLE_LINE.items() if k not in (0x09, 0x0A)}})
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def inert(text: object, multiline: bool = False) -> str:
    """`text` safe to show in a terminal: every control character visible and harmless.

    With `multiline`, newlines and tabs stay (a response, a log) and a CR before a newline
    is dropped; otherwise they too are shown (a name, a status, a table cell).
    """
    text = text if isinstance(text, str) else str(text)
    if _UNSAFE.search(text) is None:
        return text
    if multiline:
        return text.replace("\r\n", "\n").translate(_MULTI_LINE)
    return text.translate(_SINGLE_LINE)


# --- streams that cannot encode Unicode ---------------------------------------------------------

_STAND_INS = {
    **dict(zip("▁▂▃▄▅▆▇█", "_.:-=+*#")),
    "·": "-",
    "…": "...",
    "→": "->",
    "←": "<-",
    "▲": "^",
    "▼": "v",
    "▸": ">",
    "▾": "v",
    "▶": ">",
    "─": "-",
    "━": "-",
    "│": "|",
    "├": "+",
    "└": "`",
    "┌": "+",
    "┐": "+",
    "┘": "+",
    "┤": "+",
    "┬": "+",
    "┴": "+",
    "┼": "+",
    "★": "*",
    "×": "x",
    "▓": "#",
    "░": ".",
    "—": "--",
    "–": "-",
    "≈": "~",
    "µ": "u",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "✓": "ok",
    "✗": "x",
    # The control pictures `inert` uses, in caret notation (␛ is ^[).
    **{chr(0x2400 + code): f"^{chr(code + 0x40)}" for code in range(0x20)},
    "\u2421": "^?",
}
_ASCII = str.maketrans(_STAND_INS)


def ascii_only(text: str, encoding: str = "ascii") -> str:
    """`text` in characters `encoding` can hold: ASCII stand-ins, then backslash escapes."""
    return text.translate(_ASCII).encode(encoding, "backslashreplace").decode(encoding)


def for_stream(text: str, stream: TextIO | None) -> str:
    """`text` as it can be written to `stream` without a UnicodeEncodeError (unchanged when it can)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        return ascii_only(text, encoding)
    except LookupError:  # an encoding Python does not know: play safe
        return ascii_only(text)


def can_encode(stream: TextIO | None, sample: str = "▁→·…") -> bool:
    """Does `stream` take the Unicode glyphs the views use?"""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        codecs.lookup(encoding)
        sample.encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return False
    return True
