"""dspy-top's version, in a leaf module: the job side reads it without importing the package's `__init__`."""

__version__ = "0.1.0"
