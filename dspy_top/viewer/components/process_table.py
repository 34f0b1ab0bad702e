"""The process list: pid, command line, uptime, state (and why, for a broken one); enter focuses one.

With `--host`, a host column says which machine each process runs on, and the title how many
of the hosts are connected.
"""

from __future__ import annotations

from rich.text import Text

from dspy_top.model import Snapshot
from dspy_top.viewer import format as fmt
from dspy_top.viewer.hosts_report import host_of, host_width
from dspy_top.viewer.terminal import inert
from dspy_top.viewer.components.keyed_table import Column, KeyedTable

FIXED = (
    Column("pid", "PID", 8),
    Column("state", " STATE", 9, right=False),
    Column("uptime", "UP", 9),
    Column("calls", "CALLS", 8),
    Column("cost", "COST", 10),
)
STATE_STYLE = {"running": "green", "connecting": "cyan", "ended": "dim", "lost": "bold red", "failed": "bold red"}


class ProcessTable(KeyedTable):
    """Every known process; ended ones stay (dimmed) until dismissed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cell_padding=0, **kwargs)
        self.set_title("Processes")
        self.focus_key: str | None = None
        self._width = 80
        self._host_width = 0  # no host column until a snapshot has hosts (`--host`)

    def layout_for(self, width: int) -> None:
        self._width = width
        hosts = (Column("host", " HOST", self._host_width + 1, right=False),) if self._host_width else ()
        command = max(12, width - sum(c.width for c in FIXED) - 3 - sum(c.width for c in hosts))
        self.set_columns((Column("mark", " ", 1, right=False), *hosts, *FIXED,
                          Column("command", " COMMAND / STATUS", command, right=False)))

    def show(self, snapshot: Snapshot) -> None:
        if host_width(snapshot) != self._host_width:
            self._host_width = host_width(snapshot)
            self.layout_for(self._width)
        rows = []
        for p in snapshot.processes:
            host = [Text(f" {inert(host_of(p))}")] if self._host_width else []
            style = STATE_STYLE.get(p.state, "")
            note = p.command if p.state == "running" else (f"{p.command} · {p.status}" if p.command else p.status)
            if p.before_attach is not None:  # first: a long command line is cut at the column's end
                note = f"{p.before_attach.short()} · {note}"
            note = inert(note)
            rows.append((p.key, [
                Text("▶" if p.key == snapshot.focus else " ", style="bold"), *host,
                str(p.pid or "?"), Text(f" {p.state}", style=style),
                fmt.short_uptime(p.uptime) if p.started_at else "-",
                fmt.count(p.totals.calls) if p.started_at else "-", fmt.cost(p.totals) if p.started_at else "-",
                Text(f" {note}", style="dim" if p.state == "ended" else ("red" if p.state in ("lost", "failed") else "")),
            ]))
        self.sync(rows)
        live = snapshot.live
        scope = "all" if snapshot.focus is None else f"pid {next((p.pid for p in snapshot.processes if p.key == snapshot.focus), '?')}"
        connected = ""
        if snapshot.hosts:
            up = sum(1 for h in snapshot.hosts if h.state == "connected")
            connected = f" · {up} of {len(snapshot.hosts)} host{'s' if len(snapshot.hosts) != 1 else ''} connected"
        self.set_title(f"Processes ({live} live of {len(rows)} · showing {scope}{connected})")
