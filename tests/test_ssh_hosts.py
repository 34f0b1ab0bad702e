"""`dspy-top --host`: another machine's jobs through a real OpenSSH server and `dspy-top relay`.

The "remote" machine is this one reached over a real sshd on a loopback port (tests/helpers/
sshd.py: generated host and user keys), whose sessions get their own DSPY_TOP_RUNTIME_DIR
(SetEnv), so the relay sees only the jobs started there: real DSPy jobs against the
simulated LM, whose own ledger is the truth. The viewer reaches it with the user's ssh,
pointed at the server by DSPY_TOP_SSH (or an ssh config file), as a user's ~/.ssh/config would.
One sshd, simulated LM and set of jobs serve the whole module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dspy_top import __version__
from dspy_top.model import Fleet
from dspy_top.simlm import SimLM
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.sources.ssh import SshSource
from tests.helpers.jobs import REPO, JobProcess, runtime_dir, start_job
from tests.helpers.screen import screen_text
from tests.helpers.sshd import MISSING, Sshd, free_port, keygen
from tests.helpers.waiting import pilot_wait, wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.skipif(MISSING is not None, reason=MISSING or ""), pytest.mark.slow]

VENV_BIN = str(Path(sys.executable).parent)  # where `dspy-top` is installed: the "remote" PATH has it


@dataclass
class Remote:
    """The other machine (a real sshd with its own runtime directory) and the jobs on both sides."""

    server: Sshd
    sim: SimLM
    directory: Path  # the remote side's runtime directory
    local: Path  # this side's
    jobs: list[JobProcess]  # two remote jobs, then one local one, all on `sim`

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def ssh(self) -> list[str]:
        return self.server.ssh_command()

    def source(self, **options) -> SshSource:
        return SshSource(self.host, version=__version__, ssh=self.ssh, **options)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DSPY_TOP_SSH": shlex.join(self.ssh),
            "DSPY_TOP_RUNTIME_DIR": str(self.local),
            "PYTHONPATH": str(REPO),
            "DSPY_TOP_CONFIG": str(self.local / "none.toml"),
        }

    def key(self, job: JobProcess) -> str:
        return f"{self.host}:{job.socket_path}"


def remote_env(directory: Path, path: str) -> dict[str, str]:
    return {"PATH": path, "DSPY_TOP_RUNTIME_DIR": str(directory), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    sim = SimLM(latency_scale=0.0).start()
    directory, local = runtime_dir(), runtime_dir()
    server = Sshd.start(tmp_path_factory.mktemp("sshd"), env=remote_env(directory, f"{VENV_BIN}:/usr/bin:/bin"))
    started: list[JobProcess] = []
    try:
        with ThreadPoolExecutor(3) as pool:  # DSPy's import is the slow part: all three at once
            futures = [
                pool.submit(JobProcess, where, "--lm", "url", env={"SIM_URL": sim.base_url})
                for where in (directory, directory, local)
            ]
            started = [future.result() for future in futures]
        yield Remote(server, sim, directory, local, started)
    finally:
        for job in started:
            job.kill()
        server.stop()
        sim.stop()


def dspy_top(remote: Remote, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env or remote.env(),
        stdin=subprocess.DEVNULL,
        cwd=str(REPO),
    )


def exact(totals: dict, sim: dict) -> None:
    """The viewer's totals are the simulated LM's own count: calls, and every billed token."""
    assert totals["calls"] == sim["requests"] == sim["ok"]
    assert totals["prompt_tokens"] == sim["prompt_tokens"] and totals["completion_tokens"] == sim["completion_tokens"]


def test_batch_json_and_text_show_each_remote_job_with_its_host_beside_the_local_one_with_exact_totals(remote):
    first, second, mine = remote.jobs
    truths = [first.run(3), second.run(2), mine.run(1)]
    result = dspy_top(remote, "--host", remote.host, "-b", "-n", "1", "--json")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    by_pid = {p["pid"]: p for p in snapshot["processes"]}
    assert set(by_pid) == {first.pid, second.pid, mine.pid}
    assert by_pid[first.pid]["host"] == by_pid[second.pid]["host"] == remote.host and by_pid[mine.pid]["host"] is None
    assert by_pid[first.pid]["socket"] == remote.key(first) and by_pid[mine.pid]["socket"] == str(mine.socket_path)
    for job, truth in zip(remote.jobs, truths):
        assert by_pid[job.pid]["calls"] == truth["totals"]["calls"] and by_pid[job.pid]["state"] == "running"
    exact(snapshot["totals"], remote.sim.stats())
    [host] = snapshot["hosts"]
    assert host["host"] == remote.host and host["state"] == "connected" and host["retry_at"] is None
    assert host["status"] == f"dspy-top {__version__} on {os.uname().nodename}, watching {remote.directory}"

    # Text, the remote machine only: a HOST column, the host's line, no local row.
    result = dspy_top(remote, "--host", remote.host, "--no-local", "-b", "-n", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"Hosts: {remote.host} connected" in lines
    assert [line.split()[:3] for line in lines if line.startswith("HOST")] == [["HOST", "PID", "STATE"]]
    rows = [line.split() for line in lines if line.startswith(remote.host)]
    assert sorted((row[1], row[4]) for row in rows) == sorted(
        (str(job.pid), str(truth["totals"]["calls"])) for job, truth in zip(remote.jobs[:2], truths[:2])
    )
    assert not any(line.split()[:1] == ["local"] for line in lines)
    assert f"{sum(t['totals']['calls'] for t in truths[:2])} calls" in lines[0]


def run_app(sources, script, size=(150, 40)):
    from dspy_top.viewer.app import TopApp

    async def main():
        fleet = Fleet()
        app = TopApp(fleet, Collector(fleet, sources), delay=0.2)
        notes: list[str] = []
        app.notify = lambda message, **kw: notes.append(str(message))
        async with app.run_test(size=size) as pilot:
            await script(app, pilot, notes)

    asyncio.run(main())


async def wait_for(pilot, predicate, what: str) -> None:
    await pilot_wait(pilot, predicate, what, timeout=30.0)


def rows_by_key(app) -> dict:
    return {p.key: p for p in app.snapshot.processes}


@pytest.mark.slow
def test_viewer_shows_remote_rows_by_host_fetches_their_payloads_and_reconnects_after_ssh_is_killed(remote):
    from dspy_top.viewer.components.history_table import HistoryTable
    from dspy_top.viewer.components.process_table import ProcessTable
    from dspy_top.viewer.screens.inspect import InspectScreen

    first, second, mine = remote.jobs
    source = remote.source(backoff=(0.5,))
    sources = [local_sockets(directory=remote.local, rescan_every=0.2), source]
    keys = [remote.key(first), remote.key(second), str(mine.socket_path)]

    async def script(app, pilot, notes):
        truth = await asyncio.to_thread(first.run, 1)
        await wait_for(
            pilot,
            lambda: (
                app.snapshot
                and len(app.snapshot.processes) == 3
                and all(p.state == "running" for p in app.snapshot.processes)
                and app.snapshot.totals.calls == remote.sim.stats()["requests"]
            ),
            "every job, exactly",
        )
        totals = app.snapshot.totals
        sim = remote.sim.stats()
        assert (totals.prompt_tokens, totals.completion_tokens) == (sim["prompt_tokens"], sim["completion_tokens"])
        assert rows_by_key(app)[keys[0]].totals.calls == truth["totals"]["calls"]
        # The process list: each row with its host, and how many hosts are connected.
        await pilot.press("p")
        table = app.query_one(ProcessTable)
        columns = [c.key for c in table.table_columns]
        assert columns[:3] == ["mark", "host", "pid"]
        hosts = {key: str(table.get_row(key)[1]).strip() for key in keys}
        assert hosts == {keys[0]: remote.host, keys[1]: remote.host, keys[2]: "local"}
        assert "1 of 1 host connected" in str(table.border_title)

        # A remote call's payload, fetched through the relay into the inspector.
        app.set_focus_process(keys[0])
        await pilot.pause(0.3)
        history = app.query_one(HistoryTable)
        history.focus()
        await pilot.press("end", "enter")
        assert isinstance(app.screen, InspectScreen)
        text = app.screen.query_one("#inspect-text")
        await wait_for(pilot, lambda: "System message" in str(text.render()), "the payload from the remote job")
        assert "[[ ## answer ## ]]" in str(text.render())
        await pilot.press("escape")
        app.set_focus_process(None)

        # ssh killed: the host is disconnected, its rows lost (last numbers, not final); the local job runs on.
        os.kill(source.ssh_pid, signal.SIGKILL)
        await wait_for(pilot, lambda: app.snapshot.host_problems, "the host shown disconnected")
        [host] = app.snapshot.hosts
        assert host.state == "disconnected" and host.status == "connection lost: ssh was ended by SIGKILL"
        await wait_for(pilot, lambda: rows_by_key(app)[keys[0]].state == "lost", "the remote rows lost")
        row = rows_by_key(app)[keys[0]]
        assert row.final_numbers == "not received" and row.status.startswith(
            f"connection lost: connection to {remote.host} lost (ssh was ended by SIGKILL)"
        )
        assert rows_by_key(app)[keys[2]].state == "running"
        await pilot.pause(0.3)
        assert f"{remote.host} disconnected: connection lost: ssh was ended by SIGKILL" in screen_text(app)

        # Calls made while it is down are there, exactly, once it is back.
        more = await asyncio.to_thread(first.run, 2)
        await wait_for(pilot, lambda: app.snapshot.hosts[0].state == "connected", "the host reconnected")
        await wait_for(
            pilot,
            lambda: (
                rows_by_key(app)[keys[0]].state == "running"
                and rows_by_key(app)[keys[0]].totals.calls == more["totals"]["calls"]
            ),
            "the remote rows back",
        )
        await wait_for(pilot, lambda: app.snapshot.totals.calls == remote.sim.stats()["requests"], "exact totals")
        assert source.connections == 2 and not app.snapshot.host_problems
        assert len(app.snapshot.processes) == 3  # the same rows again, none kept apart

    run_app(sources, script)


@pytest.mark.slow
def test_stop_through_the_relay_ends_the_remote_job_and_says_why(remote):
    from dspy_top.viewer.screens.confirm import ConfirmStop

    job = start_job(remote.directory)  # its own job: stopping it leaves the module's jobs running
    try:
        job.run(1)
        key = remote.key(job)

        async def script(app, pilot, notes):
            await wait_for(
                pilot,
                lambda: app.snapshot and key in rows_by_key(app) and rows_by_key(app)[key].state == "running",
                "the remote job",
            )
            app.set_focus_process(key)
            await pilot.pause(0.2)
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmStop)
            await pilot.press("y")
            await wait_for(
                pilot,
                lambda: any(a.level == "stop" for j in app.snapshot.job_budgets if j.process == key for a in j.alerts),
                "the stop alert from the job",
            )
            job.proc.stdin.write("run 3\n")  # its next LM call ends the run
            job.proc.stdin.flush()
            assert await asyncio.to_thread(job.proc.wait, 30) == 1
            await wait_for(pilot, lambda: rows_by_key(app)[key].state == "ended", "the remote job ended")
            assert rows_by_key(app)[key].final_numbers == "received"

        run_app([remote.source()], script)
        stderr = job.stderr
        assert stderr.strip().splitlines()[-1].startswith("dspy-top: stop requested from the viewer (dspy-top pid ")
        assert "Traceback" not in stderr
    finally:
        job.kill()


def other_relay(*args: str) -> str:
    return shlex.join([sys.executable, str(REPO / "tests" / "helpers" / "other_relay.py"), *args])


def test_each_way_a_host_can_fail_gets_its_own_clear_message(remote, tmp_path):
    server = remote.server
    closed = server.ssh_command()
    closed[closed.index("-p") + 1] = str(free_port())  # nothing listens there
    stranger = tmp_path / "stranger_ed25519"
    keygen(stranger)
    # Another sshd whose sessions' PATH has no dspy-top, as a host where it was never installed.
    bare = Sshd.start(tmp_path / "bare", env=remote_env(remote.directory, "/usr/bin:/bin"))
    cases = {
        "unreachable": (closed, "dspy-top relay", f"cannot reach {server.host} (ssh: connect to host 127.0.0.1 port "),
        "refused": (
            server.ssh_command(stranger),
            "dspy-top relay",
            f"{server.host} refused the login ({server.host}: Permission denied (publickey).): dspy-top runs "
            "ssh in batch mode",
        ),
        "missing": (
            bare.ssh_command(),
            "dspy-top relay",
            f"dspy-top is not installed on {bare.host}, or not on the PATH of commands run over ssh (",
        ),
        "newer": (
            server.ssh_command(),
            other_relay("--relay-versions", "2", "--dspy-top", "9.0.0"),
            f"dspy-top 9.0.0 on {server.host} is newer than this one ({__version__}; relay protocol 2, this one "
            "speaks 1): upgrade dspy-top here (pip install -U dspy-top)",
        ),
        "older": (
            server.ssh_command(),
            other_relay("--protocol", "1", "--dspy-top", "0.0.9"),
            f"dspy-top 0.0.9 on {server.host} is older than this one ({__version__}; process protocol 1, this "
            "one speaks 2): upgrade it there (pip install -U dspy-top)",
        ),
        "older relay": (
            server.ssh_command(),
            other_relay("--relay-versions", "0", "--dspy-top", "0.0.5"),
            f"dspy-top 0.0.5 on {server.host} is older than this one ({__version__}; relay protocol 0, this one "
            "speaks 1): upgrade it there (pip install -U dspy-top)",
        ),
        "newer protocol": (
            server.ssh_command(),
            other_relay("--protocol", "3", "--dspy-top", "9.1.0"),
            f"dspy-top 9.1.0 on {server.host} is newer than this one ({__version__}; process protocol 3, this "
            "one speaks 2): upgrade dspy-top here (pip install -U dspy-top)",
        ),
        "banner": (
            server.ssh_command(),
            "echo Welcome to the cluster; dspy-top relay",
            f"{server.host} did not answer as a dspy-top relay: its output began b'Welcome to the cluster\\n",
        ),
        "before relay": (
            server.ssh_command(),
            other_relay("--before-relay"),
            f"dspy-top on {server.host} is too old for --host: it has no `dspy-top relay` "
            "(dspy-top: error: unrecognized arguments: relay); upgrade it there "
            "(pip install -U dspy-top)",
        ),
    }
    try:
        sources = {
            name: SshSource(
                server.host if name != "missing" else bare.host,
                version=__version__,
                ssh=ssh,
                relay_command=command,
                backoff=(60.0,),
            )
            for name, (ssh, command, _) in cases.items()
        }
        # Each on its own collector: one host name (the same sshd) reached in nine ways.
        fleets = {name: Fleet() for name in cases}
        collectors = [Collector(fleets[name], [source]).start() for name, source in sources.items()]
        try:
            for name, (_, _, says) in cases.items():
                fleet = fleets[name]
                wait_until(
                    lambda fleet=fleet: fleet.hosts and next(iter(fleet.hosts.values())).problem,
                    f"the {name} host's failure",
                )
                [host] = fleet.hosts.values()
                assert host.state == "disconnected" and host.status.startswith(says), (name, host.status)
                assert host.retry_at is not None and host.retry_at > time.time() + 30  # tried again later
                assert not fleet.processes
        finally:
            for collector in collectors:
                collector.stop()
        assert "dspy-top: command not found" in sources["missing"].failure  # what the host's shell said
    finally:
        bare.stop()


def test_batch_mode_says_each_host_problem_on_stderr_once_and_exits_1_with_nothing_attached(remote, tmp_path):
    server = remote.server
    stranger = tmp_path / "stranger_ed25519"
    keygen(stranger)
    # The user's way: aliases in an ssh config file (`ssh -F` here; ~/.ssh/config for a user).
    config = tmp_path / "ssh_config"
    common = (
        f"  HostName 127.0.0.1\n  User {server.user}\n  UserKnownHostsFile {server.known_hosts}\n"
        "  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n"
    )
    config.write_text(
        f"Host gone\n{common}  Port {free_port()}\n  IdentityFile {server.user_key}\n"
        f"Host wrongkey\n{common}  Port {server.port}\n  IdentityFile {stranger}\n"
    )
    env = {**remote.env(), "DSPY_TOP_SSH": f"ssh -F {config}"}
    result = dspy_top(remote, "--host", "gone,wrongkey", "--no-local", "-b", "-n", "2", "-d", "0.5", env=env)
    assert result.returncode == 1
    problems = [
        line for line in result.stderr.splitlines() if line.startswith(("dspy-top: gone", "dspy-top: wrongkey"))
    ]
    assert len(problems) == 2, result.stderr  # each once, though two snapshots were printed
    assert problems[0].startswith("dspy-top: gone: cannot reach gone (ssh: connect to host 127.0.0.1 port ")
    assert problems[1].startswith("dspy-top: wrongkey: wrongkey refused the login (")
    assert "Hosts: gone disconnected: cannot reach gone" in result.stdout


def test_host_options_are_checked():
    def usage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "dspy_top", *args, "-b"], capture_output=True, text=True, timeout=30, cwd=str(REPO)
        )
        assert result.returncode == 2
        return result.stderr.strip().splitlines()[-1]

    assert usage("--no-local").endswith("--no-local needs --host")
    assert usage("--host", "a,,b").endswith("empty host name in 'a,,b'")
    assert usage("--host=-oProxyCommand=x").endswith("not a host name: '-oProxyCommand=x'")
    assert usage("--host", "a", "--no-local", "-p", "1").endswith("cannot go with --no-local")
    assert usage("--host", "a", "--ssh", "ssh 'unclosed").endswith("cannot read the ssh command: No closing quotation")


@pytest.mark.slow
def test_batch_mode_waits_for_a_host_slower_to_answer_than_local_sockets(remote):
    # A host whose login takes a while (a slow network, a busy machine): the first snapshot still has its jobs.
    first, second, _ = remote.jobs
    truths = [first.run(1), second.run(1)]
    slow = "sh -c 'sleep 5; exec dspy-top relay'"
    result = dspy_top(remote, "--host", remote.host, "--no-local", "--relay-command", slow, "-b", "-n", "1", "--json")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert sorted(p["calls"] for p in snapshot["processes"]) == sorted(t["totals"]["calls"] for t in truths)
    assert snapshot["hosts"][0]["state"] == "connected"


def test_a_remote_calls_payload_opens_from_its_recording_on_that_host_after_the_job_ended(remote, tmp_path):
    # Issue 16 through the relay: the job on the other machine recorded; it exited, so only its file there has
    # the payload. The relay reads it on its side (the viewer's machine has no such file).
    from dspy_top.recording import Recording
    from tests.helpers.recorded import RecordJob, calls_of, everything

    path = tmp_path / "remote-job.dtop"
    sim = SimLM(latency_scale=0.0).start()  # its own: the module's simulated LM counts the module's jobs only
    job = RecordJob(tmp_path, sim.base_url, env={"DSPY_TOP_RECORD": str(path)})
    there = Sshd.start(tmp_path / "sshd", env=remote_env(job.socket_path.parent, f"{VENV_BIN}:/usr/bin:/bin"))
    answers = []
    fleet = Fleet()
    source = SshSource(there.host, version=__version__, ssh=there.ssh_command())
    collector = Collector(fleet, [source], on_payload=answers.append).start()
    try:
        key = f"{there.host}:{job.socket_path}"
        wait_until(lambda: key in fleet.processes and fleet.processes[key].state == "running", "the remote job")
        job.run(3)
        assert job.exit() == 0
        wait_until(lambda: fleet.processes[key].state == "ended", "the remote job ended")
        messages, _ = everything(path)
        first, last = calls_of(messages)[0]["id"], calls_of(messages)[-1]["id"]
        for call_id in (first, last):
            collector.request_payload(key, call_id)
            wait_until(lambda call_id=call_id: any(a.call_id == call_id for a in answers), "the payload's answer")
            [answer] = [a for a in answers if a.call_id == call_id]
            with Recording(path) as recording:
                assert answer.process == key and answer.payload == recording.payload(call_id), answer
        # A call the recording does not have: why, from the host's side.
        collector.request_payload(key, 10**9)
        wait_until(lambda: any(a.call_id == 10**9 for a in answers), "the refusal")
        [missing] = [a for a in answers if a.call_id == 10**9]
        assert missing.payload is None and "the process has ended" in missing.reason
        assert f"its recording {path} holds no payload for this call" in missing.reason
    finally:
        collector.stop()
        there.stop()
        job.kill()
        sim.stop()


def ssh_config_entry(alias: str, server: Sshd) -> str:
    """A ~/.ssh/config entry naming `server` as `alias`."""
    return (
        f"Host {alias}\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.user_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {server.known_hosts}\n  StrictHostKeyChecking yes\n"
    )


def test_host_is_repeatable_and_takes_commas_each_machines_rows_under_its_name_with_exact_totals(remote, tmp_path):
    # Two machines: alpha has the two "remote" jobs, beta (another sshd, its own runtime directory) the third.
    beta = Sshd.start(tmp_path / "beta", env=remote_env(remote.local, f"{VENV_BIN}:/usr/bin:/bin"))
    try:
        config = tmp_path / "ssh_config"
        config.write_text(ssh_config_entry("alpha", remote.server) + ssh_config_entry("beta", beta))
        env = {**remote.env(), "DSPY_TOP_SSH": f"ssh -F {config}"}
        first, second, third = remote.jobs
        truths = [first.run(1), second.run(2), third.run(1)]
        expected = {first.pid: "alpha", second.pid: "alpha", third.pid: "beta"}
        for hosts in (["--host", "alpha", "--host", "beta"], ["--host", "alpha,beta"], ["--host", "beta,alpha"]):
            result = dspy_top(remote, *hosts, "--no-local", "-b", "-n", "1", "--json", env=env)
            assert result.returncode == 0, (hosts, result.stderr)
            snapshot = json.loads(result.stdout)
            assert {p["pid"]: p["host"] for p in snapshot["processes"]} == expected, hosts
            assert {h["host"]: h["state"] for h in snapshot["hosts"]} == {"alpha": "connected", "beta": "connected"}
            by_pid = {p["pid"]: p for p in snapshot["processes"]}
            for job, truth in zip(remote.jobs, truths):
                assert by_pid[job.pid]["calls"] == truth["totals"]["calls"]
            exact(snapshot["totals"], remote.sim.stats())  # every job of the simulated LM, each once

        result = dspy_top(remote, "--host", "alpha", "--host", "beta", "--no-local", "-b", "-n", "1", env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "Hosts: alpha connected; beta connected" in lines, result.stdout
        rows = sorted((row[0], row[1]) for row in map(str.split, lines) if row[:1] in (["alpha"], ["beta"]))
        assert rows == sorted((host, str(pid)) for pid, host in expected.items())
    finally:
        beta.stop()


def test_a_host_that_keeps_failing_is_tried_again_later_each_time_up_to_the_last_delay(remote):
    closed = remote.ssh
    closed[closed.index("-p") + 1] = str(free_port())  # nothing listens there
    fleet = Fleet()
    # A clock that moves 1000 s each time it is read: each failure's retry_at is a new multiple of 1000 plus the
    # delay it chose, exactly.
    clock = itertools.count(1000, 1000)
    source = SshSource(remote.host, version=__version__, ssh=closed, backoff=(0.5, 1.0, 1.5), clock=lambda: next(clock))
    collector = Collector(fleet, [source]).start()
    seen: dict[float, float] = {}  # retry_at -> its delay
    try:

        def five_failures() -> bool:
            host = fleet.hosts.get(remote.host)
            if host is not None and host.retry_at is not None:
                seen[host.retry_at] = round(host.retry_at % 1000, 3)
            return len(seen) >= 5

        wait_until(five_failures, "five failed attempts")
    finally:
        collector.stop()
    delays = [seen[at] for at in sorted(seen)]
    assert delays[:3] == [0.5, 1.0, 1.5] and set(delays[3:]) == {1.5}, delays
    assert fleet.hosts[remote.host].state == "disconnected" and not fleet.processes


def test_a_newer_relay_that_still_speaks_this_viewers_relay_version_is_used_with_it(remote):
    # Negotiated, not equal: a dspy-top 9.0.0 relay speaking relay protocols 1 and 2 serves this viewer with 1.
    first, second, _ = remote.jobs
    truths = [first.run(1), second.run(1)]
    fleet = Fleet()
    source = SshSource(
        remote.host,
        version=__version__,
        ssh=remote.ssh,
        relay_command=other_relay("--relay-versions", "1,2", "--dspy-top", "9.0.0"),
    )
    collector = Collector(fleet, [source]).start()
    try:
        keys = [remote.key(first), remote.key(second)]
        wait_until(
            lambda: all(key in fleet.processes and fleet.processes[key].state == "running" for key in keys),
            "the jobs through the newer relay",
        )
        for key, truth in zip(keys, truths):
            wait_until(
                lambda key=key, truth=truth: fleet.processes[key].totals.calls == truth["totals"]["calls"], "exact"
            )
        [host] = fleet.hosts.values()
        assert host.state == "connected" and host.status.startswith("dspy-top 9.0.0 on "), host.status
    finally:
        collector.stop()


def test_a_host_given_as_an_ssh_url_with_its_port_is_reached(remote):
    """`--host ssh://user@host:port` (as the README says): ssh takes the port from the URL, so the
    ssh command has no `-p`; the remote jobs come under the host as it was given."""
    url = f"ssh://{remote.server.user}@127.0.0.1:{remote.server.port}"
    command = remote.ssh
    at = command.index("-p")
    env = {**remote.env(), "DSPY_TOP_SSH": shlex.join(command[:at] + command[at + 2 :])}
    first, second, _ = remote.jobs
    result = dspy_top(remote, "--host", url, "--no-local", "-b", "-n", "1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert {p["pid"]: p["host"] for p in snapshot["processes"]} == {first.pid: url, second.pid: url}
    [host] = snapshot["hosts"]
    assert host["host"] == url and host["state"] == "connected"
