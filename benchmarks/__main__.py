"""``python -m benchmarks micro`` runs the in-process micro benchmarks."""

from __future__ import annotations

import argparse
import sys

from benchmarks import decisions, micro


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("micro", help="in-process: parse + apply + encode per event")
    m.add_argument("--events", type=int, default=20_000)
    m.add_argument("--repeat", type=int, default=3)
    d = commands.add_parser("decide", help="in-process: a decision over 100 campaigns")
    d.add_argument("--campaigns", type=int, default=100)
    d.add_argument("--calls", type=int, default=20_000)
    d.add_argument("--repeat", type=int, default=3)
    c = commands.add_parser("conditions", help="compiled conditions vs GrowthBook's SDK")
    c.add_argument("--calls", type=int, default=50_000)
    c.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "micro":
        micro.run(events=args.events, repeat=args.repeat)
    elif args.command == "decide":
        decisions.run_decide(campaigns_count=args.campaigns, calls=args.calls, repeat=args.repeat)
    elif args.command == "conditions":
        decisions.run_conditions(calls=args.calls, repeat=args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
