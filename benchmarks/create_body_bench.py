"""Parsing and validating a create-session body: this checkout against a baseline, one process.

Times ``ratekeeper.server._models.parse_create_session`` (pydantic-core's JSON parser and the
strict pydantic models) on a minimal and a full ``CreateChatSessionBody``; with
``--baseline-src PATH``, also the baseline's ``parse_json`` + ``parse_create_session`` (the
hand-written checks, loaded from ``PATH/ratekeeper/server/validation.py``), the two
alternating round by round. CPU time per call (``time.thread_time``), median and range.

Run: ``.venv/bin/python benchmarks/create_body_bench.py --baseline-src /work/base``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from _baseline import load_baseline_module

from ratekeeper.server._models import parse_create_session

MINIMAL = b'{"user": "bench", "workflow": {"id": "wf_bench"}}'
FULL = json.dumps(
    {
        "user": "bench",
        "workflow": {
            "id": "wf_bench",
            "version": "3",
            "state_variables": {"plan": "pro", "seats": 5, "trial": False, "score": 0.5},
            "tracing": {"enabled": False},
        },
        "expires_after": {"anchor": "created_at", "seconds": 300},
        "rate_limits": {"max_requests_per_1_minute": 30},
        "chatkit_configuration": {
            "automatic_thread_titling": {"enabled": False},
            "file_upload": {"enabled": True, "max_file_size": 64, "max_files": 5},
            "history": {"enabled": True, "recent_threads": 20},
        },
    }
).encode()


def baseline_parser(src: str) -> Callable[[bytes], Any]:
    """The baseline's body parsing: its ``parse_json`` then its ``parse_create_session``."""
    module = load_baseline_module(src, "ratekeeper/server/validation.py")
    parse_json = module.parse_json
    parse = module.parse_create_session
    return lambda raw: parse(parse_json(raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", metavar="PATH", help="a checkout of older code")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    contenders: dict[str, Callable[[bytes], Any]] = {}
    if args.baseline_src:
        contenders["baseline (hand-written)"] = baseline_parser(args.baseline_src)
    contenders["this checkout"] = parse_create_session
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for body_name, body in (("minimal", MINIMAL), ("full", FULL)):
            for name, parse in contenders.items():
                started = time.thread_time()
                for _ in range(args.calls):
                    parse(body)
                elapsed = (time.thread_time() - started) / args.calls * 1e6
                samples.setdefault((body_name, name), []).append(elapsed)
    print(f"CPU µs per body, median (min-max) of {args.rounds} rounds of {args.calls} calls\n")
    print(f"| body | {' | '.join(contenders)} |")
    print(f"|---|{'---:|' * len(contenders)}")
    for body_name in ("minimal", "full"):
        cells = []
        for name in contenders:
            values = samples[(body_name, name)]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        print(
            f"| {body_name} ({len(MINIMAL if body_name == 'minimal' else FULL)} B) | "
            f"{' | '.join(cells)} |"
        )


if __name__ == "__main__":
    main()
