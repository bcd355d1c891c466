"""What redaction costs per log record and per error message, before and after issue 12.

The contenders run in subprocesses, alternated round by round in one run: ``base`` is the
starting commit's ``RedactSecrets`` (string arguments only, secret shapes and ``token=`` only;
``--baseline-src``, default /work/base), ``new`` this tree's (every argument type, configured
API keys in every encoding, credential parameters), with two API keys configured, and ``none``
no filter at all (the cost of making the record, to subtract). Each case times a fresh record
through the filter: an access line with nothing to hide (every admitted request's), an access
line with a secret in its query, and a trace line with an ASGI scope. ``error message`` times
the redaction of a 404's text (error answers only; an admitted answer is never scanned).

Run: ``.venv/bin/python benchmarks/redaction_bench.py`` (about 30 s); prints a table of
medians (ns per record) with the spread over rounds (min-max).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_CASES = ("access, clean", "access, secret", "trace scope", "error message")

_WORKER = r"""
import json, logging, sys, time
contender = sys.argv[1]
number = int(sys.argv[2])
import ratekeeper.server._logs
from ratekeeper.server._logs import RedactSecrets
assert ratekeeper.server._logs.__file__.startswith(sys.argv[3]), ratekeeper.server._logs.__file__
if contender == "new":
    from ratekeeper._redact import Redactor
else:
    Redactor = None
keys = ("rk-bench-key-0123456789abcdefghijklmnopqrstuvwxyz012", "Odd/Key+eq=amp&q%~0123456789")
if contender == "none":
    filter_ = lambda record: True
elif Redactor is not None:
    filter_ = RedactSecrets(Redactor(keys)).filter
else:
    filter_ = RedactSecrets().filter
secret = "ek_" + "A" * 43
access = ('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:50112", "POST",
          "/v1/chatkit/sessions/cksess_0123456789abcdef0123456789abcdef/cancel", "1.1", 200))
leaky = ('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:50112", "GET",
         "/ratekeeper/admit?client_secret=" + secret, "1.1", 401))
scope = {"type": "http", "http_version": "1.1", "server": ("127.0.0.1", 8000),
         "client": ("127.0.0.1", 50112), "scheme": "http", "method": "GET", "root_path": "",
         "path": "/v1/chatkit/threads/cthr_0123", "raw_path": b"/v1/chatkit/threads/cthr_0123",
         "query_string": b"limit=20&order=desc", "headers": "<...>", "state": {}}
trace = ("%s [%d] Started scope=%s", ("127.0.0.1:50112 - ASGI", 7, scope))
def record(msg, args):
    return logging.LogRecord("uvicorn.access", 20, "x.py", 1, msg, args, None)
results = {}
for name, (msg, args) in (("access, clean", access), ("access, secret", leaky),
                          ("trace scope", trace)):
    started = time.perf_counter_ns()
    for _ in range(number):
        filter_(record(msg, args))
    results[name] = (time.perf_counter_ns() - started) / number
text = "Chatkit Thread with id 'cthr_0123456789abcdef' not found."
if contender == "none":
    hide = lambda text: text
elif Redactor is not None:
    hide = Redactor(keys).echo
else:
    from ratekeeper.server._responses import redact as hide
started = time.perf_counter_ns()
for _ in range(number):
    hide(text)
results["error message"] = (time.perf_counter_ns() - started) / number
print(json.dumps(results))
"""


def _run(src: Path, contender: str, number: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, contender, str(number), str(src)],
        env=env,
        cwd=src,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{contender} ({src}) failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    """Alternate the contenders; print medians and spreads."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, default=Path("/work/base"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    sources = {"none": _ROOT, "base": args.baseline_src, "new": _ROOT}
    samples: dict[str, dict[str, list[float]]] = {c: {k: [] for k in _CASES} for c in sources}
    for _ in range(args.rounds):
        for contender, src in sources.items():
            for case, value in _run(src, contender, args.number).items():
                samples[contender][case].append(value)
    print(f"ns per call, median (min-max) over {args.rounds} rounds of {args.number}")
    print(f"{'case':<16}" + "".join(f"{c:>24}" for c in sources) + f"{'new - base':>12}")
    for case in _CASES:
        row = f"{case:<16}"
        for contender in sources:
            values = samples[contender][case]
            row += f"{statistics.median(values):>10.0f} ({min(values):.0f}-{max(values):.0f})"
            row = row.ljust(16 + 24 * (list(sources).index(contender) + 1))
        new = statistics.median(samples["new"][case])
        base = statistics.median(samples["base"][case])
        print(row + f"{new - base:>+12.0f}")


if __name__ == "__main__":
    main()
