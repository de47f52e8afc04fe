"""`python -m benchmarks [NAME ...] [--quick] [--runs N]`: run the benchmarks (all by default)
and print their tables; each also writes `benchmarks/results/<name>.json` (with `--runs N`,
every number as the median of N runs and its range, and each run kept in it)."""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks.report import Options, stamp
from benchmarks.runs import fold

# Each module exposes `run(options: Options) -> Report` (see benchmarks/report.py).
BENCHMARKS = (
    "intake",
    "burst",
    "consent-burst",
    "latency",
    "neighbour",
    "scale",
    "history",
    "ceiling",
    "app-users",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], metavar="NAME")
    parser.add_argument(
        "--quick", action="store_true", help="small counts, to check the benchmarks still run"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="run each benchmark N times and report every number as median (min-max)",
    )
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL URL for the PostgreSQL runs (default: $CONSENTBRIDGE_TEST_PG_URL)",
    )
    args = parser.parse_args(argv)
    options = Options.from_args(quick=args.quick, pg_url=args.pg_url)
    failed = 0
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name.replace('-', '_')}")
        reports = []
        for _ in range(max(1, args.runs)):
            reports.append(module.run(options))
            reports[-1].origin = stamp()  # each run keeps its own time in a folded report
            reports[-1].save_and_print()
        report = reports[0] if len(reports) == 1 else fold(reports)
        if len(reports) > 1:
            report.save_and_print()  # results/<name>.json: the medians, and every run
        failed += 0 if report.goals_met else 1
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
