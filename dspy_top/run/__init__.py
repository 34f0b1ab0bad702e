"""`dspy-top run`: start a command instrumented (no code change) and watch it live in this terminal.

The job runs in its own process group with `DSPY_TOP=1`, its stdout and stderr in a private
log file that the viewer tails into a pane. The viewer attaches to the job and to any
descendant that serves dspy-top (a shell wrapper's python, multiprocessing workers): which
processes are the job's is `dspy_top.sources.JobFamily`.

    job.py      the job's process: exit status, signals, its output cleaned for the log pane
    start.py    its work directory (the sitecustomize shim in site/), environment and start
    watch.py    the live view, or batch mode's snapshots
    command.py  the options (shared with `dspy-top demo`) and main

Nothing here imports dspy or litellm, and batch mode does not import Textual.
"""

from dspy_top.run.command import add_job_options, build_parser, main, money_environment, run_command, split_command
from dspy_top.run.job import READ_CHUNK, RunningJob, clean_output, exit_status
from dspy_top.run.start import StartError, prepare_work_dir, start_job
from dspy_top.run.watch import job_collector, watch_batch, watch_interactive
from dspy_top.sources.family import JobFamily, descends_from, parent_pid

__all__ = [
    "READ_CHUNK",
    "JobFamily",
    "RunningJob",
    "StartError",
    "add_job_options",
    "build_parser",
    "clean_output",
    "descends_from",
    "exit_status",
    "job_collector",
    "main",
    "money_environment",
    "parent_pid",
    "prepare_work_dir",
    "run_command",
    "split_command",
    "start_job",
    "watch_batch",
    "watch_interactive",
]
