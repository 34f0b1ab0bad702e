"""The `dspy-top` viewer: a Textual app (`app.py`) and batch mode (`batch.py`) over one collector.

Importing this package imports neither Textual nor dspy: batch mode never needs Textual.
"""
