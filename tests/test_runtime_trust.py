"""Another local user cannot make the viewer trust their fake jobs (issue 20, item 11).

As root the tests act as another user for real: `nobody` pre-creates the victim's runtime
directory world-writable and serves a fake job in it (planted_server.py, standard library only).
The viewer must not show it (directory owner and mode, peer credentials), must follow no symbolic
link, and both `dspy-top` and `dspy-top run` fall back to a private directory with a warning,
leaking nothing. Without root the tests that need another user are skipped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_top import client, paths, protocol
from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from tests.helpers.another_user import AS_NOBODY, Planted, as_another_user
from tests.helpers.fake_server import FakeServer, hello, snapshot
from tests.helpers.jobs import REPO, JobProcess, runtime_dir

pytestmark = pytest.mark.timeout(120)

RUN_JOB = Path(__file__).parent / "jobs" / "run_job.py"


def viewer_env(tmp: Path, state: Path | str) -> dict[str, str]:
    """The environment of a user with no XDG runtime dir, TMPDIR=tmp and their private state dir at `state`."""
    unset = ("XDG_RUNTIME_DIR", "DSPY_TOP_RUNTIME_DIR", "DSPY_TOP_STATE_DIR", "DSPY_TOP")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return {**env, "TMPDIR": str(tmp), "XDG_STATE_HOME": str(state), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def assert_only_the_log_is_left(tmp: Path) -> None:
    """A run's work dir keeps its log (its path was shown); the shim, the fallback copy and sockets go."""
    for work_dir in tmp.glob("dspy-top-run-*"):
        assert [p.name for p in work_dir.iterdir()] == ["job.log"], list(work_dir.iterdir())


def dspy_top(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=90
    )


@pytest.mark.slow
@as_another_user
def test_a_runtime_dir_planted_by_another_user_is_not_trusted_and_its_fake_job_not_shown(shared_tmp):
    planted_dir = shared_tmp / f"dspy-top-{os.getuid()}"  # the victim's usual runtime directory
    fake = Planted(planted_dir)
    state = shared_tmp / "home-state"
    state.mkdir(mode=0o700)
    env = viewer_env(shared_tmp, state)
    try:
        assert planted_dir.stat().st_uid != os.getuid() and fake.socket_path.exists()
        seen = dspy_top("-b", "-n", "1", "--json", env=env)
        assert "FAKE-JOB" not in seen.stdout
        assert json.loads(seen.stdout)["processes"] == [] and seen.returncode == 1
        fallback = state / "dspy-top" / "sockets"
        assert f"{planted_dir} belongs to another user (uid {AS_NOBODY['user']})" in seen.stderr
        assert f"using {fallback} instead" in seen.stderr
        # The victim's own job picks the same private directory, and the viewer finds it there.
        job = JobProcess(shared_tmp, "--lm", "dummy", env={**env, "DSPY_TOP_RUNTIME_DIR": ""})
        try:
            assert job.socket_path.parent == fallback
            truth = job.run(2)
            seen = dspy_top("-b", "-n", "1", "--json", env=env)
            processes = json.loads(seen.stdout)["processes"]
            assert [p["pid"] for p in processes] == [job.pid] and processes[0]["calls"] == truth["totals"]["calls"]
        finally:
            job.kill()
    finally:
        fake.stop()


@as_another_user
def test_a_socket_served_by_another_user_is_refused_by_its_peer_credentials(shared_tmp):
    fake = Planted(shared_tmp / "elsewhere")
    try:
        with pytest.raises(client.ConnectError, match=r"served by another user \(uid \d+\): not trusted"):
            client.Connection(fake.socket_path).connect()
        fleet = Fleet()
        collector = Collector(fleet, [local_sockets(sockets=[fake.socket_path], rescan_every=0.2)]).start()
        try:
            assert collector.wait_settled(20)
            (row,) = fleet.snapshot().processes
            assert row.state == "failed" and "served by another user" in row.status and row.command == ""
        finally:
            collector.stop()
    finally:
        fake.stop()


@pytest.mark.slow
@as_another_user
def test_dspy_top_run_falls_back_to_a_private_dir_when_the_runtime_dir_is_planted(shared_tmp):
    Planted(shared_tmp / f"dspy-top-{os.getuid()}").stop()  # planted, then left there
    state = shared_tmp / "home-state"
    state.mkdir(mode=0o700)
    result = dspy_top(
        "run", "-b", "--json", "--", sys.executable, str(RUN_JOB), "--calls", "2", env=viewer_env(shared_tmp, state)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["totals"]["calls"] == 4
    assert "belongs to another user" in result.stderr and str(state / "dspy-top" / "sockets") in result.stderr
    assert_only_the_log_is_left(shared_tmp)


@pytest.mark.slow
def test_dspy_top_run_with_no_usable_runtime_dir_uses_its_work_dir_and_leaks_nothing():
    tmp_path = runtime_dir()  # short: a socket path under it fits the 107-byte limit
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**viewer_env(tmp_path, blocker), "DSPY_TOP_RUNTIME_DIR": str(blocker / "sockets")}
    result = dspy_top("run", "-b", "--json", "--", sys.executable, str(RUN_JOB), "--calls", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["totals"]["calls"] == 4
    assert "the job's sockets are in" in result.stderr and "DSPY_TOP_RUNTIME_DIR=" in result.stderr
    assert_only_the_log_is_left(tmp_path)
    # The viewer alone says the same kind of thing and does not crash.
    seen = dspy_top("-b", "-n", "1", env=env)
    assert seen.returncode == 1 and "Traceback" not in seen.stderr and "cannot be" in seen.stderr


def test_symbolic_links_are_never_followed(tmp_path):
    real = runtime_dir()
    fake = FakeServer(real / f"{os.getpid()}.sock", [hello(os.getpid()), snapshot(3)])
    try:
        assert [e.pid for e in client.discover(real)] == [os.getpid()]
        linked_dir = tmp_path / "linked"
        linked_dir.symlink_to(real)
        assert paths.untrusted(linked_dir) == "is a symbolic link"
        assert client.discover(linked_dir) == []
        other = runtime_dir()
        (other / "4.sock").symlink_to(fake.path)  # a socket name that points elsewhere
        assert client.discover(other) == []
        with pytest.raises(client.ConnectError, match="symbolic link"):
            client.Connection(other / "4.sock").connect()
        not_a_socket = other / f"{os.getpid()}.sock"
        not_a_socket.write_text("")
        assert client.discover(other) == []
    finally:
        fake.stop()


def test_a_directory_others_can_write_to_is_not_trusted(tmp_path):
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, 0o777)
    assert "can be written by other users (mode 0777)" in paths.untrusted(directory)
    os.chmod(directory, 0o700)
    assert paths.untrusted(directory) is None
    assert paths.untrusted(tmp_path / "not-yet" / "made") is None  # can be created
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(directory / f"{os.getpid()}.sock"))
        sock.listen(1)
        os.chmod(directory, 0o777)
        assert client.discover(directory) == []


def test_relay_and_serve_fall_back_from_a_runtime_dir_others_can_write_to(tmp_path):
    """`dspy-top relay` and `dspy-top serve` read sockets as the viewer does: the same trust, the same fallback."""
    planted = tmp_path / f"dspy-top-{os.getuid()}"
    planted.mkdir()
    os.chmod(planted, 0o777)
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "DSPY_TOP_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(REPO),
    }
    for name in ("DSPY_TOP_RUNTIME_DIR", "XDG_RUNTIME_DIR", "DSPY_TOP"):
        env.pop(name, None)
    fallback = tmp_path / "state" / "sockets"
    relay = subprocess.run(
        [sys.executable, "-m", "dspy_top", "relay"], input=b"", capture_output=True, cwd=REPO, env=env, timeout=90
    )
    (greeting,) = protocol.FrameReader().feed(relay.stdout)[:1]
    assert greeting["where"] == str(fallback) and f"{planted} can be written by other users" in greeting["warning"]
    serve = subprocess.Popen(
        [sys.executable, "-m", "dspy_top", "serve", "--prometheus", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        said = [serve.stderr.readline() for _ in range(2)]
    finally:
        serve.terminate()
        serve.wait(30)
        serve.stderr.close()
    assert f"{planted} can be written by other users (mode 0777): using {fallback} instead" in said[0], said
    assert "Traceback" not in "".join(said) + relay.stderr.decode()
