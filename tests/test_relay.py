"""`dspy-top relay` over its own stdio, as other tools would run it: real jobs, the real relay process.

Its hello comes first and names its versions; nothing is relayed before the viewer's hello;
then every sink call of its local sockets, in order, with each process's key; payload, stop
and forget requests reach the right process; a version it does not speak, bad input or a
terminal get a clear refusal; it ends when stdin closes. The same relay over a real sshd is
in test_ssh_hosts.py.
"""

from __future__ import annotations

import os
import pty
import queue
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top import protocol
from dspy_top.sources import relay_wire as wire
from tests.helpers.another_user import (
    Planted,
    as_another_user,
)
from tests.helpers.jobs import REPO, runtime_dir, start_job
from tests.helpers.relay_process import RelayProcess, greeted

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
def test_hello_first_then_each_process_attached_connected_and_streamed_under_its_key():
    directory = runtime_dir()
    job = start_job(directory)
    relay = RelayProcess(directory)
    try:
        hello = relay.next()
        assert hello["t"] == wire.RELAY and hello["v"] == wire.RELAY_VERSION and hello["versions"] == [1]
        assert hello["protocol"] == protocol.PROTOCOL_VERSION and hello["where"] == str(directory)
        assert hello["pid"] == relay.proc.pid and hello["host"] and hello["dspy_top"]
        with pytest.raises(queue.Empty):
            relay.frames.get(timeout=1.0)  # nothing is relayed before the viewer says which version it speaks
        relay.send({"t": wire.HELLO, "v": 1, "client": "tests"})
        key = str(job.socket_path)
        attach = relay.until(lambda f: f["t"] == wire.ATTACH, "attach")
        assert attach == {"t": "attach", "k": key, "pid": job.pid, "status": "connecting…"}
        connected = relay.until(lambda f: f["t"] == wire.CONNECTED, "connected")
        assert connected["k"] == key and connected["hello"]["pid"] == job.pid and connected["hello"]["v"] == 2
        snapshot = relay.next()
        assert snapshot["t"] == wire.MESSAGE and snapshot["k"] == key and snapshot["message"]["t"] == "snapshot"
        relay.until(lambda f: f["t"] == wire.SETTLED, "settled")

        truth = job.run(4)  # 8 LM calls
        calls = truth["totals"]["calls"]
        relay.until(
            lambda f: (
                f["t"] == wire.MESSAGE and f["message"]["t"] == "stats" and f["message"]["totals"]["calls"] == calls
            ),
            "the job's exact totals",
        )
        rows = [
            row
            for f in relay.seen
            if f["t"] == wire.MESSAGE and f["message"]["t"] == "calls"
            for row in f["message"]["rows"]
        ]
        assert len(rows) == calls and all(f["k"] == key for f in relay.seen if "k" in f)

        assert job.exit() == 0
        exit_frame = relay.until(lambda f: f["t"] == wire.MESSAGE and f["message"]["t"] == "exit", "the exit")
        assert exit_frame["message"]["stats"]["totals"]["calls"] == calls
        closed = relay.until(lambda f: f["t"] == wire.CLOSED, "closed")
        assert closed["k"] == key and closed["refused"] is False
        assert relay.close() == 0  # stdin closed: the relay ends
    finally:
        job.kill()
        relay.proc.kill()


@pytest.mark.slow
def test_payload_stop_and_forget_reach_the_process_with_the_viewers_request_ids():
    directory = runtime_dir()
    job = start_job(directory)
    relay = RelayProcess(directory)
    try:
        greeted(relay)
        key = str(job.socket_path)
        relay.until(lambda f: f["t"] == wire.SETTLED, "settled")
        truth = job.run(1)
        batch = relay.until(lambda f: f["t"] == wire.MESSAGE and f["message"]["t"] == "calls", "the calls")
        call_id = batch["message"]["rows"][-1][batch["message"]["fields"].index("id")]

        relay.send({"t": wire.GET_PAYLOAD, "k": key, "req": 4242, "id": call_id})
        answer = relay.until(lambda f: f["t"] == wire.MESSAGE and f["message"]["t"] == "payload", "the payload")
        assert answer["k"] == key and answer["message"]["req"] == 4242 and answer["message"]["found"] is True
        assert answer["message"]["payload"]["messages"][0]["role"] == "system"
        # A process the relay does not carry: answered at once, with why, under the viewer's id.
        relay.send({"t": wire.GET_PAYLOAD, "k": "/nowhere/1.sock", "req": 7, "id": 1})
        missing = relay.until(lambda f: f["t"] == wire.MESSAGE and f["k"] == "/nowhere/1.sock", "the refusal")
        assert missing["message"] == {
            "t": "payload",
            "req": 7,
            "id": 1,
            "found": False,
            "reason": "the process has ended: its payloads are gone",
        }
        relay.send({"t": "no-such-request", "k": key})  # unknown types are skipped
        relay.send({"t": wire.FORGET, "k": "/nowhere/1.sock"})

        relay.send({"t": wire.STOP, "k": key, "reason": "stopped by the relay test"})
        alert = relay.until(lambda f: f["t"] == wire.MESSAGE and f["message"]["t"] == "budget", "the stop alert")
        assert alert["message"]["level"] == "stop" and "stopped by the relay test" in alert["message"]["message"]
        job.proc.stdin.write("run 2\n")
        job.proc.stdin.flush()
        assert job.proc.wait(30) == 1  # its next LM call ended the run
        assert truth["totals"]["calls"] == 2
        relay.until(lambda f: f["t"] == wire.CLOSED and f["k"] == key, "closed")
    finally:
        job.kill()
        relay.close()


@pytest.mark.parametrize(
    "version, says",
    [
        (99, "asked for 99: upgrade dspy-top on this host (pip install -U dspy-top)"),
        (0, "asked for 0: upgrade the viewer's dspy-top (pip install -U dspy-top)"),
    ],
)
def test_a_viewer_speaking_another_relay_version_gets_an_error_that_says_which_side_to_upgrade(version, says):
    relay = RelayProcess(runtime_dir())
    greeted(relay, version)
    error = relay.next()
    assert error["t"] == wire.ERROR and error["reason"].endswith(says)
    assert "speaks relay protocol 1; tests asked for" in error["reason"]
    assert relay.next() is None and relay.close() == 2


def test_bad_input_is_refused_with_an_error_frame_and_a_terminal_with_a_message():
    relay = RelayProcess(runtime_dir())
    greeted(relay)
    relay.proc.stdin.write(b"\xff\xff\xff\xff garbage")
    relay.proc.stdin.flush()
    error = relay.until(lambda f: f["t"] == wire.ERROR, "the error")
    assert error["reason"].startswith("bad input from the viewer: frame length")
    assert relay.next() is None
    relay.close()

    # Run by hand in a terminal: a clear message, no binary on the screen.
    main, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dspy_top", "relay"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=30,
            cwd=str(REPO),
        )
    finally:
        os.close(main)
        os.close(secondary)
    assert result.returncode == 2
    assert b"stdout is a terminal; the relay speaks a binary protocol" in result.stderr


def test_relay_help_says_what_it_is_for():
    result = subprocess.run(
        [sys.executable, "-m", "dspy_top", "relay", "--help"], capture_output=True, text=True, timeout=30, cwd=str(REPO)
    )
    assert result.returncode == 0
    assert "dspy-top --host HOST" in result.stdout and "ends when stdin closes" in result.stdout


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _proc_net(name: str) -> list[list[str]]:
    try:
        return [line.split() for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]]
    except OSError:
        return []  # no IPv6 on this machine, say


@as_another_user
@pytest.mark.slow
def test_the_relay_opens_no_port_and_attaches_only_its_own_users_jobs(shared_tmp):  # noqa: F811
    # Another user's job whose socket sits in the relay's own directory (hard-linked there, the file made ours):
    # refused by its peer's credentials, as a local viewer refuses it. The user's own job is relayed.
    directory = runtime_dir()
    job = start_job(directory)
    planted = Planted(shared_tmp / "elsewhere")
    theirs = directory / planted.socket_path.name
    os.link(planted.socket_path, theirs)
    os.chown(theirs, os.getuid(), os.getgid())
    relay = RelayProcess(directory)
    try:
        greeted(relay)
        relay.until(lambda f: f["t"] == wire.SETTLED, "settled")
        [refused] = [f for f in relay.seen if f["t"] == wire.CLOSED and f["k"] == str(theirs)]
        assert "served by another user" in refused["reason"], refused
        connected = {f["k"] for f in relay.seen if f["t"] == wire.CONNECTED}
        assert connected == {str(job.socket_path)}
        assert not any(f.get("k") == str(theirs) for f in relay.seen if f["t"] == wire.MESSAGE)

        # Its sockets: the jobs' Unix sockets, as a client; nothing listening, no TCP or UDP socket at all.
        sockets = _socket_inodes(relay.proc.pid)
        assert sockets, "the relay holds its job's socket"
        for name in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
            assert not sockets & {row[9] for row in _proc_net(name) if len(row) > 9}, name
        unix = {row[6]: row[3] for row in _proc_net("unix") if len(row) > 6}
        assert sockets <= set(unix), "every socket of the relay is a Unix socket"
        assert all(int(unix[inode], 16) & 0x10000 == 0 for inode in sockets), "none listens"
        assert os.stat(f"/proc/{relay.proc.pid}").st_uid == os.getuid()  # the rights of the user who ran it
    finally:
        relay.close()
        planted.stop()
        job.kill()


def test_the_example_in_docs_protocol_md_reads_a_relay_as_another_tool_would():
    # The "Using it from another tool" example, run as written but for the command (a local relay, not ssh).
    text = (REPO / "docs" / "protocol.md").read_text()
    section = text[text.index("### Using it from another tool") :]
    example = section[section.index("```python\n") + len("```python\n") :]
    example = example[: example.index("```")]
    command = '["ssh", "gpu-box", "dspy-top", "relay"]'
    assert command in example
    example = example.replace(command, "[sys.executable, '-m', 'dspy_top', 'relay']")
    directory = runtime_dir()
    job = start_job(directory)
    truth = job.run(2)
    env = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(directory), "PYTHONPATH": str(REPO)}
    tool = subprocess.Popen(
        [sys.executable, "-c", "import sys\n" + example],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    try:
        expected = f"{job.socket_path} {truth['totals']['calls']}"
        seen = []
        for line in tool.stdout:  # a line per stats frame; the job's totals come within a second
            seen.append(line.strip())
            if line.strip() == expected:
                break
        assert expected in seen, (seen, tool.stderr.read() if tool.poll() is not None else "")
    finally:
        tool.kill()
        tool.wait(10)
        tool.stdout.close()
        tool.stderr.close()
        job.kill()


@pytest.mark.slow
def test_serve_and_the_relay_watch_the_same_job_at_once_each_with_its_exact_totals():
    # Both attach with the same code (`LocalSockets`: discovery, uid checks, retries), each as a viewer of the job.
    from dspy_top.simlm import SimLM
    from tests.helpers.jobs import JobProcess
    from tests.helpers.serve import Serve, wait_for

    directory = runtime_dir()
    with SimLM(latency_scale=0.0) as sim:
        job = JobProcess(directory, "--lm", "url", env={"SIM_URL": sim.base_url})
        serve = Serve(directory, "--prometheus", "127.0.0.1:0", "--hostname", "box-1")
        relay = RelayProcess(directory)
        try:
            greeted(relay)
            serve.expect(rf"job {job.pid} \(.*\) seen")
            truth = job.run(3)["totals"]
            ledger = sim.stats()
            assert truth["calls"] == ledger["requests"] == 6
            relay.until(
                lambda f: (
                    f["t"] == wire.MESSAGE
                    and f["message"]["t"] == "stats"
                    and f["message"]["totals"]["calls"] == 6
                    and f["message"]["totals"]["prompt_tokens"] == ledger["prompt_tokens"]
                ),
                "the relay's exact totals",
            )
            wait_for(
                lambda: sum(serve.samples("dspy_lm_calls_total", host="box-1").values()) == 6,
                30,
                "serve's exact calls",
                every=0.2,
            )
            tokens = serve.samples("dspy_lm_tokens_total", host="box-1")
            by_type = {t: sum(v for k, v in tokens.items() if dict(k)["type"] == t) for t in ("input", "output")}
            assert by_type == {"input": ledger["prompt_tokens"], "output": ledger["completion_tokens"]}
        finally:
            relay.close()
            serve.stop()
            job.kill()


def test_a_payload_the_process_no_longer_holds_is_read_from_its_recording_by_the_relay(tmp_path):
    # The relay's side of it, on a real recording (the real writer): a `found: false` answer from the process is
    # replaced by the file's payload, under the viewer's request id; a call the file lacks keeps the process's reason.
    from dspy_top import schema
    from dspy_top.relay.loop import StreamSink
    from tests.helpers.served_job import ServedJob

    path = tmp_path / "job.dtop"
    served = ServedJob(path)
    served.calls(5)
    served.close()
    out = bytearray()
    sink = StreamSink(out, wake=lambda: None)
    sink.connected("/run/4242.sock", schema.hello({**served.hello, "recording": str(path)}))
    sink.asked("/run/4242.sock", 7, 4242)
    sink.asked("/run/4242.sock", 8, 4243)
    gone = "the process no longer holds this call (only its most recent ones are kept)"
    sink.messages(
        "/run/4242.sock",
        [
            {"t": "payload", "req": 7, "id": 2, "found": False, "reason": gone},
            {"t": "payload", "req": 8, "id": 999, "found": False, "reason": gone},
        ],
    )
    sink.close()
    frames = [f for f in protocol.FrameReader(wire.MAX_FRAME).feed(bytes(out)) if f["t"] == wire.MESSAGE]
    assert [f["message"]["req"] for f in frames] == [4242, 4243]
    assert frames[0]["message"]["found"] is True and frames[0]["message"]["payload"] == served.payloads[2]
    assert frames[1]["message"]["found"] is False and frames[1]["message"]["reason"].startswith(
        gone + "; its recording"
    )
