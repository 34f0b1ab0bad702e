"""`dspy-top demo`: a real DSPy job on the built-in simulated LM (no key, no network), watched live.

The simulated LM runs in this process (standard library only); the job is
`dspy_top/demos/tour.py` (`demos/tour.py` in the repository), started exactly as
`dspy-top run` starts any job.
"""

from __future__ import annotations

import argparse
import os
import sys

from dspy_top import options
from dspy_top.run.command import add_job_options, refuse_bad_settings, run_command

USAGE = (
    "dspy-top demo [--speed X] [--model MODEL] [-d SECONDS] [-b [-n N] [--json]] [--log FILE]\n"
    "                     [--budget USD [--on-exceed warn|raise|stop]] [--price MODEL=IN/OUT[/CACHED]]\n"
    "                     [--record FILE | --no-record]"
)
DESCRIPTION = """\
Run a demo DSPy job and open the live view on it: a RAG pipeline with a tool-using
ReAct step over a small dataset with dspy.Parallel, then BootstrapFewShot and MIPROv2
(light) with evaluations. By default it talks to a simulated LM built into dspy-top
(no key, no network) whose latency and token counts vary like a real model's, priced
as openai/gpt-4o-mini. It takes about a minute and a half at --speed 1. It is recorded, as
`dspy-top run` records a job: `dspy-top runs` lists it afterwards, `dspy-top export latest`
writes its calls out.
"""
EPILOG = """\
examples:
  dspy-top demo                               # watch it; q quits once it is done
  dspy-top demo --speed 0.2                   # five times faster
  dspy-top demo --model openai/gpt-4o-mini    # a real provider (OPENAI_API_KEY must be set)
  dspy-top demo -b -d 5                       # text snapshots instead of the live view
  dspy-top demo --budget 0.002 --on-exceed stop   # watch a budget end the run

The same programs are plain scripts in demos/: dspy-top run -- python demos/rag_react.py
"""

# Environment variables holding the key of common litellm providers (others are not checked).
PROVIDER_KEYS = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"),
    "cohere": ("COHERE_API_KEY",),
    "xai": ("XAI_API_KEY",),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspy-top demo",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    job = parser.add_argument_group("the demo job")
    job.add_argument(
        "--speed",
        type=options.non_negative_number,
        default=1.0,
        metavar="X",
        help="scale the simulated latency: 1 is like a real model, 0.2 is five times faster, "
        "0 answers at once (default 1)",
    )
    job.add_argument(
        "--model",
        metavar="MODEL",
        help="any litellm model string, e.g. openai/gpt-4o-mini: run against that provider "
        "instead of the simulated LM (its API key must be in the environment; this costs money)",
    )
    job.add_argument("--questions", type=int, default=40, metavar="N", help="questions in the RAG batch (default 40)")
    job.add_argument("--train", type=int, default=24, metavar="N", help="optimizer training questions (default 24)")
    job.add_argument("--dev", type=int, default=20, metavar="N", help="optimizer evaluation questions (default 20)")
    job.add_argument("--threads", type=int, default=4, metavar="N", help="parallel LM calls (default 4)")
    job.add_argument("--no-mipro", action="store_true", help="stop after BootstrapFewShot")
    add_job_options(parser)
    return parser


def missing_key(model: str, env: dict[str, str]) -> str | None:
    """The key variable a known provider needs and the environment lacks, else None."""
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    names = PROVIDER_KEYS.get(provider)
    if names is None or any(env.get(name) for name in names):
        return None
    return names[0]


def job_command(args: argparse.Namespace) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "dspy_top.demos.tour",
        "--questions",
        str(args.questions),
        "--train",
        str(args.train),
        "--dev",
        str(args.dev),
        "--threads",
        str(args.threads),
        "--speed",
        str(args.speed),
    ]
    if args.no_mipro:
        command.append("--no-mipro")
    return command


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options.check_display_options(parser, args)
    for name in ("questions", "train", "dev", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    env = dict(os.environ)
    if refuse_bad_settings("dspy-top demo", args, env):
        return 2
    # The demo never needs the network for prices: litellm's bundled table has the demo's model.
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.pop("DSPY_TOP_DEMO_LM_URL", None)
    sim = None
    if args.model:
        key = missing_key(args.model, env)
        if key is not None:
            print(
                f"dspy-top demo: --model {args.model} needs {key} in the environment "
                "(or leave out --model to use the simulated LM)",
                file=sys.stderr,
            )
            return 2
        env["DSPY_TOP_DEMO_MODEL"] = args.model
    else:
        from dspy_top.simlm import SimLM

        sim = SimLM(latency_scale=args.speed).start()
        env["DSPY_TOP_DEMO_LM_URL"] = sim.base_url
        env.pop("DSPY_TOP_DEMO_MODEL", None)
    try:
        return run_command(job_command(args), args, env=env)
    finally:
        if sim is not None:
            sim.stop()
