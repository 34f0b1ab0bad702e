"""What the SSH relay adds: latency over a direct local attach, and whether it keeps up with 5,000 LM calls/s.

    python benchmarks/relay.py                                # 5,000 calls/s for 20 s, then 200 calls/s for 10 s
    python benchmarks/relay.py --rate 5000 --seconds 20 --quiet-rate 200 --quiet-seconds 10
    python benchmarks/relay.py --pause-relay 12           # the relay stalls 12 s: drops counted, totals exact

A real OpenSSH server on loopback (tests/helpers/sshd.py) serves `dspy-top relay`. One job
process (the real recorder and socket server, the job side without DSPy, as
stalled_viewers.py --server-cpu uses them) records `--rate` LM calls a second, paced in 10 ms
steps. One `Collector` runs two sources on that same job: the local socket directly, and an
`SshSource` through `ssh 127.0.0.1 dspy-top relay`; it notes when each call id arrives by
each path. Reported: the latency the relay adds (relay arrival minus direct arrival, per
call), whether the relayed totals equal the job's own (its exit frame) and every call is
either received or counted dropped, and the CPU time of the relay, of ssh, and of this
(viewer) process. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dspy_top import __version__  # noqa: E402
from dspy_top.model import Fleet  # noqa: E402
from dspy_top.sources.collector import Collector  # noqa: E402
from dspy_top.sources.local import local_sockets  # noqa: E402
from dspy_top.sources.ssh import SshSource  # noqa: E402
from tests.helpers.sshd import Sshd  # noqa: E402


def emit(rate: int, seconds: float, quiet_rate: int, quiet_seconds: float) -> None:
    """The job: the real recorder and server, `rate` calls/s for `seconds`, then `quiet_rate` for `quiet_seconds`."""
    import platform

    from dspy_top import protocol
    from dspy_top.instrumentation.recorder import Recorder
    from dspy_top.instrumentation.server import SocketServer

    started = time.time()
    recorder = Recorder()

    def hello() -> dict:
        return {
            "t": protocol.HELLO,
            "v": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": ["relay-bench-job"],
            "cwd": os.getcwd(),
            "executable": sys.executable,
            "started_at": started,
            "python": platform.python_version(),
            "dspy": "-",
            "dspy_top": __version__,
            "mechanism": "execution-hooks",
            "history_capacity": recorder.history_capacity,
        }

    server = SocketServer(recorder, hello, materialize=dict)
    server.start()
    print("READY", server.path, flush=True)
    sys.stdin.readline()  # both viewers attached
    for phase_rate, phase_seconds in ((rate, seconds), (quiet_rate, quiet_seconds)):
        step = 0.01
        per_step = phase_rate * step
        owed = 0.0
        begin = time.perf_counter()
        steps = int(phase_seconds / step)
        for number in range(steps):
            owed += per_step
            while owed >= 1:
                record = recorder.begin(
                    "Pipeline.answer.predict", "Predict", ("Pipeline", "Predict"), "openai/gpt-4o-mini"
                )
                recorder.finish(record, prompt_tokens=120, completion_tokens=12, response_model="gpt-4o-mini")
                owed -= 1
            pause = begin + (number + 1) * step - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    time.sleep(0.6)  # the server's last ticks
    print("TRUTH", json.dumps(recorder.stats()["totals"]), flush=True)
    sys.stdin.readline()
    server.stop(final={"at": time.time()})


class TimedCollector(Collector):
    """The real collector, noting when each call id arrives, per process key."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: dict[str, dict[int, float]] = {}

    def _messages(self, key, messages):
        now = time.monotonic()
        seen = self.arrivals.setdefault(key, {})
        for message in messages:
            if message.get("t") == "calls":
                column = message["fields"].index("id")
                for row in message["rows"]:
                    seen.setdefault(row[column], now)
        return super()._messages(key, messages)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> dict[int, list[bytes]]:
    """Every process under `root` (the sshd: its session processes and the relay), with its command line."""
    parents: dict[int, int] = {}
    commands: dict[int, list[bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            commands[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = commands.get(pid, [])
                frontier.append(pid)
    return found


def server_side(sshd_pid: int) -> tuple[int | None, list[int]]:
    """The `dspy-top relay` process, and sshd's own session processes (which encrypt what it sends)."""
    relay, sessions = None, []
    for pid, command in descendants(sshd_pid).items():
        if any(part.endswith(b"dspy-top") for part in command) and b"relay" in command:
            relay = pid
        else:
            sessions.append(pid)
    return relay, sessions


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(rate: int, seconds: float, quiet_rate: int, quiet_seconds: float, pause_relay: float = 0.0) -> dict:
    base = Path(tempfile.mkdtemp(prefix="relaybench"))
    directory = Path(tempfile.mkdtemp(prefix="dtrb", dir="/tmp"))
    venv_bin = str(Path(sys.executable).parent)
    server = Sshd.start(
        base / "sshd", env={"PATH": f"{venv_bin}:/usr/bin:/bin", "DSPY_TOP_RUNTIME_DIR": str(directory)}
    )
    job = subprocess.Popen(
        [sys.executable, __file__, "--emit", str(rate), str(seconds), str(quiet_rate), str(quiet_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DSPY_TOP_RUNTIME_DIR": str(directory), "PYTHONPATH": str(REPO)},
    )
    socket_path = job.stdout.readline().split()[1]
    fleet = Fleet()
    ssh = SshSource(server.host, version=__version__, ssh=server.ssh_command())
    collector = TimedCollector(fleet, [local_sockets(directory=directory, rescan_every=0.2), ssh]).start()
    relayed, direct = f"{server.host}:{socket_path}", socket_path
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with fleet.lock:
                ready = all(key in fleet.processes and fleet.processes[key].events > 0 for key in (relayed, direct))
            if ready:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the job was not attached on both paths within 30 s")
        relay, sessions = server_side(server.process.pid)

        def sshd_cpu() -> float:
            return sum(cpu_seconds(pid) for pid in sessions if Path(f"/proc/{pid}").exists())

        cpu = {
            "relay": cpu_seconds(relay) if relay else 0.0,
            "ssh": cpu_seconds(ssh.ssh_pid),
            "sshd": sshd_cpu(),
            "viewer": time.process_time(),
        }
        job.stdin.write("go\n")
        job.stdin.flush()
        if pause_relay and relay:
            # A relay that cannot keep up (a stalled network): the job drops call events for it and counts
            # them, exactly as for a slow local viewer; the totals stay exact.
            time.sleep(2.0)
            os.kill(relay, signal.SIGSTOP)
            time.sleep(pause_relay)
            os.kill(relay, signal.SIGCONT)
        truth = json.loads(job.stdout.readline().split(" ", 1)[1])
        used = {
            "relay": cpu_seconds(relay) - cpu["relay"] if relay else None,
            "ssh": cpu_seconds(ssh.ssh_pid) - cpu["ssh"],
            "sshd": sshd_cpu() - cpu["sshd"],
            "viewer": time.process_time() - cpu["viewer"],
        }
        job.stdin.write("exit\n")
        job.stdin.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with fleet.lock:
                ended = all(fleet.processes[key].state == "ended" for key in (relayed, direct))
            if ended:
                break
            time.sleep(0.05)
        with fleet.lock:
            final = {
                key: (fleet.processes[key].totals, fleet.processes[key].dropped_viewer, fleet.processes[key].state)
                for key in (relayed, direct)
            }
        arrivals = collector.arrivals
        added = [
            (arrivals[relayed][call] - at) * 1000
            for call, at in arrivals.get(direct, {}).items()
            if call in arrivals.get(relayed, {})
        ]
        calls = truth["calls"]
        result = {
            "rate": rate,
            "seconds": seconds,
            "pause_relay": pause_relay,
            "quiet_rate": quiet_rate,
            "quiet_seconds": quiet_seconds,
            "calls": calls,
            "relayed": {
                "calls_total": final[relayed][0].calls,
                "state": final[relayed][2],
                "rows_received": len(arrivals.get(relayed, {})),
                "dropped": final[relayed][1],
            },
            "direct": {
                "calls_total": final[direct][0].calls,
                "rows_received": len(arrivals.get(direct, {})),
                "dropped": final[direct][1],
            },
            "added_latency_ms": {
                "calls_compared": len(added),
                "p50": round(statistics.median(added), 1) if added else None,
                "p95": round(percentile(added, 0.95), 1) if added else None,
                "p99": round(percentile(added, 0.99), 1) if added else None,
                "max": round(max(added), 1) if added else None,
            },
            "cpu_s_per_1000_calls": {
                name: None if value is None else round(value / calls * 1000, 4) for name, value in used.items()
            },
            "cpu_share_of_a_core": {
                name: None if value is None else round(value / (seconds + quiet_seconds + 0.6), 3)
                for name, value in used.items()
            },
        }
        result["exact"] = (
            result["relayed"]["calls_total"] == calls
            and result["relayed"]["rows_received"] + result["relayed"]["dropped"] == calls
        )
        return result
    finally:
        collector.stop()
        job.kill()
        server.stop()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--emit":
        emit(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quiet-rate", type=int, default=200)
    parser.add_argument("--quiet-seconds", type=float, default=10.0)
    parser.add_argument(
        "--pause-relay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop the relay (SIGSTOP) this long, 2 s into the run: drops must be counted",
    )
    args = parser.parse_args()
    result = run(args.rate, args.seconds, args.quiet_rate, args.quiet_seconds, args.pause_relay)
    latency = result["added_latency_ms"]
    print(
        f"{result['calls']:,} calls ({args.rate:,}/s for {args.seconds:g} s, then {args.quiet_rate:,}/s "
        f"for {args.quiet_seconds:g} s)"
    )
    print(
        f"relayed: total {result['relayed']['calls_total']:,} (job's exit: {result['calls']:,}), "
        f"{result['relayed']['rows_received']:,} call rows received + {result['relayed']['dropped']:,} counted "
        f"dropped -> exact: {result['exact']}"
    )
    print(
        f"direct:  total {result['direct']['calls_total']:,}, {result['direct']['rows_received']:,} rows + "
        f"{result['direct']['dropped']:,} dropped"
    )
    print(
        f"latency the relay adds, per call (relay arrival - direct arrival): p50 {latency['p50']} ms, "
        f"p95 {latency['p95']} ms, p99 {latency['p99']} ms, max {latency['max']} ms "
        f"over {latency['calls_compared']:,} calls"
    )
    print(
        f"CPU per 1,000 calls (s): {result['cpu_s_per_1000_calls']}; share of a core: {result['cpu_share_of_a_core']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
