"""`dspy-top relay`: this machine's instrumented processes, streamed over stdio to a viewer elsewhere.

    command.py  the `dspy-top relay` command: checks, the local sources, the loop
    loop.py     the relay's loop: its sources' `Sink` calls out as frames, requests in

A viewer runs it as `ssh HOST dspy-top relay` (`dspy-top --host HOST`, sources/ssh.py); the
frames are in sources/relay_wire.py and docs/protocol.md ("The relay"). Never imports
Textual, dspy or litellm: it runs on machines that only run jobs.
"""
