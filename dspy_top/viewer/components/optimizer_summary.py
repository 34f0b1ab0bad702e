"""Under the optimizer list: the selected run's parameters, spend, projection, progress and score chart."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dspy_top.model import OptimizerRun, Trial
from dspy_top.model.optimizers import EVALUATE, RunGroup
from dspy_top.viewer import format as fmt
from dspy_top.viewer.optimizer_report import joined_note
from dspy_top.viewer.terminal import inert

CHART = "▁▂▃▄▅▆▇█"
NARROW_BELOW = 99  # columns: below this the summary drops the token counts and shortens parameter names
SHORT_NAMES = {
    "num_threads": "threads",
    "max_bootstrapped_demos": "boot",
    "max_labeled_demos": "labeled",
    "num_candidate_programs": "candidates",
    "max_metric_calls": "metric_calls",
    "reflection_minibatch_size": "reflect_mb",
    "minibatch_size": "mb_size",
}


def score_chart(trials: tuple[Trial, ...], width: int) -> Text:
    """One character per trial, oldest first, on a fixed 0-100 scale: the best bold green,
    minibatch scores dim, a failed evaluation `×`, the running one `…`. The newest `width` fit."""
    text = Text(no_wrap=True)
    for trial in trials[-width:] if width > 0 else ():
        if trial.failed:
            text.append("×", style="bold red")
            continue
        score = trial.score
        if score is None:
            text.append("…", style="yellow")
            continue
        level = CHART[min(len(CHART) - 1, max(0, int(score / 100 * (len(CHART) - 1) + 0.5)))]
        style = "bold green" if trial.best else "dim" if trial.full is False else "cyan"
        text.append(level, style=style)
    return text


def progress_bar(done: int, total: int, width: int = 10) -> str:
    filled = round(width * done / total) if total else 0
    return "▓" * filled + "░" * (width - filled)


class OptimizerSummary(Static):
    """Re-rendered from the selected run on each refresh; wraps to the width it has."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._drawn = ""

    @property
    def lines(self) -> int:
        """Lines of the summary on screen (the optimizer screen sizes the panes by them)."""
        return self._drawn.count("\n") + 1

    def show(self, entry: OptimizerRun | RunGroup | None, width: int) -> None:
        text = self.render_text(entry, max(40, width))
        if text.plain != self._drawn:
            self._drawn = text.plain
            self.update(text)

    @staticmethod
    def render_text(entry: OptimizerRun | RunGroup | None, width: int) -> Text:
        if entry is None:
            return Text(
                " No optimizer or evaluation yet. dspy-top shows every optimizer compile() and "
                "dspy.Evaluate run here as it happens.",
                style="dim",
            )
        if isinstance(entry, RunGroup):
            calls = sum(r.usage.calls for r in entry.runs)
            return Text(
                f" {len(entry.runs)} nested {inert(entry.class_name)} compile(s), finished: they bootstrap "
                f"demos and make no evaluations ({calls:,} calls).",
                style="dim",
            )
        run = entry
        narrow = width < NARROW_BELOW
        lines = [
            OptimizerSummary._facts(run, narrow),
            OptimizerSummary._spend(run, narrow),
            OptimizerSummary._scores(run, width, narrow),
        ]
        if run.joined:  # under way at `dspy-top attach`: say what was not seen
            lines.append(Text(f" {joined_note(run)}", style="yellow"))
        return Text("\n").join(line for line in lines if line.plain)

    @staticmethod
    def _facts(run: OptimizerRun, narrow: bool = False) -> Text:
        line = Text(" ")
        line.append(inert(run.label), style="bold")
        if run.params:
            names = SHORT_NAMES if narrow else {}
            line.append(inert("  " + " ".join(f"{names.get(k, k)}={v}" for k, v in run.params)), style="dim")
        line.append(" · ")
        phase_style = {"running": "bold green", "failed": "bold red"}.get(run.state, "")
        phase = run.phase
        if phase.startswith("trial ") and run.current is not None:
            phase = f"trial {run.trial_progress}" + (" (minibatch)" if run.current.full is False else "")
        line.append(inert(phase), style=phase_style)
        if run.error:
            line.append(f" · {inert(run.error)}", style="red")
        return line

    @staticmethod
    def _spend(run: OptimizerRun, narrow: bool = False) -> Text:
        usage = run.usage
        line = Text(" spent ")
        line.append(fmt.cost(usage), style="bold yellow" if usage.unpriced_calls else "bold green")
        line.append(f" in {fmt.short_uptime(run.elapsed)}")
        if narrow:
            line.append(f" ({usage.calls:,} calls)")
        else:
            line.append(
                f" ({usage.calls:,} calls, {fmt.tokens(usage.prompt_tokens)}→{fmt.tokens(usage.completion_tokens)} tok)"
            )
        if run.class_name != EVALUATE and run.trials and not narrow:
            outside = run.spent_before_trials
            line.append(f" · trials {fmt.cost(run.trial_usage)} · outside trials {fmt.cost(outside)}", style="dim")
        if run.metric_budget is not None:
            line.append(f" · metric calls {run.metric_calls or 0:,}/{run.metric_budget:,}")
        if run.state == "running":
            line.append(" · to finish ")
            if run.cost_to_finish is None and run.time_to_finish is None:
                why = "trial count unknown" if run.planned is None and run.metric_budget is None else "no trial yet"
                line.append(f"? ({why})", style="dim")
            else:
                cost = fmt.dollars(run.cost_to_finish) if run.cost_to_finish is not None else "?"
                clock = fmt.short_uptime(run.time_to_finish) if run.time_to_finish is not None else "?"
                line.append(f"~{cost}, ~{clock}", style="bold")
        return line

    @staticmethod
    def _scores(run: OptimizerRun, width: int, narrow: bool = False) -> Text:
        line = Text(" ")
        current = run.current
        if current is not None and not narrow:  # narrow: the running trial's row says it
            scope = current.scope
            line.append(f"eval {scope.done}/{scope.total} " if scope.total else f"eval {scope.done} ")
            line.append(progress_bar(scope.done, scope.total), style="magenta")
            score = current.running_score
            if score is not None:
                line.append(f" {fmt.score(score)}")
            line.append(" · ")
        if run.best is not None:
            line.append("best ")
            line.append(fmt.score(run.best.score), style="bold green")
            if run.class_name != EVALUATE:
                line.append(f" (trial {run.best.number})")
        elif run.trials:
            line.append("best -", style="dim")
        if len(run.trials) > 1:
            line.append(" · scores ")
            line.append_text(score_chart(run.trials, max(8, width - line.cell_len - 2)))
        return line if line.plain.strip() else Text("")
