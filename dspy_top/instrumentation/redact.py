"""Turns a recorded call into the payload a viewer may see: secrets removed, sizes bounded.

Runs on the server thread when a viewer asks for a call, never on the job's hot path.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "[redacted]"
# Request options whose values are credentials or carry them.
_SECRET_KEY = re.compile(r"(api[-_]?key|authorization|secret|password|passwd|bearer|access[-_]?token|"
                         r"refresh[-_]?token|id[-_]?token|session[-_]?token|credential|cookie|x-api-key)", re.I)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.I)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
MAX_STRING = 256 * 1024
MAX_ITEMS = 500
MAX_DEPTH = 12


def known_secrets(extra: list[str] | None = None) -> list[str]:
    """Values in this process's environment that look like credentials, longest first."""
    values = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    values.update(s for s in (extra or []) if isinstance(s, str) and len(s) >= 8)
    return sorted(values, key=len, reverse=True)


def scrub(value: Any, secrets: list[str], depth: int = 0) -> Any:
    """A plain msgpack-able copy of `value` with credential keys and values removed."""
    if depth > MAX_DEPTH:
        return "…"
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more"
                break
            key_text = str(key)
            if key_text == "headers" and isinstance(item, dict):
                out[key_text] = {str(k): REDACTED for k in item}
            elif _SECRET_KEY.search(key_text):
                out[key_text] = REDACTED
            else:
                out[key_text] = scrub(item, secrets, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out_list = [scrub(item, secrets, depth + 1) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out_list.append(f"… {len(items) - MAX_ITEMS} more")
        return out_list
    if hasattr(value, "model_dump"):
        try:
            return scrub(value.model_dump(), secrets, depth + 1)
        except Exception:
            pass
    if isinstance(value, type):
        return value.__name__
    return _scrub_text(repr(value), secrets)


def _scrub_text(text: str, secrets: list[str]) -> str:
    if len(text) > MAX_STRING:
        text = text[:MAX_STRING] + f"… [{len(text) - MAX_STRING} more characters]"
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "earer" in text:
        text = _BEARER.sub(r"\1 " + REDACTED, text)
    return text
