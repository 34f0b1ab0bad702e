"""The one redaction pass for everything that leaves the process: credentials out, sizes bounded.

The server runs every message through a `Redactor` before encoding it (hello, snapshot,
stats, call rows, scope and budget events, payloads, exit), so a viewer, and anything
written from the same stream, never sees a key. What counts as a credential:

- a value under a credential-like name, in any nesting: `api_key`, `Authorization`,
  `X-Auth-Token`, `Ocp-Apim-Subscription-Key`, `client_secret`, `password`, cookies...
  (every value under a `headers` map, whatever its name);
- in any text: `name=value` and `name: value` with such a name, `Bearer`/`Basic`
  credentials, the password of a URL (`https://user:pass@host`), command-line flags
  (`--api-key sk-…`, `--token=…`, `--password …`), and the shapes of well-known keys
  (`sk-…`, AWS access key ids, JWTs, GitHub, Slack, Google, Hugging Face, Stripe tokens,
  PEM private keys);
- the value of any credential-like environment variable, and credentials the process's LMs
  were given (`learn`), wherever they appear.

Runs on the server thread, never on the job's hot path. Names like `max_tokens`,
`metric_key` or `signature` are not credentials: the tests hold a corpus of both.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Iterable, Mapping

from dspy_top.protocol import text as valid_text

REDACTED = "[redacted]"
MAX_STRING = 256 * 1024  # payload text; other messages pass shorter limits
MAX_ITEMS = 500
MAX_DEPTH = 12
MIN_SECRET = 8  # shorter environment values are too likely to occur by chance
MAX_LEARNED = 64

# Name words (split at `-`, `_`, `.`, spaces and camelCase) that make a name a credential's.
_WORDS = {"password", "passwd", "passphrase", "secret", "secrets", "credential", "credentials", "cookie", "cookies",
          "authorization", "auth", "oauth", "apikey", "bearer", "privatekey", "accesskey", "sessiontoken"}
# `<word> key` and `<word> token` names that are credentials (`metric_key`, `eos_token` are not).
_KEY_QUALIFIERS = {"api", "apim", "subscription", "access", "secret", "private", "auth", "account", "master",
                   "encryption", "signing", "session", "license", "client", "consumer", "service", "app", "admin",
                   "openai", "anthropic", "azure", "master", "storage", "sas", "ssh", "gpg"}
_TOKENIZER_TOKENS = {"stop", "pad", "eos", "bos", "sep", "unk", "mask", "cls", "start", "end", "special", "max",
                     "min", "num", "total", "prompt", "completion", "cached", "reasoning", "input", "output"}
# A command-line flag of one word: `--token x`, `--key x` (a dict key `token` is a logprob's).
_FLAG_WORDS = {"token", "key", "pat", "pass", "pwd"}
_ENV_WORDS = {"KEY", "KEYS", "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL",
              "CREDENTIALS", "APIKEY"}

_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def name_parts(name: str) -> list[str]:
    """`X-Auth-Token` → [x, auth, token]; `openaiApiKey` → [openai, api, key]."""
    return [part.lower() for part in _NAME_PARTS.findall(name)]


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str, flag: bool = False) -> bool:
    """Whether a key, header, option or flag of this name holds a credential."""
    parts = name_parts(name)
    if not parts:
        return False
    if any(part in _WORDS for part in parts) or "".join(parts) in _WORDS:
        return True
    last = parts[-1]
    if len(parts) == 1:
        return flag and last in _FLAG_WORDS
    if last == "key":
        return parts[-2] in _KEY_QUALIFIERS
    if last == "token":
        return parts[-2] not in _TOKENIZER_TOKENS
    return False


def is_secret_env(name: str) -> bool:
    return any(part in _ENV_WORDS for part in name.upper().split("_"))


# Well-known credential shapes, anywhere in text.
_SHAPES = (
    r"\bsk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic, DeepSeek...
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bglpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"\bxox[abprse]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"\bgsk_[A-Za-z0-9]{20,}",  # Groq
    r"\bxai-[A-Za-z0-9]{20,}",  # xAI
    r"\bnpm_[A-Za-z0-9]{36}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
)
_TEXT = re.compile(
    # `Bearer <credential>`, `Basic <credential>` (an Authorization header's value)
    r"(?P<scheme>\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC)[ \t]+)(?P<cred>[A-Za-z0-9._~+/=-]{8,})"
    # the password of a URL
    r"|(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@\"'<>]*:)(?P<pw>[^\s/@\"'<>]+)(?=@)"
    # well-known key shapes
    r"|(?P<shape>" + "|".join(_SHAPES) + ")"
    # --flag value, --flag=value
    r"|(?<![\w-])(?P<flag>--?[A-Za-z][A-Za-z0-9_.-]*)(?P<fsep>=|[ \t]+)(?P<fval>(?!-)[^\s\"']+)"
    # name=value, name: value, "name": "value"
    r"|(?P<name>\b[A-Za-z][A-Za-z0-9_.-]*)(?P<nq>[\"']?)(?P<nsep>[ \t]*[:=][ \t]*)(?P<vq>[\"']?)"
    r"(?P<val>(?:(?:[Bb]earer|[Bb]asic)[ \t]+)?[^\s\"',;&}\]]+)"
)
# `token=…`, `pass: …` in text are credentials; a lone `key: …` is usually prose.
_TEXT_WORDS = {"token", "pass", "pwd"}
_CREDENTIAL_MARK = re.compile(r"[0-9+/=_.~-]|.[A-Z]")


def _replace(match: re.Match) -> str:
    group = match.lastgroup
    if group == "cred":
        if not _CREDENTIAL_MARK.search(match.group("cred")):  # `Basic arithmetic`, not a credential
            return match.group()
        return match.group("scheme") + REDACTED
    if group == "pw":
        return match.group("url") + REDACTED
    if group == "fval":
        if not is_secret_name(match.group("flag").lstrip("-"), flag=True):
            return _rescan(match, "flag")
        return match.group("flag") + match.group("fsep") + REDACTED
    if group == "val":
        name = match.group("name")
        if not (is_secret_name(name) or name.lower() in _TEXT_WORDS):
            return _rescan(match, "name")
        return name + match.group("nq") + match.group("nsep") + match.group("vq") + REDACTED
    return REDACTED


def _rescan(match: re.Match, keep: str) -> str:
    """A name=value that is no credential's: keep the name, and still look inside the value."""
    rest = match.string[match.end(keep):match.end()]
    return match.group(keep) + _TEXT.sub(_replace, rest)


def secret_values(mapping: Mapping[str, Any], is_secret=is_secret_name) -> list[str]:
    """Credential values in a mapping (an LM's options, an environment), by their names."""
    found = []
    for name, value in mapping.items():
        if isinstance(name, str) and isinstance(value, str) and len(value) >= MIN_SECRET and is_secret(name):
            found.append(value)
    return found


def _holds_text(value: Any, depth: int = 0) -> bool:
    if value is None or type(value) in (int, float, bool):
        return False
    if isinstance(value, (list, tuple)) and depth < 4:
        return any(_holds_text(item, depth + 1) for item in value)
    if isinstance(value, Mapping) and depth < 4:
        return any(_holds_text(item, depth + 1) for item in value.values())
    return True


class Redactor:
    """Credentials out of every message, with the environment's values kept up to date."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._learned: set[str] = set()
        self._secrets: tuple[str, ...] = ()
        self._seen_env: tuple[str, ...] = ()
        # Redacted forms of short strings seen before (module paths, model names): each is
        # checked once. Cleared when the known secrets change.
        self._memo: dict[str, str] = {}
        self.generation = 0
        self.refresh()

    def refresh(self) -> None:
        """Re-read the environment's credential values (a job may set a key after starting)."""
        try:
            env = tuple(sorted(secret_values(self._environ, is_secret_env)))
        except Exception:
            env = self._seen_env
        if env != self._seen_env:
            self._seen_env = env
            self._rebuild()

    def learn(self, values: Iterable[Any]) -> None:
        """Credentials this process uses that no environment variable names (an LM's `api_key`)."""
        fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET} - self._learned
        if fresh and len(self._learned) < MAX_LEARNED:
            self._learned.update(fresh)
            self._rebuild()

    def _rebuild(self) -> None:
        self._secrets = tuple(sorted(set(self._seen_env) | self._learned, key=len, reverse=True))
        self._memo.clear()
        self.generation += 1  # what was found clean before may not be any more

    # --- text ------------------------------------------------------------------------

    def text(self, value: str, limit: int = MAX_STRING) -> str:
        """One string, credentials out, cut at `limit` characters, always valid UTF-8."""
        if len(value) <= 256:
            cached = self._memo.get(value)
            if cached is not None:
                return cached
            out = self._text(value, limit)
            if len(self._memo) >= 4096:
                self._memo.clear()
            self._memo[value] = out
            return out
        return self._text(value, limit)

    def _text(self, value: str, limit: int) -> str:
        if len(value) > limit:
            value = value[:limit] + f"… [{len(value) - limit} more characters]"
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return valid_text(_TEXT.sub(_replace, value))

    # --- structures ------------------------------------------------------------------

    def value(self, value: Any, limit: int = MAX_STRING, depth: int = 0) -> Any:
        """A plain msgpack-able copy of `value`: credentials out, every size bounded."""
        kind = type(value)
        if kind is str:
            return self.text(value, limit)
        if value is None or kind is int or kind is float or kind is bool:
            return value
        if depth > MAX_DEPTH:
            return "…"
        if isinstance(value, Mapping):
            return self._mapping(value, limit, depth)
        if isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)
            out = [self.value(item, limit, depth + 1) for item in items[:MAX_ITEMS]]
            if len(items) > MAX_ITEMS:
                out.append(f"… {len(items) - MAX_ITEMS} more")
            return out
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(value)} bytes>"
        if isinstance(value, str):
            return self.text(str.__str__(value), limit)
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, type):
            return value.__name__
        if hasattr(value, "model_dump"):
            try:
                return self.value(value.model_dump(), limit, depth + 1)
            except Exception:
                pass
        try:
            shown = repr(value)
        except Exception:
            shown = f"<{type(value).__name__}>"
        return self.text(shown, limit)

    def _mapping(self, value: Mapping, limit: int, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more"
                break
            if type(key) is not str:
                out[key if type(key) is int else self.text(str(key), 1024)] = self.value(item, limit, depth + 1)
                continue
            name = self.text(key, 1024)
            if is_secret_name(key) and _holds_text(item):
                out[name] = REDACTED  # numbers under such a name (a model's token counts) are no secret
            elif key.lower().endswith("headers") and isinstance(item, Mapping):
                out[name] = {self.text(str(k), 1024): REDACTED for k in list(item)[:MAX_ITEMS]}
            else:
                out[name] = self.value(item, limit, depth + 1)
        return out

    def argv(self, argv: Iterable[Any], limit: int = 4096) -> list[str]:
        """A command line: the value after a credential flag (`--api-key sk-…`) out too."""
        out: list[str] = []
        hide_next = False
        for index, arg in enumerate(argv):
            if index >= MAX_ITEMS:
                out.append(f"… more arguments")
                break
            arg = arg if isinstance(arg, str) else str(arg)
            if hide_next and not arg.startswith("-"):
                out.append(REDACTED)
                hide_next = False
                continue
            hide_next = arg.startswith("-") and "=" not in arg and is_secret_name(arg.lstrip("-"), flag=True)
            out.append(self.text(arg, limit))
        return out

    def row(self, row: tuple, error_at: int, names: tuple[int, ...]) -> tuple:
        """A call row (protocol.CALL_FIELDS): its error message and its names redacted."""
        changed = list(row)
        message = row[error_at]
        if message is not None:
            changed[error_at] = self.text(message, 1000) if isinstance(message, str) else self.value(message, 1000)
        for index in names:
            name = row[index]
            if type(name) is str:
                changed[index] = self.text(name, 1024)
        return tuple(changed)

    def is_plain(self, text: str) -> bool:
        """Whether `text` comes out of the pass unchanged."""
        return self.text(text, 1024) == text
