"""The local sockets' public "which sockets to watch" strategy (sources/targets.py), with real instrumented jobs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dspy_top import client
from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import LocalSockets
from dspy_top.sources.targets import Discovered, Named, targets_for
from tests.helpers.jobs import runtime_dir, start_job
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
NO_SUCH_PID = 2**22 + 12345  # above Linux's pid_max


class Chosen:
    """A caller's own strategy: the pids it lists now."""

    discovering = False

    def __init__(self, *pids: int) -> None:
        self.pids = list(pids)

    def sockets(self, directory):
        return [(client.socket_for_pid(pid, directory), pid) for pid in self.pids]


def rows(fleet):
    with fleet.lock:
        return {p.pid: p for p in fleet.snapshot().processes}


def test_the_default_strategies_follow_the_options():
    assert isinstance(targets_for(), Discovered) and targets_for().discovering
    named = targets_for([7], ["/tmp/x.sock"])
    assert isinstance(named, Named) and not named.discovering
    directory = runtime_dir()
    assert list(named.sockets(directory)) == [(client.socket_for_pid(7, directory), 7), (Path("/tmp/x.sock"), None)]


@pytest.mark.slow
def test_a_collector_watches_what_its_strategy_names_and_lets_go_of_a_name_it_drops():
    directory = runtime_dir()
    chosen, bystander = start_job(directory), start_job(directory)
    fleet = Fleet()
    strategy = Chosen(chosen.pid, NO_SUCH_PID)
    collector = Collector(fleet, [LocalSockets(strategy, directory, rescan_every=0.1)]).start()
    try:
        truth = chosen.run(1)
        wait_until(
            lambda: (
                chosen.pid in rows(fleet)
                and rows(fleet)[chosen.pid].totals.calls == truth["totals"]["calls"]
                and NO_SUCH_PID in rows(fleet)
            ),
            "the chosen job and the missing pid",
        )
        assert rows(fleet)[NO_SUCH_PID].status == f"no process {NO_SUCH_PID}"
        assert bystander.pid not in rows(fleet)  # not named: not watched
        strategy.pids = [chosen.pid]  # the strategy drops a name that never attached: its row goes
        wait_until(lambda: NO_SUCH_PID not in rows(fleet), "the dropped name to go")
        strategy.pids = []  # a name that attached keeps its numbers
        time.sleep(0.5)
        assert rows(fleet)[chosen.pid].totals.calls == truth["totals"]["calls"]
    finally:
        collector.stop()
        chosen.kill()
        bystander.kill()
