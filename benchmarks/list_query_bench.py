"""Validating a list endpoint's query string: this checkout against a baseline, one process.

Times ``ratekeeper.server._queries.parse_list_query`` / ``parse_thread_list_query`` (strict
pydantic models) on three query strings as Starlette hands them over; with
``--baseline-src PATH``, also the baseline's hand-written ``parse_list_query`` (loaded from
``PATH/ratekeeper/server/validation.py``), the two alternating round by round. CPU time per
call (``time.thread_time``), median and range.

Run: ``.venv/bin/python benchmarks/list_query_bench.py --baseline-src /tmp/base``, with
``git archive <rev> ratekeeper | tar -x -C /tmp/base`` for the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from _baseline import load_baseline_module
from starlette.datastructures import QueryParams

from ratekeeper.server._queries import parse_list_query, parse_thread_list_query

QUERIES = {
    "none": (QueryParams(""), False),
    "items page": (QueryParams("limit=20&order=asc&after=cthr_abc"), False),
    "threads of a user": (QueryParams("limit=50&user=user_123"), True),
}
Parser = Callable[[Mapping[str, str], bool], Any]


def baseline_parser(src: str) -> Parser:
    """The baseline's hand-written ``parse_list_query``."""
    module = load_baseline_module(src, "ratekeeper/server/validation.py")
    parse = module.parse_list_query
    return lambda params, with_user: parse(params, with_user=with_user)


def current(params: Mapping[str, str], with_user: bool) -> Any:
    """This checkout's validation of the same query."""
    return parse_thread_list_query(params) if with_user else parse_list_query(params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", metavar="PATH", help="a checkout of older code")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    contenders: dict[str, Parser] = {}
    if args.baseline_src:
        contenders["baseline (hand-written)"] = baseline_parser(args.baseline_src)
    contenders["this checkout"] = current
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for query_name, (params, with_user) in QUERIES.items():
            for name, parse in contenders.items():
                started = time.thread_time()
                for _ in range(args.calls):
                    parse(params, with_user)
                elapsed = (time.thread_time() - started) / args.calls * 1e6
                samples.setdefault((query_name, name), []).append(elapsed)
    print(f"CPU µs per query, median (min-max) of {args.rounds} rounds of {args.calls} calls\n")
    for (query_name, name), values in samples.items():
        print(
            f"{query_name:18} {name:24} {statistics.median(values):6.2f} "
            f"({min(values):.2f}-{max(values):.2f})"
        )


if __name__ == "__main__":
    main()
