"""The process list: pid, state, uptime, calls, cost and the script (or why it failed); enter focuses one.

Below the fleet's processes, dimmed, the user's DSPy jobs started without dspy-top that `A` can
attach to (attach_offers.py): state `unattached` (then `attaching…`), no figures, counted in no
total, not even the title's.

With `--host`, a host column says which machine each process runs on, and the title how many
of the hosts are connected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.keyed_table import Column, KeyedTable
from dspy_top.viewer.hosts_report import LOCAL, host_of, host_width
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.model import Snapshot
    from dspy_top.viewer.attach_offers import Offer

FIXED = (
    Column("pid", "PID", 7),
    Column("state", "STATE", 10, right=False),
    Column("uptime", "UP", 8),
    Column("calls", "CALLS", 7),
    Column("cost", "COST", fmt.COST_WIDTH),
)
STATE_STYLE = {
    "running": "green",
    "connecting": "cyan",
    "ended": "dim",
    "lost": "bold red",
    "failed": "bold red",
    "unattached": "dim",
    "attaching…": "cyan",
    "attached": "cyan",
}


class ProcessTable(KeyedTable):
    """Every known process; ended ones stay (dimmed) until dismissed; then the offered ones (`A` attaches)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.set_title("Processes")
        self.focus_key: str | None = None
        self._width = 80
        self._host_width = 0  # no host column until a snapshot has hosts (`--host`)

    def layout_for(self, width: int) -> None:
        self._width = width
        command = Column("command", "COMMAND / STATUS", 12, right=False)
        mark = Column("mark", " ", 1, right=False)
        hosts = (Column("host", "HOST", self._host_width, right=False),) if self._host_width else ()
        room = self.first_width(width, (*hosts, *FIXED, command)) - mark.width
        self.set_columns(
            (mark, *hosts, *FIXED, Column("command", command.label, max(12, command.width + room), right=False))
        )

    def show(self, snapshot: Snapshot, offers: tuple[Offer, ...] = ()) -> None:
        if host_width(snapshot) != self._host_width:
            self._host_width = host_width(snapshot)
            self.layout_for(self._width)
        rows = []
        room = self.table_columns[-1].width if self.table_columns else 0
        for p in snapshot.processes:
            host = [Text(fmt.middle(inert(host_of(p)), self._host_width))] if self._host_width else []
            style = STATE_STYLE.get(p.state, "")
            script = inert(fmt.command(p.argv) if p.argv else p.command)
            # What is said of the process stays whole (`ended (exit 0)`); the command line gives way,
            # cut in the middle (its script first, its last arguments last).
            said = [inert(p.before_attach.short())] if p.before_attach is not None else []
            if p.state != "running" or not script:
                said.append(inert(p.status))
            if script:
                rest = sum(len(part) + 3 for part in said)
                script = fmt.middle_command(script, max(room - rest, min(len(script), 12)))
                said.insert(len(said) - (p.state != "running"), script)
            note = " · ".join(said)
            started = p.started_at is not None
            rows.append(
                (
                    p.key,
                    [
                        Text("▶" if p.key == snapshot.focus else " ", style="bold"),
                        *host,
                        str(p.pid or "?"),
                        Text(p.state, style=style),
                        fmt.short_uptime(p.uptime) if started else "-",
                        fmt.count(p.totals.calls) if started else "-",
                        fmt.cost(p.totals) if started else "-",
                        Text(
                            note,
                            style="dim" if p.state == "ended" else ("red" if p.state in ("lost", "failed") else ""),
                        ),
                    ],
                )
            )
        for offer in offers:
            host = [Text(fmt.middle(LOCAL, self._host_width))] if self._host_width else []
            said = inert(offer.note)
            script = inert(offer.script)
            if script:
                script = fmt.middle_command(script, max(room - len(said) - 3, min(len(script), 12)))
                said = f"{script} · {said}"
            rows.append(
                (
                    offer.key,
                    [
                        Text(" "),
                        *host,
                        Text(str(offer.pid), style="dim"),
                        Text(offer.state, style=STATE_STYLE[offer.state]),
                        "-",
                        "-",
                        "-",
                        Text(said, style="dim"),
                    ],
                )
            )
        self.sync(rows)
        live = snapshot.live
        scope = (
            "all"
            if snapshot.focus is None
            else f"pid {next((p.pid for p in snapshot.processes if p.key == snapshot.focus), '?')}"
        )
        connected = ""
        if snapshot.hosts:
            up = sum(1 for h in snapshot.hosts if h.state == "connected")
            connected = f" · {up} of {len(snapshot.hosts)} host{'s' if len(snapshot.hosts) != 1 else ''} connected"
        offered = f" · {len(offers)} to attach (A)" if offers else ""
        self.set_title(
            f"Processes ({live} live of {len(snapshot.processes)}{offered} · showing {scope}{connected} · "
            "enter focuses one, x dismisses)"
        )
