"""`dspy-top runs` on a terminal: the recorded runs as a list, newest first; enter picks one to replay.

The same columns as the printed table (recording/command.py's `table_row`). `choose_run`
returns the run picked, or None when the user quits; the caller replays it in this process.
Imports Textual and the recordings' summaries only: never dspy or litellm.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from dspy_top.recording.command import RIGHT_ALIGNED, TABLE_HEADER, table_row
from dspy_top.recording.summary import RunSummary
from dspy_top.viewer.terminal import inert


class RunsApp(App[RunSummary | None]):
    """The runs, newest first; enter returns the one under the cursor, q returns None."""

    TITLE = "dspy-top runs"
    CSS = """
    #runs-title { height: 1; padding: 0 1; background: $primary-background; }
    #runs { height: 1fr; }
    #runs-picked { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("enter", "replay", "replay it", priority=True),
        Binding("q", "quit_list", "quit"),
        Binding("escape", "quit_list", "quit", show=False),
    ]

    def __init__(self, found: list[RunSummary], directory: Path) -> None:
        super().__init__()
        self.found = list(found)
        self.directory = directory

    def compose(self) -> ComposeResult:
        yield Static(
            inert(f"recordings in {self.directory}, newest first · enter replays the run · q quits"),
            id="runs-title",
            markup=False,
        )
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-picked", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in TABLE_HEADER:
            table.add_column(name, key=name)
        for index, run in enumerate(self.found):
            table.add_row(
                *[
                    Text(cell, justify="right") if i in RIGHT_ALIGNED else Text(cell)
                    for i, cell in enumerate(table_row(run))
                ],
                key=str(index),
            )
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Say which run enter would replay (the cursor's row)."""
        row = event.cursor_row
        if 0 <= row < len(self.found):
            run = self.found[row]
            cells = table_row(run)
            self.query_one("#runs-picked", Static).update(
                f"enter replays {cells[-1]} (started {cells[0]}, {cells[3]} calls, {run.processes} process"
                f"{'es' if run.processes != 1 else ''})"
            )

    def action_replay(self) -> None:
        table = self.query_one(DataTable)
        if self.found and 0 <= table.cursor_row < len(self.found):
            self.exit(self.found[table.cursor_row])

    def action_quit_list(self) -> None:
        self.exit(None)


def choose_run(found: list[RunSummary], directory: Path) -> RunSummary | None:
    """Show the runs; the one picked with enter, or None (quit)."""
    return RunsApp(found, directory).run()
