"""`dspy-top replay`: the viewer, and batch mode, over recordings (the source is sources/replay.py).

    command.py   the `dspy-top replay` command: which recordings, then the viewer or batch mode
    app.py       `ReplayApp`: the live viewer's app with the replay's keys and bar
    screens.py   the replay's screens: the live ones with the bar and the go-to input
    bar.py       `ReplayBar`: where in the recording the screen is, how fast it moves, of what
    goto.py      `GotoBar`: the input `g` opens (a time, +30s, 40%, trial 7, end)
    help.py      the key reference with the replay's keys
    batch.py     `dspy-top replay -b`: the snapshots live batch mode would have printed
    replay.tcss  the styles of the bar and the go-to input

Importing this package loads nothing: batch mode never imports Textual.
"""
