"""Demo DSPy programs: plain scripts, runnable as `dspy-top run -- python demos/NAME.py`.

They run on the built-in simulated LM (no key, no network) unless given `--model`.
`demos/` at the repository root is a link to this directory; they live inside the
package so that `dspy-top demo` works from an installed wheel.
"""
