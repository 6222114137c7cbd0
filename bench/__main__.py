"""``python -m bench [NAME ...] [--quick] [--results DIR]``; no NAME runs every benchmark."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import profile
from bench.common import RESULTS_DIR, BenchError, print_table, write_report

BENCHMARKS = {
    "apply_throughput": "publish → worker → sandbox against a plain requests loop",
    "bulk_publish": "publish_many / custsync publish against pipelined LPUSH",
    "dlq": "DLQ list/stats latency at scale; replay --all against pipelined LPUSH",
    "dlq_pages": "DLQ cursor pages (deep, filtered) and failure groups at 100k, against 200 ms",
    "backlog_memory": "worker RSS while the retry set fills, then the drain rate",
    "round_trips": "Redis round trips per applied event: broker and custsync state",
    "ingest": "custsync serve against a bare gunicorn+Flask 202; batches against publish_many",
    "replay_job": "a background replay job against custsync dlq replay --all",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CI smoke run")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where JSON goes")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy the measured processes into DIR"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, what in BENCHMARKS.items():
            print(f"{name:<18}{what}")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; --list shows them")
    failed = 0
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(f"bench.{name}")
        profile.PROFILE_DIR = args.profile / name if args.profile else None
        started, load = time.time(), os.getloadavg()
        try:
            with tempfile.TemporaryDirectory(prefix=f"custsync-bench-{name}-") as tmp:
                report, redis_version = module.run(Path(tmp), quick=args.quick)
        except (BenchError, Exception) as exc:
            failed += 1
            print(f"\n{name}: FAILED: {exc}", file=sys.stderr)
            if not isinstance(exc, BenchError):
                traceback.print_exc()
            continue
        print_table(report)
        path = write_report(report, args.results, started, redis_version, load)
        print(f"  -> {path} ({time.time() - started:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
