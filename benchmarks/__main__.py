"""``python -m benchmarks micro|decide|conditions|store|app`` runs the in-process benchmarks;
``python -m benchmarks run <scenario>`` the load scenarios (see benchmarks/README.md)."""

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
    s = commands.add_parser("store", help="a private Redis: CPU per batch of profile writes")
    s.add_argument("--batches", type=int, default=4_000)
    s.add_argument("--size", type=int, default=1, help="writes per batch")
    s.add_argument("--repeat", type=int, default=3)
    a = commands.add_parser("app", help="in-process: the app's CPU per event, no sockets")
    a.add_argument("--store", choices=["redis", "embedded"], default="redis")
    a.add_argument("--events", type=int, default=10_000)
    a.add_argument("--visitors", type=int, default=300)
    a.add_argument("--in-flight", type=int, default=2, help="messages at a time")
    a.add_argument("--repeat", type=int, default=3)
    a.add_argument(
        "--by-type",
        action="store_true",
        help="also the CPU from each message to its answer, by type (with --in-flight 1)",
    )
    a.add_argument(
        "--under-valgrind",
        action="store_true",
        help="no time budgets (template checks, the answer deadline): 50x slower under valgrind",
    )
    i = commands.add_parser(
        "instructions", help="in-process: the app's instructions per event, under valgrind"
    )
    i.add_argument("--store", choices=["redis", "embedded"], default="embedded")
    i.add_argument("--events", type=int, default=300, help="events of the first run")
    i.add_argument("--more", type=int, default=1000, help="events the second run adds")
    i.add_argument("--visitors", type=int, default=300)
    n = commands.add_parser("network", help="a real browser: time to the first decision per RTT")
    n.add_argument("--rtt-ms", default="40,80,120,200")
    n.add_argument("--loads", type=int, default=10)
    from benchmarks import scenarios  # imports the bench extra (hdrhistogram) only here

    scenarios.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "run":
        scenarios.run(args, list(sys.argv[1:] if argv is None else argv))
        return 0
    if args.command == "micro":
        micro.run(events=args.events, repeat=args.repeat)
    elif args.command == "decide":
        decisions.run_decide(campaigns_count=args.campaigns, calls=args.calls, repeat=args.repeat)
    elif args.command == "conditions":
        decisions.run_conditions(calls=args.calls, repeat=args.repeat)
    elif args.command == "store":
        from benchmarks import store  # a private redis-server, as the scenarios start

        store.run(batches=args.batches, size=args.size, repeat=args.repeat)
    elif args.command == "app":
        from benchmarks import app  # a private redis-server, as the scenarios start

        app.run(
            store=args.store,
            events=args.events,
            visitors=args.visitors,
            in_flight=args.in_flight,
            repeat=args.repeat,
            by_type=args.by_type,
            under_valgrind=args.under_valgrind,
        )
    elif args.command == "instructions":
        from benchmarks import instructions  # runs ``app`` under valgrind

        instructions.run(
            events=args.events, more=args.more, store=args.store, visitors=args.visitors
        )
    elif args.command == "network":
        from benchmarks import network  # playwright, and the tests' proxy and server fixtures

        network.run([int(v) for v in args.rtt_ms.split(",")], args.loads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
