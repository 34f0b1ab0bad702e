"""The header: the fleet's totals on top (money, rate, busy-ness), sparklines and optimizer progress below."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from dspy_top.budget_levels import WARN_AT
from dspy_top.model.before_attach import combined
from dspy_top.viewer import format as fmt
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.model import Snapshot

# Before the first snapshot (the first frame comes before any collection).
STARTING = Text.assemble((" dspy-top ", "bold reverse"), ("  starting…", "dim"))


class Header(Static):
    """Re-rendered from each snapshot; wraps whole segments to the width it has."""

    def __init__(self, **kwargs) -> None:
        super().__init__(STARTING, **kwargs)
        self.paused = False
        self._snapshot: Snapshot | None = None
        self._drawn = ""

    def show(self, snapshot: Snapshot, paused: bool = False) -> None:
        self._snapshot = snapshot
        self.paused = paused
        level = snapshot.budget.level if snapshot.budget is not None else 0
        self.set_class(level == 80, "-budget-warn")
        self.set_class(level >= 100, "-budget-over")
        self._draw()

    def on_resize(self) -> None:
        if self._snapshot is not None:
            self._draw()

    def _draw(self) -> None:
        text = self.render_text(self._snapshot, max(40, self.size.width or 80), self.paused)
        lines = text.plain.count("\n") + 1
        if text.plain == self._drawn and lines == self.size.height:
            return
        # Same height: repaint only this widget, not the whole screen's layout (idle CPU). Compared
        # with the height it has, not the last text's: a relayout asked for while the screen was
        # being resized can be lost, and the header would keep a blank row.
        self.update(text, layout=lines != self.size.height)
        self._drawn = text.plain

    @staticmethod
    def segments(snapshot: Snapshot, wide: bool = True) -> list[Text]:
        t = snapshot.totals
        out: list[Text] = []
        if snapshot.focus is None:
            live, total = snapshot.live, len(snapshot.processes)
            jobs = f"{total} process{'es' if total != 1 else ''}"
            if live != total:
                jobs += f" ({live} live)"
        else:
            row = next((p for p in snapshot.processes if p.key == snapshot.focus), None)
            jobs = f"pid {row.pid if row else '?'} ({row.state if row else '?'})"
        out.append(Text(jobs))
        out.append(Text(f"up {fmt.uptime(snapshot.uptime)}"))
        calls = Text(f"{t.calls:,} calls")
        calls.append(f" ({t.in_flight} in flight)", style="bold yellow" if t.in_flight else "")
        out.append(calls)
        rate = Text(f"{fmt.rate(snapshot.tokens_per_sec)} tok/s", style="bold")
        rate.append(f" ({fmt.rate(snapshot.output_tokens_per_sec)} out/s", style="dim")
        rate.append(f", avg {fmt.rate(snapshot.tokens_per_sec_avg)})" if wide else ")", style="dim")
        out.append(rate)
        budget = snapshot.budget
        level = budget.level if budget is not None else 0
        style = "bold red" if level >= 100 else "bold yellow" if level or t.unpriced_calls else "bold green"
        money = Text(fmt.cost(t), style=style)
        if budget is not None:
            money.append(f" of {fmt.dollars(budget.usd)} ({100 * budget.fraction:.0f}%)", style=style)
        if t.unpriced_calls:
            money.append(f" ({t.unpriced_calls:,} unpriced)", style="yellow")
        burn = snapshot.burn
        if burn is not None:
            money.append(f" {fmt.dollars(burn.cost_per_min)}/min", style="dim")
            if wide:
                money.append(
                    f" (avg {fmt.dollars(burn.cost_per_min_avg)}) ~{fmt.dollars(burn.cost_per_hour)}/h", style="dim"
                )
        else:
            money.append(f" {fmt.dollars(snapshot.cost_per_min)}/min", style="dim")
        out.append(money)
        job = max(
            (j for j in snapshot.job_budgets if j.worst is not None), key=lambda j: j.worst.fraction, default=None
        )
        if job is not None:
            worst = job.worst
            text = (
                f"job budget {inert(worst.label) if worst.scope != 'total' else fmt.dollars(worst.usd)} "
                f"{100 * worst.fraction:.0f}% ({job.on_exceed})"
            )
            out.append(
                Text(text, style="bold red" if worst.fraction >= 1 else "yellow" if worst.fraction >= WARN_AT else "")
            )
        before = combined(p.before_attach for p in snapshot.in_view)
        if before is not None:
            out.append(Text(before, style="dim"))
        out.append(Text(f"cache {fmt.percent(t.cache_hit_rate)} (saved {fmt.dollars(t.cost_saved_usd)})"))
        out.append(Text(f"{t.errors:,} err", style="bold red" if t.errors else ""))
        # Under 100 columns a zero count of retries or drops gives its room to the panes (a header line
        # at 80x24); errors always show.
        if t.retries or wide:
            out.append(Text(f"{t.retries:,} retries", style="yellow" if t.retries else ""))
        if snapshot.dropped or wide:
            out.append(Text(f"{snapshot.dropped:,} dropped", style="yellow" if snapshot.dropped else "dim"))
        lost = snapshot.not_final
        if lost:
            who = f"pid {lost[0].pid}" if len(lost) == 1 else f"{len(lost)} processes"
            out.append(Text(f"final numbers not received from {who}", style="bold red"))
        return out

    def render_text(self, snapshot: Snapshot, width: int, paused: bool) -> Text:
        first = Text()
        first.append(" dspy-top ", style="bold reverse")
        if paused:
            first.append(" PAUSED ", style="bold reverse yellow")
        lines = [first]
        separator = " "
        for segment in self.segments(snapshot, wide=width >= 100):
            line = lines[-1]
            if line.cell_len + len(separator) + segment.cell_len > width:
                line = Text(" ")
                lines.append(line)
                separator = ""
            line.append(separator, style="dim")
            line.append_text(segment)
            separator = " · "
        spark = self._sparklines(snapshot, width)
        lines.append(spark)
        return Text("\n").join(lines)

    @staticmethod
    def _sparklines(snapshot: Snapshot, width: int) -> Text:
        """The charts with their legend (unit, peak, span) and, when it fits, the optimizer's progress
        on the same line; otherwise the progress gets a line of its own."""
        from dspy_top.viewer.optimizer_report import optimizer_line  # the model's optimizers: after the first frame

        progress = optimizer_line(snapshot.optimizers, snapshot.at)
        progress = inert(progress) if progress else None
        projection = snapshot.burn.evaluation if snapshot.burn is not None else None
        if progress and projection is not None and projection.projected_usd is not None:
            lower = "" if projection.cost_known else "+?"
            progress += f" · eval ends ~{fmt.dollars(projection.projected_usd)}{lower}"
        bucket = snapshot.series_bucket
        dollars_per_min = [value * 60.0 / bucket for value in snapshot.cost_series]

        def legend(span: int) -> tuple[str, str, str]:
            tokens, dollars = snapshot.token_series[-span:], dollars_per_min[-span:]
            return (
                fmt.rate(max(tokens, default=0.0)),
                fmt.dollars(max(dollars, default=0.0)),
                fmt.short_span(span * bucket),
            )

        def fixed(parts: tuple[str, str, str]) -> int:  # " tok/s " … " peak X" "  $/min " … " peak Y" "  last Z"
            return 7 + 6 + len(parts[0]) + 8 + 6 + len(parts[1]) + 7 + len(parts[2])

        room = width - fixed(legend(40)) - 1
        alone = not progress or room - len(progress) - 2 < 16
        span = max(4, min(40, (room if alone else room - len(progress) - 2) // 2))
        peak_tokens, peak_dollars, last = legend(span)
        tokens = snapshot.token_series[-span:]
        dollars_per_min = dollars_per_min[-span:]
        line = Text(" tok/s ", style="dim")
        line.append(fmt.sparkline(tokens, span), style="cyan")
        line.append(f" peak {peak_tokens}", style="dim")
        line.append("  $/min ", style="dim")
        line.append(fmt.sparkline(dollars_per_min, span), style="green")
        line.append(f" peak {peak_dollars}", style="dim")
        line.append(f"  last {last}", style="dim")
        if progress and not alone:
            line.append("  ")
            line.append(progress, style="bold magenta")
        line.truncate(width)
        if progress and alone:
            second = Text(" ")
            second.append(fmt.whole_parts(progress, width - 1), style="bold magenta")
            return Text("\n").join([line, second])
        return line
