"""The in-process half of dspy-top: the only package that imports dspy."""
