"""Copied by `dspy-top run` into the job's work directory as `sitecustomize.py` (never imported from here).

Loads dspy-top's instrumentation (DSPY_TOP=1) in interpreters where its .pth file is not
installed, after running the sitecustomize this one shadows. Standard library only.
"""


def _dspy_top_shim():
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(exc).__name__}: {exc}\n")
    try:
        import dspy_top.autoload  # noqa: F401
    except ImportError:
        # Not installed in this interpreter: borrow dspy-top's own copy, behind the job's packages.
        sys.path.append(os.path.join(os.path.dirname(here), "fallback"))
        try:
            import dspy_top.autoload  # noqa: F401
        except Exception as exc:
            sys.stderr.write(f"dspy-top: cannot instrument this interpreter: {type(exc).__name__}: {exc}\n")
    except Exception as exc:
        sys.stderr.write(f"dspy-top: cannot instrument this interpreter: {type(exc).__name__}: {exc}\n")


_dspy_top_shim()
