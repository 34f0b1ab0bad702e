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

The pattern costs about a microsecond per character of text (it tries its alternatives at
every letter): too much for a recording that stores every prompt and response. So a text
first gets a quick look (`_may_change`, a few scans at C speed) that answers whether any
alternative could change anything in it; only then does it run. The look errs one way only,
towards running the pattern, so the result is the same (the tests compare both on a
corpus and on generated text). A text of many lines is looked at only in the lines the look
has not already found clean (`Redactor._may_change_lines`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from dspy_top.protocol import text as valid_text

REDACTED = "[redacted]"
MAX_STRING = 256 * 1024  # payload text; other messages pass shorter limits
MAX_ITEMS = 500
MAX_DEPTH = 12
MIN_SECRET = 8  # shorter environment values are too likely to occur by chance
MAX_LEARNED = 64

# Name words (split at `-`, `_`, `.`, spaces and camelCase) that make a name a credential's.
_WORDS = {
    "password",
    "passwd",
    "passphrase",
    "secret",
    "secrets",
    "credential",
    "credentials",
    "cookie",
    "cookies",
    "authorization",
    "auth",
    "oauth",
    "apikey",
    "bearer",
    "privatekey",
    "accesskey",
    "sessiontoken",
}
# `<word> key` and `<word> token` names that are credentials (`metric_key`, `eos_token` are not).
_KEY_QUALIFIERS = {
    "api",
    "apim",
    "subscription",
    "access",
    "secret",
    "private",
    "auth",
    "account",
    "master",
    "encryption",
    "signing",
    "session",
    "license",
    "client",
    "consumer",
    "service",
    "app",
    "admin",
    "openai",
    "anthropic",
    "azure",
    "storage",
    "sas",
    "ssh",
    "gpg",
}
_TOKENIZER_TOKENS = {
    "stop",
    "pad",
    "eos",
    "bos",
    "sep",
    "unk",
    "mask",
    "cls",
    "start",
    "end",
    "special",
    "max",
    "min",
    "num",
    "total",
    "prompt",
    "completion",
    "cached",
    "reasoning",
    "input",
    "output",
}
# A command-line flag of one word: `--token x`, `--key x` (a dict key `token` is a logprob's).
_FLAG_WORDS = {"token", "key", "pat", "pass", "pwd"}
_ENV_WORDS = {
    "KEY",
    "KEYS",
    "TOKEN",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "CREDENTIALS",
    "APIKEY",
}

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

# --- the quick look (see the module docstring) -------------------------------------------------

QUICK_FROM = 8  # shorter texts go straight to the pattern (and their results are remembered)
CLEAN_LINE_CHARS = 4 * 2**20  # lines remembered as clean, in characters (SeenTwice)
ONCE_LINE_CHARS = 256 * 2**10  # lines found clean once, waiting to be found so again
NEW_LINES_KEPT = 65536  # lines that joined the clean ones, kept for a reader at most (`new_clean_lines`)
# A table mapping the characters of a key shape's run ([A-Za-z0-9_-]) to `a`, others to ` `.
_RUN_TABLE = bytes(0x61 if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "_-") else 0x20 for c in range(256))
# Every key shape but a JWT (looked for by its `eyJ`) and a PEM key is a run of at least 15
# of [A-Za-z0-9_-] holding one of these (the shortest: `xoxb-` and ten more).
_SHAPE_RUN = b"a" * 15
_SHAPE_PREFIXES = (
    b"sk-",
    b"sk_",
    b"rk_",
    b"pk_",
    b"AKIA",
    b"ASIA",
    b"AGPA",
    b"AIDA",
    b"AROA",
    b"ANPA",
    b"gh",
    b"glpat-",
    b"xox",
    b"AIza",
    b"hf_",
    b"gsk_",
    b"xai-",
    b"npm_",
)
# Any of them, found in a run by one search at C speed.
_SHAPE_START = re.compile(b"|".join(re.escape(prefix) for prefix in _SHAPE_PREFIXES))
# An Authorization scheme and eight characters of a credential, in lower case.
_SCHEME = re.compile(rb"b(?:earer|asic)[ \t]+[a-z0-9._~+/=-]{8}")
# The name before a `:` or `=`, found in the reversed text: the separator first lets the regex
# engine skip ahead (a literal faster than a class of two); a name first would be tried at every letter.
_NAME_BEFORE_COLON = re.compile(rb":[ \t]*[\"']?([a-z0-9_.-]+)")
_NAME_BEFORE_EQUALS = re.compile(rb"=[ \t]*[\"']?([a-z0-9_.-]+)")
# A flag followed by spaces and a value (a literal first, for the same reason).
_FLAG = re.compile(rb"-(?<![\w-]-)(-?[a-z][a-z0-9_.-]*)[ \t]+[^\s\"'-]")
# What every credential name holds, lower-cased, once `_`, `.` and `-` are taken out (`_WORDS`,
# `<word> key`, `<word> token`, the lone `token`, `key`, `pass`, `pwd`, and a flag's `pat`).
_STEMS = (b"pass", b"pwd", b"secret", b"credential", b"cookie", b"auth", b"key", b"token", b"bearer", b"pat")


@functools.lru_cache(maxsize=4096)
def _secretish(name: bytes) -> bool:
    """Whether a name (lower case) could be a credential's: a superset of `is_secret_name`."""
    stripped = name.translate(None, b"_.-")
    return any(stem in stripped for stem in _STEMS)


def _may_change(value: str) -> bool:
    """False only when the pattern cannot change anything in `value`; True when it may."""
    if len(value) < QUICK_FROM:
        return True
    return _look(value)


def _look(value: str) -> bool:
    """`_may_change` for a text of any length."""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the pattern decides
        return True
    # One-byte searches first: they run at memory speed, and gate the longer ones.
    if b"@" in raw and b"://" in raw:
        return True  # a URL's password
    if b"J" in raw and b"eyJ" in raw:
        return True  # a JWT
    if b"-----BEGIN" in raw:
        return True  # a PEM private key
    lower = raw.lower()
    if b"b" in lower and _SCHEME.search(lower):
        return True  # `Bearer <credential>`, `Basic <credential>`
    runs = raw.translate(_RUN_TABLE)
    start = runs.find(_SHAPE_RUN)
    while start >= 0:  # a run long enough for a key shape: does it start one?
        end = runs.find(b" ", start)
        end = len(runs) if end < 0 else end
        if _SHAPE_START.search(raw, start, end):
            return True
        start = runs.find(_SHAPE_RUN, end)
    colon, equals = b":" in raw, b"=" in raw
    if colon or equals:  # `<name>: value`, `<name>=value`, `--<flag>=value`
        backwards = lower[::-1]
        for found, before in ((colon, _NAME_BEFORE_COLON), (equals, _NAME_BEFORE_EQUALS)):
            if found:
                for name in before.findall(backwards):
                    if _secretish(name[::-1]):
                        return True
    if b"-" in raw:  # `--<flag> value`
        for name in _FLAG.findall(lower):
            if _secretish(name):
                return True
    return False


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
    rest = match.string[match.end(keep) : match.end()]
    return match.group(keep) + _TEXT.sub(_replace, rest)


def secret_values(mapping: Mapping[str, Any], is_secret=is_secret_name) -> list[str]:
    """Credential values in a mapping (an LM's options, an environment), by their names."""
    found = []
    for name, value in mapping.items():
        if isinstance(name, str) and isinstance(value, str) and len(value) >= MIN_SECRET and is_secret(name):
            found.append(value)
    return found


_MESSAGE_KEYS = {"role", "content"}


def _holds_text(value: Any, depth: int = 0) -> bool:
    if value is None or type(value) in (int, float, bool):
        return False
    if isinstance(value, (list, tuple)) and depth < 4:
        return any(_holds_text(item, depth + 1) for item in value)
    if isinstance(value, Mapping) and depth < 4:
        return any(_holds_text(item, depth + 1) for item in value.values())
    return True


class _BoundedSet:
    """A set of texts bounded in characters: begun again once full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: set[str] = set()
        self.chars = 0

    def add(self, texts: set[str]) -> bool:
        """Keep `texts`, unless they are over a quarter of the bound; whether they were kept."""
        chars = sum(map(len, texts))
        if chars > self.limit // 4:
            return False
        if self.chars + chars > self.limit:
            self.items = set()
            self.chars = 0
        self.items |= texts
        self.chars += chars
        return True


class SeenTwice:
    """Texts (or lines) found clean, remembered as such once found so twice. `clean`, looked up for
    every text, stays small (a big set's lookups miss the CPU's caches, and that costs the job);
    texts found once wait in `once`: most are one call's own input (a question, a passage) and
    never come again. Both bounded in characters."""

    def __init__(self, clean_chars: int, once_chars: int) -> None:
        self._clean = _BoundedSet(clean_chars)
        self._once = _BoundedSet(once_chars)

    @property
    def clean(self) -> set[str]:
        return self._clean.items

    @property
    def once(self) -> set[str]:
        return self._once.items

    def found_clean(self, texts: set[str]) -> set[str]:
        """Remember `texts` as found clean once more; those that joined `clean` now."""
        again = texts & self._once.items
        if not again:
            self._once.add(texts)
            return again
        self._once.items -= again
        self._once.add(texts - again)
        return again if self._clean.add(again) else set()


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
        # A map key seen before -> (its redacted form, a credential's name?, a headers map's?).
        self._keys: dict[str, tuple[str, bool, bool]] = {}
        self._long: dict[tuple, str | None] = {}  # see `text`
        # Parts of payloads redacted before, by their value (payload.redacted): a module's
        # messages, an LM's options. Cleared with the rest when the known secrets change.
        self.parts: dict[Any, Any] = {}
        # Lines that joined `clean_lines` since a reader took them, for one that asks (a recording's
        # packer: payload_pack.py); None: nobody asked, or more came than NEW_LINES_KEPT (the reader
        # then reads the set whole).
        self.new_clean_lines: list[str] | None = None
        # Lines the quick look found the pattern cannot change (see `_may_change_lines`).
        self._lines = SeenTwice(CLEAN_LINE_CHARS, ONCE_LINE_CHARS)
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
        self._keys.clear()
        self._long.clear()
        self.parts.clear()
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
        if len(value) > limit:
            return self._text(value, limit)
        # A long text seen before (a module's instructions and demos come with every call of it):
        # remembered by its hash and ends, not by the job's string itself, and only a changed
        # text's redacted form is kept.
        key = (hash(value), len(value), value[:32], value[-32:])
        long = self._long
        if key in long:
            changed = long[key]
            return value if changed is None else changed
        out = self._text(value, limit)
        if len(long) >= 2048:
            long.clear()
        long[key] = None if out == value else out
        return out

    def changes(self, value: str, valid: bool = False, lines: list[str] | None = None) -> bool:
        """Whether `text(value)` differs from `value` (with no cut), without remembering either:
        one look at many texts joined by line ends (payload_pack.py). `valid`: the caller knows
        the text is valid UTF-8 already (no copy made to check it). `lines`: the lines of `value`
        to look at, when the caller has them: every one not in `clean_lines` (one found clean
        before may be left out: a line found so stays so)."""
        if any(secret in value for secret in self._secrets):
            return True
        if self._may_change_lines(value, lines) and self._sub_lines(value) != value:
            return True
        return not valid and valid_text(value) is not value

    def _text(self, value: str, limit: int) -> str:
        if len(value) > limit:
            value = value[:limit] + f"… [{len(value) - limit} more characters]"
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if self._may_change_lines(value):
            value = self._sub_lines(value)
        return valid_text(value)

    def _sub_lines(self, value: str) -> str:
        """The pattern over the lines that may change only (it costs about a microsecond a
        character): its changes never cross a line's end, but a PEM key's."""
        if "\n" not in value or len(value) <= 256 or "-----BEGIN" in value:
            return _TEXT.sub(_replace, value)
        lines = value.split("\n")
        clean = self.clean_lines
        for at, line in enumerate(lines):
            if line not in clean and _may_change(line):
                lines[at] = _TEXT.sub(_replace, line)
        return "\n".join(lines)

    def _may_change_lines(self, value: str, lines: list[str] | None = None) -> bool:
        """`_may_change`, looking only at the lines not seen before: no change the pattern makes
        crosses a line's end but a PEM key's, which the look finds by its first line. A prompt
        is mostly lines that came before (its module's instructions, its field names, passages
        retrieved again); only the rest is looked at (`lines`: those of them the caller found)."""
        if len(value) <= 256 or "\n" not in value:  # a short text's result is remembered whole
            return _may_change(value)
        fresh = set(value.split("\n") if lines is None else lines)
        fresh -= self.clean_lines
        if not fresh:
            return False
        if _look("\n".join(fresh)):
            return True
        self._remember_lines(fresh)
        return False

    def _remember_lines(self, clean: set[str]) -> None:
        """Lines the look found clean: skipped from now on once found so twice (SeenTwice)."""
        joined = self._lines.found_clean(clean)
        if joined and self.new_clean_lines is not None:
            if len(self.new_clean_lines) > NEW_LINES_KEPT:  # nobody took them: the reader reads the set whole
                self.new_clean_lines = None
            else:
                self.new_clean_lines.extend(joined)

    @property
    def clean_lines(self) -> set[str]:
        """Lines the quick look found the pattern cannot change (see `_may_change_lines`)."""
        return self._lines.clean

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
        if kind is dict or isinstance(value, Mapping):
            return self._mapping(value, limit, depth)
        if kind is list or kind is tuple or isinstance(value, (list, tuple, set, frozenset)):
            return self._items(value, limit, depth)
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

    # Strings and numbers in a list or map are taken here without another call (most of a
    # payload's values): `value` per item cost more than the rest of the pass.

    def _items(self, value: Any, limit: int, depth: int) -> list[Any]:
        items = value if type(value) is list else list(value)
        out: list[Any] = []
        text, memo, deeper = self.text, self._memo, depth + 1
        for item in items[:MAX_ITEMS] if len(items) > MAX_ITEMS else items:
            kind = type(item)
            if kind is str:
                out.append(memo.get(item) or text(item, limit))
            elif item is None or kind is int or kind is float or kind is bool:
                out.append(item)
            elif (
                kind is dict
                and item.keys() == _MESSAGE_KEYS
                and type(item["content"]) is str
                and type(item["role"]) is str
                and deeper <= MAX_DEPTH
            ):
                # A chat message, most of a payload: two names known to be plain, two strings.
                role, content = item["role"], item["content"]
                out.append(
                    {"role": memo.get(role) or text(role, limit), "content": memo.get(content) or text(content, limit)}
                )
            else:
                out.append(self.value(item, limit, deeper))
        if len(items) > MAX_ITEMS:
            out.append(f"… {len(items) - MAX_ITEMS} more")
        return out

    def _mapping(self, value: Mapping, limit: int, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        text, memo, keys, deeper = self.text, self._memo, self._keys, depth + 1
        items = value.items() if len(value) <= MAX_ITEMS else islice(value.items(), MAX_ITEMS)
        for key, item in items:
            known = keys.get(key) if type(key) is str else None
            if known is None:
                if type(key) is not str:
                    out[key if type(key) is int else self.text(str(key), 1024)] = self.value(item, limit, deeper)
                    continue
                known = (self.text(key, 1024), is_secret_name(key), key.lower().endswith("headers"))
                if len(keys) >= 4096:
                    keys.clear()
                keys[key] = known
            name, secret, headers = known
            kind = type(item)
            if secret and _holds_text(item):
                out[name] = REDACTED  # numbers under such a name (a model's token counts) are no secret
            elif headers and isinstance(item, Mapping):
                out[name] = {self.text(str(k), 1024): REDACTED for k in list(item)[:MAX_ITEMS]}
            elif kind is str:
                out[name] = memo.get(item) or text(item, limit)
            elif item is None or kind is int or kind is float or kind is bool:
                out[name] = item
            else:
                out[name] = self.value(item, limit, deeper)
        if len(value) > MAX_ITEMS:
            out["…"] = f"{len(value) - MAX_ITEMS} more"
        return out

    def argv(self, argv: Iterable[Any], limit: int = 4096) -> list[str]:
        """A command line: the value after a credential flag (`--api-key sk-…`) out too."""
        out: list[str] = []
        hide_next = False
        for index, arg in enumerate(argv):
            if index >= MAX_ITEMS:
                out.append("… more arguments")
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
