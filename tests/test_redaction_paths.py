"""No credential leaves by the paths built on the job's stream after the redaction pass was written
(issue 20, item 12): a recording's exports (JSON lines, CSV, inspect, with payloads), `replay -b`,
`runs --json`, `dspy-top relay` (every frame, payloads included) and `dspy-top serve` (its /metrics
text and what it pushes over OTLP). The job is the one of the socket's privacy test
(tests/helpers/planted_secrets.py), its secrets in its argv, environment, LM, prompt and metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from dspy_top.simlm import SimLM
from dspy_top.sources import relay_wire as wire
from tests.helpers.line_jobs import REPO
from tests.helpers.otlp_receiver import OtlpReceiver
from tests.helpers.planted_secrets import LEAKS, start_secret_job
from tests.helpers.relay_process import RelayProcess, greeted
from tests.helpers.serve import Serve, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def dspy_top(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DSPY_TOP", None)
    done = subprocess.run(
        [sys.executable, "-m", "dspy_top", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr[-3000:])
    return done.stdout + done.stderr


def test_no_secret_reaches_an_export_a_replay_the_relay_or_serve(tmp_path):
    runtime = tempfile.mkdtemp(prefix="dtx", dir="/tmp")  # AF_UNIX paths are short
    records = tmp_path / "runs"
    bodies: list[tuple[str, bytes]] = []
    otlp = OtlpReceiver(lambda path, body: bodies.append((path, body)))
    relay = serve = None
    with SimLM(latency_scale=0.0) as sim:
        job = start_secret_job(sim.base_url, runtime, tmp_path / "none.toml", DSPY_TOP_RECORD=f"{records}/")
        try:
            line = job.stdout.readline()
            assert line.startswith("READY"), job.stderr.read()[-3000:]
            key = line.split()[1]
            relay = RelayProcess(runtime)
            greeted(relay)
            snapshot = relay.until(
                lambda f: f["t"] == wire.MESSAGE and f["message"]["t"] == "snapshot", "the snapshot"
            )["message"]
            ids = [call["id"] for call in snapshot["calls"]]
            assert len(ids) == 3  # the question, the failed call, the evaluation
            for number, call_id in enumerate(ids):
                relay.send({"t": wire.GET_PAYLOAD, "k": key, "req": number, "id": call_id})
            relay.until(
                lambda f: sum(g["t"] == wire.MESSAGE and g["message"]["t"] == "payload" for g in relay.seen) == 3,
                "every payload",
            )
            serve = Serve(
                runtime,
                "--prometheus",
                "127.0.0.1:0",
                "--otlp",
                otlp.url,
                env={"OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_BSP_SCHEDULE_DELAY": "200"},
            )

            def with_the_job():
                text = serve.scrape()
                return text if "sim-local" in text else None

            scraped = wait_for(with_the_job, 60, "the job's models on /metrics")
            wait_for(
                lambda: any(path.endswith("/v1/metrics") and b"sim-local" in body for path, body in bodies),
                60,
                "the job's models pushed over OTLP",
            )
            job.stdin.write("again\n")  # calls while serve watches: each becomes a span
            job.stdin.flush()
            assert job.stdout.readline().startswith("DONE"), job.stderr.read()[-3000:]
            wait_for(
                lambda: any(path.endswith("/v1/traces") and b"no route" in body for path, body in bodies),
                60,
                "the calls' spans, the failed one's with its error",
            )
            job.stdin.write("exit\n")
            job.stdin.flush()
            assert job.wait(60) == 0
            relay.until(lambda f: f["t"] == wire.MESSAGE and f["message"]["t"] == "exit", "the exit")
            assert serve.stop() == 0
        finally:
            job.kill()
            if relay is not None:
                relay.proc.kill()
                relay.close()
            if serve is not None:
                serve.stop()
            otlp.close()
    (recording,) = records.glob("*.dtop")
    paths = {
        "relay": repr(relay.seen),
        "serve /metrics": scraped,
        "serve OTLP": b"".join(body for _, body in bodies).decode("utf-8", "replace"),
        "serve log": serve.log(),
        "export jsonl": dspy_top("export", str(recording), "--payloads"),
        "export csv": dspy_top("export", str(recording), "--format", "csv", "--payloads"),
        "export inspect": dspy_top("export", str(recording), "--format", "inspect", "-n", "10"),
        "replay -b": dspy_top("replay", "-b", "-n", "1", str(recording)),
        "replay -b --json": dspy_top("replay", "-b", "--json", "-n", "1", str(recording)),
        "runs --json": dspy_top("runs", "--json", "--dir", str(records)),
    }
    assert "Summarise" in paths["export inspect"] and "Summarise" in paths["export jsonl"]  # payloads were there
    assert "no route POST /[redacted]/v1" in paths["export csv"]  # the failed call's row, its key removed
    assert "alice:[redacted]@" in paths["relay"] and "--token=[redacted]" in paths["relay"]  # payloads, hello
    assert "sim-local" in paths["serve OTLP"] and "sim-local" in paths["replay -b"]
    assert "no route POST /[redacted]/v1" in paths["serve OTLP"]  # the failed call's span, its key removed
    for where, text in paths.items():
        for secret in LEAKS:
            assert secret not in text, (where, secret)
