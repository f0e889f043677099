"""The ``edge`` command (also ``python -m edge``).

edge serve   run the server (embedded store unless --redis is given)
edge check   validate site configuration; non-zero exit with every problem
"""

from __future__ import annotations

import argparse
import json
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
    handler = {"serve": serve, "check": check, "explain": explain, "schema": schema}[args.command]
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

    exp = commands.add_parser("explain", help="what a visitor would see on a page, and why")
    exp.add_argument("--site", required=True)
    exp.add_argument("--profiles", type=Path, default=Path("profiles"))
    exp.add_argument(
        "--profile",
        type=Path,
        metavar="JSON",
        help="the visitor's profile as JSON (the stored layout; missing keys "
        "take their defaults); default: a first-time anonymous visitor",
    )
    exp.add_argument("--page", required=True, metavar="URL")
    exp.add_argument(
        "--trigger",
        default="page_view",
        help="page_view (default), exit_intent, delay_s, scroll_pct, inactivity_s, or event:<name>",
    )
    exp.add_argument("--user-agent", default="")
    exp.add_argument("--now", help="ISO date-time to decide at (default: now)")
    exp.add_argument("--json", action="store_true", help="machine-readable output")

    sch = commands.add_parser("schema", help="write the JSON Schema of site files")
    sch.add_argument("--output", type=Path, help="file to write (default: standard output)")
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


def explain(args: argparse.Namespace) -> int:
    from edge.explain import ExplainRequest, run_explain

    try:
        report = run_explain(
            ExplainRequest(
                profiles=args.profiles,
                site=args.site,
                profile=args.profile,
                page=args.page,
                trigger=args.trigger,
                user_agent=args.user_agent,
                now=args.now,
            )
        )
    except (ConfigError, ValueError, OSError) as exc:
        print(f"edge explain: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_explain(report))
    return 0


def render_explain(report: dict[str, object]) -> str:
    lines = [
        f"site {report['site']} (configuration {report['config']}), page {report['page']}, "
        f"trigger {report['trigger']}",
        "",
    ]
    lines += [f"  {line}" for line in report["trace"]]  # type: ignore[attr-defined]
    lines.append("")
    shown = report["decisions"]
    if not shown:
        lines.append("nothing to show")
    for item in shown:  # type: ignore[attr-defined]
        what = "holdout: would have seen" if item.get("holdout") else "shows"
        lines.append(
            f"{what} {item['campaign']} in {item['placement']} "
            f"(variant {item['variant']}, on {item['trigger']['type']})"
        )
    return "\n".join(lines)


def schema(args: argparse.Namespace) -> int:
    from edge.sites import site_config_schema

    text = json.dumps(site_config_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
