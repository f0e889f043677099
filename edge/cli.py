"""The ``edge`` command (also ``python -m edge``).

edge serve   run the server (embedded store unless --redis is given)
edge check   validate site configuration; non-zero exit with every problem
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edge import __version__
from edge.errors import ConfigError
from edge.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    handler = {"serve": serve, "check": check}[args.command]
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="Real-time website personalization.")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("serve", help="run the server")
    run.add_argument("--host", help="address to bind (EDGE_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (EDGE_PORT, default 8000)")
    run.add_argument("--profiles", type=Path, help="site configuration folder (EDGE_PROFILES)")
    run.add_argument(
        "--redis",
        dest="redis_url",
        metavar="URL",
        help="Redis URL, e.g. redis://127.0.0.1:6379/0 (EDGE_REDIS_URL); "
        "default: the embedded in-process store",
    )
    run.add_argument(
        "--workers", type=int, help="worker processes (EDGE_WORKERS); >1 needs --redis"
    )
    run.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    run.add_argument(
        "--no-demo",
        dest="demo",
        action="store_false",
        default=None,
        help="do not serve the demo shop pages",
    )

    chk = commands.add_parser("check", help="validate site configuration")
    chk.add_argument("profiles", nargs="?", type=Path, default=Path("profiles"))
    return parser


def serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            profiles=args.profiles,
            redis_url=args.redis_url,
            workers=args.workers,
            log_level=args.log_level,
            demo=args.demo,
        )
    except ValueError as exc:
        print(f"edge serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not settings.profiles.is_dir():
        print(f"edge serve: profiles folder {settings.profiles} not found", file=sys.stderr)
        return 2
    import uvicorn

    os.environ.update(settings.to_env())  # worker processes rebuild settings from these
    store = f"Redis at {settings.redis_url}" if settings.redis_url else "the embedded store"
    print(
        f"edge {__version__}: http://{settings.host}:{settings.port}/demo on {store}",
        file=sys.stderr,
    )
    uvicorn.run(
        "edge.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        ws_per_message_deflate=settings.ws_deflate,
        lifespan="on",
    )
    return 0


def check(args: argparse.Namespace) -> int:
    from edge.sites import load_sites

    try:
        sites, problems = load_sites(args.profiles)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, site in sites.items():
        print(f"ok    {name} (configuration {site.version})")
    for lines in problems.values():
        for line in lines:
            print(f"error {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
