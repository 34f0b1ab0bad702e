"""Credentials never leave the process in a payload."""

from dspy_top.instrumentation.redact import REDACTED, known_secrets, scrub


def test_credential_keys_headers_and_values_are_removed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-1234567890abcdef")
    secrets = known_secrets(["another-secret-value"])
    payload = scrub({
        "api_key": "sk-live-1234567890abcdef",
        "headers": {"Authorization": "Bearer abc", "X-Trace": "1"},
        "extra": {"Access-Token": "t0ps3cret"},
        "messages": [{"role": "user", "content": "my key is sk-live-1234567890abcdef and another-secret-value"}],
        "note": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload",
        "max_tokens": 100,
    }, secrets)
    text = repr(payload)
    assert "sk-live" not in text and "another-secret-value" not in text and "t0ps3cret" not in text
    assert "eyJhbGci" not in text
    assert payload["api_key"] == REDACTED
    assert payload["headers"] == {"Authorization": REDACTED, "X-Trace": REDACTED}
    assert payload["max_tokens"] == 100


def test_long_strings_and_odd_values_are_bounded():
    out = scrub({"big": "x" * 300_000, "kind": int, "obj": object(), "blob": b"abc"}, [])
    assert len(out["big"]) < 300_000 and out["big"].endswith("more characters]")
    assert out["kind"] == "int" and out["blob"] == "<3 bytes>" and out["obj"].startswith("<object")
