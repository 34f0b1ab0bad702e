"""Command line: run a simulated LM until killed, printing its base URL on the first line."""

import argparse
import signal
import sys
import threading

from dspy_top.simlm.server import SimLM


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dspy_top.simlm", description="Simulated OpenAI-compatible LM.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-scale", type=float, default=1.0, help="0 answers instantly")
    parser.add_argument("--error-every", type=int, default=None, help="fail every Nth completion request")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fail attempts with this probability")
    parser.add_argument("--error-seed", type=int, default=0)
    parser.add_argument("--error-status", type=int, default=503, help="429, 500, 502, 503 or 504")
    parser.add_argument("--cached-fraction", type=float, default=0.0, help="share of prompt tokens reported cached")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        sim = SimLM(
            args.host,
            args.port,
            latency_scale=args.latency_scale,
            error_every=args.error_every,
            error_rate=args.error_rate,
            error_seed=args.error_seed,
            error_status=args.error_status,
            cached_fraction=args.cached_fraction,
        )
    except ValueError as exc:
        print(f"simlm: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    # SIGTERM from a test harness ends the server as cleanly as Ctrl-C does.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim.start()
    print(sim.base_url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
