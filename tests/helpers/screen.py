"""What a Textual app would send to the terminal, as text, and the check that it holds no control character."""

from __future__ import annotations

# Characters a terminal obeys (ESC, the one-byte CSI, BEL, NUL) or that reorder text (RLO).
CONTROLS = ("\x1b", "\x9b", "\x07", "\x00", "\u202e")


def screen_text(app) -> str:
    """The text of every cell of the current screen (toasts included), without the app's own style codes."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip if not segment.control) for strip in strips)


def assert_inert(text: str, where: str) -> None:
    found = [c for c in CONTROLS if c in text]
    assert not found, f"{where} shows raw control characters {found!r}"
