"""Credentials never leave the process: the redaction pass on its own, then every path a viewer reads."""

import pytest

from dspy_top.instrumentation.redact import REDACTED, Redactor
from tests.helpers.planted_secrets import LEAKS, start_secret_job


def test_credential_keys_headers_and_values_are_removed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-1234567890abcdef")
    redactor = Redactor()
    redactor.learn(["another-secret-value"])
    payload = redactor.value(
        {
            "api_key": "sk-live-1234567890abcdef",
            "headers": {"Authorization": "Bearer abc", "X-Trace": "1"},
            "extra": {"Access-Token": "t0ps3cret"},
            "messages": [{"role": "user", "content": "my key is sk-live-1234567890abcdef and another-secret-value"}],
            "note": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload",
            "max_tokens": 100,
        }
    )
    text = repr(payload)
    assert "sk-live" not in text and "another-secret-value" not in text and "t0ps3cret" not in text
    assert "eyJhbGci" not in text
    assert payload["api_key"] == REDACTED
    assert payload["headers"] == {"Authorization": REDACTED, "X-Trace": REDACTED}
    assert payload["max_tokens"] == 100


def test_long_strings_and_odd_values_are_bounded():
    out = Redactor({}).value({"big": "x" * 300_000, "kind": int, "obj": object(), "blob": b"abc"})
    assert len(out["big"]) < 300_000 and out["big"].endswith("more characters]")
    assert out["kind"] == "int" and out["blob"] == "<3 bytes>" and out["obj"].startswith("<object")


# --- the corpus: every shape of secret, and names and text that are not secrets ------------------

# (text that carries a secret, the secret)
SECRETS = [
    ("sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4"),
    ("key sk-ant-api03-AAAAbbbbCCCCdddd1111eeee", "sk-ant-api03-AAAAbbbbCCCCdddd1111eeee"),
    ("legacy sk-0123456789abcdefghijABCDEFGHIJ0123456789abcd", "sk-0123456789abcdefghijABCDEFGHIJ0123456789abcd"),
    ("Authorization: Bearer abc123.def456-ghi789", "abc123.def456-ghi789"),
    ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("X-Auth-Token: xauth-0123456789", "xauth-0123456789"),
    ("Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ('{"api-key": "azure-key-value-1234"}', "azure-key-value-1234"),
    ("x-api-key=anthropic-value-5678", "anthropic-value-5678"),
    ("Cookie: session=cookie-value-91011", "cookie-value-91011"),
    ("Proxy-Authorization: Basic cHJveHk6c2VjcmV0", "cHJveHk6c2VjcmV0"),
    ("https://alice:s3cr3t-p4ss@example.com/v1", "s3cr3t-p4ss"),
    ("postgres://svc:db-pass-1234@db.internal:5432/app", "db-pass-1234"),
    ("AWS key AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("ghp_0123456789abcdefghijABCDEFGHIJ012345", "ghp_0123456789abcdefghijABCDEFGHIJ012345"),
    (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCD",
    ),
    ("glpat-abcdefghij0123456789", "glpat-abcdefghij0123456789"),
    ("slack xoxb-123456789012-abcdefghijkl", "xoxb-123456789012-abcdefghijkl"),
    ("google AIzaSyA-0123456789abcdefghijklmnopqrstu", "AIzaSyA-0123456789abcdefghijklmnopqrstu"),
    ("hf_abcdefghijklmnopqrstuvwxyzABCDEF012", "hf_abcdefghijklmnopqrstuvwxyzABCDEF012"),
    ("stripe sk_live_0123456789abcdefABCDEF", "sk_live_0123456789abcdefABCDEF"),
    ("groq gsk_abcdefghij0123456789ABCDEFGH", "gsk_abcdefghij0123456789ABCDEFGH"),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    ),
    ("run --api-key plain-value-1 now", "plain-value-1"),
    ("--token=plain-value-2", "plain-value-2"),
    ("--password plain-value-3", "plain-value-3"),
    ("--openai-api-key=plain-value-4", "plain-value-4"),
    ("password: hunter2-hunter2", "hunter2-hunter2"),
    ("client_secret=oauth-client-secret-99", "oauth-client-secret-99"),
    ("GET /x?api_key=query-key-value-77&page=2", "query-key-value-77"),
]
# Ordinary text and names that must come through untouched.
NOT_SECRETS = [
    "max_tokens: 100",
    "--max-tokens 100",
    "prompt_tokens=12",
    "metric_key: eval_full",
    "signature: question -> answer",
    "Basic arithmetic is fun",
    "The bearer bonds were found",
    "Answer: 42",
    "sk-learn-compatible-estimator",
    "http://127.0.0.1:8080/v1",
    "RAG.generate_answer.predict",
    "openai/gpt-4o-mini",
    "key: value pairs",
    "caf\\xe9.txt",
    "reasoning_tokens: 7",
]


def test_every_shape_of_secret_is_redacted_in_text_structures_and_command_lines():
    redactor = Redactor({})
    for text, secret in SECRETS:
        assert secret not in redactor.text(text), text
        assert secret not in repr(redactor.value({"note": text, "nested": [{"deeper": text}]})), text
        assert secret not in repr(redactor.argv(["job.py", text])), text
        assert REDACTED in redactor.text(text)
    for text in NOT_SECRETS:
        assert redactor.text(text) == text
        assert redactor.value({"note": text}) == {"note": text}


def test_credential_names_are_redacted_in_any_nesting_and_ordinary_names_are_not():
    redactor = Redactor({})
    names = [
        "api_key",
        "apiKey",
        "X-Auth-Token",
        "Ocp-Apim-Subscription-Key",
        "api-key",
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "client_secret",
        "password",
        "aws_secret_access_key",
        "access_token",
        "refresh_token",
        "x-goog-api-key",
        "private_key",
        "AccountKey",
    ]
    for name in names:
        out = redactor.value({"outer": [{"options": {name: "value-of-a-credential"}}]})
        assert out["outer"][0]["options"][name] == REDACTED, name
    kept = {
        "max_tokens": 100,
        "metric_key": "eval_full",
        "prompt_tokens": 3,
        "token": "Hello",
        "eos_token": "</s>",
        "signature": "question -> answer",
        "model": "openai/gpt-4o-mini",
        "by_model": {"my-secret-model": [1, 2, 3]},
    }
    assert redactor.value(kept) == kept


def test_command_lines_lose_the_values_of_credential_flags():
    argv = [
        "job.py",
        "--api-key",
        "sk-abc",
        "--token=tok-123",
        "--password",
        "hunter2",
        "--openai-api-key=k-456",
        "--key",
        "k-789",
        "--max-tokens",
        "100",
        "--verbose",
    ]
    shown = Redactor({}).argv(argv)
    assert shown == [
        "job.py",
        "--api-key",
        REDACTED,
        f"--token={REDACTED}",
        "--password",
        REDACTED,
        f"--openai-api-key={REDACTED}",
        "--key",
        REDACTED,
        "--max-tokens",
        "100",
        "--verbose",
    ]


def test_values_of_credential_variables_are_redacted_wherever_they_appear():
    environ = {
        "OPENAI_API_KEY": "plain-looking-value-1",
        "MY_SERVICE_TOKEN": "plain-looking-value-2",
        "PWD": "/home/someone/project",
        "TOKENIZERS_PARALLELISM": "false-but-long",
    }
    redactor = Redactor(environ)
    text = "failed with plain-looking-value-1 and plain-looking-value-2 in /home/someone/project, false-but-long"
    assert redactor.text(text) == f"failed with {REDACTED} and {REDACTED} in /home/someone/project, false-but-long"
    environ["LATE_API_KEY"] = "set-after-start-value"  # a job may set a key once running
    redactor.refresh()
    assert redactor.text("x set-after-start-value y") == f"x {REDACTED} y"


# --- through the socket, as a viewer reads it -----------------------------------------------------


@pytest.mark.slow
def test_no_secret_leaves_the_job_on_any_path_a_viewer_reads(tmp_path):
    from dspy_top import protocol
    from dspy_top.simlm import SimLM
    from tests.helpers.line_jobs import raw_connect

    runtime = tmp_path / "rt"
    with SimLM(latency_scale=0.0) as sim:
        job = start_secret_job(sim.base_url, runtime, tmp_path / "none.toml")
        try:
            line = job.stdout.readline()
            assert line.startswith("READY"), job.stderr.read()[-3000:]
            sock = raw_connect(line.split()[1])
            received = bytearray()
            reader = protocol.FrameReader()
            messages = []

            def read_until(predicate):
                while not any(predicate(m) for m in messages):
                    data = sock.recv(1 << 20)
                    assert data, [m["t"] for m in messages]
                    received.extend(data)
                    messages.extend(reader.feed(data))

            read_until(lambda m: m["t"] == "snapshot")
            snapshot = [m for m in messages if m["t"] == "snapshot"][0]
            ids = [call["id"] for call in snapshot["calls"]]
            assert len(ids) == 3  # the question, the failed call, the evaluation
            for number, call_id in enumerate(ids):
                sock.sendall(protocol.encode({"t": "get_payload", "req": number, "id": call_id}))
            read_until(lambda m: m["t"] == "stats")
            read_until(lambda m: sum(x["t"] == "payload" for x in messages) == len(ids))
            job.stdin.write("exit\n")
            job.stdin.flush()
            while data := sock.recv(1 << 20):
                received.extend(data)
                messages.extend(reader.feed(data))
            assert job.wait(30) == 0
        finally:
            job.kill()
    kinds = {m["t"] for m in messages}
    assert {"hello", "snapshot", "stats", "payload", "exit"} <= kinds
    everything = bytes(received).decode("utf-8", "replace") + repr(messages)
    for secret in LEAKS:
        assert secret not in everything, secret
    # What was redacted is still there to read, around the holes.
    hello = messages[0]
    assert hello["argv"][-6:] == [
        "--api-key",
        "[redacted]",
        "--token=[redacted]",
        "--password",
        "[redacted]",
        "--openai-api-key=[redacted]",
    ]
    failed = [c for c in snapshot["calls"] if c["error_message"]]
    assert failed and all("no route POST /[redacted]/v1" in c["error_message"] for c in failed)
    payloads = [m["payload"] for m in messages if m["t"] == "payload" and m["found"]]
    assert any("api_base" in p["options"] and "alice:[redacted]@" in p["options"]["api_base"] for p in payloads)
    assert any("Summarise" in repr(p["messages"]) for p in payloads)
    evaluation = [s for s in snapshot["stats"]["scopes"] if s["kind"] == "eval"][0]
    assert evaluation["metadata"]["metric_key"] == "eval_full" and evaluation["metadata"]["api_key"] == "[redacted]"


# --- the quick look before the pattern ------------------------------------------------------------

# Pieces of text that come near what the pattern looks for, and ordinary prose to put them in.
RISKY = (
    [text for text, _ in SECRETS]
    + NOT_SECRETS
    + [
        "key",
        "token",
        "pass",
        "pwd",
        "auth",
        "Cookie",
        "secret",
        "credential",
        "bearer",
        "Basic",
        "-pat",
        "--pat",
        "api_key",
        "api-key",
        "api.key",
        "apiKey",
        "pass_word",
        "pass-word",
        "cook-ie",
        "cook_ie",
        "se.cret",
        "to-ken",
        "au_th",
        "--token",
        "--key",
        "--api-key",
        "-key",
        ": ",
        "=",
        " = ",
        ":",
        '"',
        "'",
        "-",
        "--",
        "_",
        ".",
        "@",
        "://",
        "https://",
        "user:",
        "sk-",
        "sk_live_",
        "AKIA",
        "eyJ",
        "ghp_",
        "xoxb-",
        "AIza",
        "hf_",
        "gsk_",
        "xai-",
        "npm_",
        "glpat-",
        "PRIVATE KEY",
        "-----BEGIN ",
        "0123456789",
        "ABCDEFGHIJ",
        "The key points are",
        "passage",
        "tokens",
        "author",
        "keyboard",
        "monkey",
        "password",
        "é-",
        "\u00a0",
        "Ǆ",
        "K",
        "İ",
    ]
)
PROSE = [
    "the",
    "answer",
    "question",
    "is",
    "a",
    "of",
    "in",
    "and",
    "reasoning",
    "each",
    "with",
    "what",
    " ",
    " ",
    "  ",
    "\t",
    "\n",
    ", ",
    ". ",
    "(",
    ")",
    "`",
    "[[ ## answer ## ]]\n",
    "Your input fields are:\n",
    "1. `question` (str):",
    "café",
    "naïve",
    "state-of-the-art",
    "snake_case_name",
    "x" * 20,
    "0123456789",
    "abcdefghijklmnop",
    "well-known",
    "U.S.",
    "e.g.",
    "42",
    "3.14",
]


@pytest.mark.slow
def test_the_quick_look_never_skips_text_the_pattern_would_change():
    import random

    from dspy_top.instrumentation import redact

    draw = random.Random(16)
    changed = skipped = 0
    for _ in range(4000):
        text = "".join(draw.choice(RISKY if draw.random() < 0.04 else PROSE) for _ in range(draw.randint(20, 120)))
        full = redact._TEXT.sub(redact._replace, text)
        if full != text:
            changed += 1
            assert redact._may_change(text), text
        elif not redact._may_change(text):
            skipped += 1
        assert Redactor({}).text(text) == redact.valid_text(full), text
    assert changed > 1000 and skipped > 200  # both kinds were generated


def test_the_quick_look_passes_an_lms_ordinary_text_without_the_pattern():
    from dspy_top.instrumentation import redact

    prompt = (
        "Your input fields are:\n1. `question` (str):\n2. `context` (list[str]):\nYour output fields are:\n"
        "1. `reasoning` (str):\n2. `answer` (str):\nAll interactions will be structured in the following "
        "way, with the appropriate values filled in.\n\n[[ ## question ## ]]\n{question}\n\n"
        "[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]\nThe key point is that each passage "
        "has tokens; state-of-the-art retrieval passes them on."
    )
    assert not redact._may_change(prompt)
    assert redact._may_change(prompt + " api_key: abc")
    assert redact._may_change(prompt + " --token abc")


@pytest.mark.slow
def test_lines_found_clean_before_are_not_looked_at_again_and_nothing_is_missed():
    """One redactor over many texts made of lines that come again (a prompt's instructions, its
    passages), some of them holding credentials: the lines it found clean are skipped after, and
    every text still comes out exactly as the pattern makes it."""
    import random

    from dspy_top.instrumentation import redact

    draw = random.Random(61)

    def line() -> str:
        return "".join(draw.choice(RISKY if draw.random() < 0.04 else PROSE) for _ in range(draw.randint(1, 30)))

    pool = [line().replace("\n", " ") for _ in range(300)]
    warm = Redactor({})
    changed = 0
    for _ in range(3000):
        lines = [draw.choice(pool) for _ in range(draw.randint(1, 8))]
        if draw.random() < 0.5:
            lines.insert(draw.randint(0, len(lines)), line())
        text = "\n".join(lines)
        full = redact._TEXT.sub(redact._replace, text)
        changed += full != text
        assert warm.text(text) == redact.valid_text(full), text
    assert changed > 300 and len(warm.clean_lines) > 100  # both kinds were met, and lines were kept
