"""Where the processes dspy-top shows come from, and the one thread that folds them into a `Fleet`.

    base.py       the `Source` a new kind of source implements, the `Sink` it reports to
    collector.py  the `Collector`: runs every source in one thread, folds, routes requests
    local.py      `LocalSockets`: this machine's instrumented processes, on their sockets
    targets.py    which local sockets: discovered, or named with -p/--socket
    family.py     which local sockets for `dspy-top run`: the job and its descendants
    replay.py     `RecordingSource`: recordings replayed (`dspy-top replay`), on the clock of
    replay_clock.py   ... where the replay is and how fast it moves, and
    replay_timeline.py  ... where a seek asks to go (a time, a share, a trial);
    replay_track.py     ... one recording replayed as its process,
    replay_items.py     ... its messages, each at the moment it happened,
    replay_telling.py   ... telling them up to a moment, from a checkpoint when far,
    replay_controls.py  ... and the controls a front end moves it with

Used by the viewer, batch mode and `dspy-top run` alike; none of it imports Textual, dspy or
litellm. docs/sources.md tells how to write a new source. Import from the modules: this
package's own import stays empty, so `dspy-top run` starts without the collector.
"""
