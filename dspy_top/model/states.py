"""A watched process's states and the words its row says while attaching: a leaf module, so the viewer's first
frame, the client and the relay can name them without loading the model."""

CONNECTING = "connecting"
RUNNING = "running"
ENDED = "ended"  # sent `exit`: final numbers
LOST = "lost"  # the connection broke without an `exit`
FAILED = "failed"  # never attached (bad socket, wrong version, permission)
NOT_FINAL = "final numbers not received"  # said of a lost process: its last numbers are not its final ones
CONNECTING_STATUS = "connecting…"  # said of a process being attached to, until it says hello
