"""`dspy-top attach PID`: instrument a running DSPy job that was started without dspy-top.

The viewer's side: /proc checks (target.py), the code put into the job (bootstrap.py), the two
ways to queue it there (gdb.py with gdb_script.py for Python 3.11-3.13, remote_exec.py for
3.14+), the attach and detach steps (session.py), the subcommands (command.py) and the list of
attachable processes for the viewer (discover.py). The job's side is
`dspy_top.instrumentation.attached`. Nothing here imports dspy, litellm or Textual.
"""
