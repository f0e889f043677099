"""The ``edge`` command (also ``python -m edge``).

edge serve     run the server (embedded store unless --redis is given)
edge check     validate site configuration; non-zero exit with every problem
edge explain   what a visitor would see on a page, and why
edge privacy   erase or export one visitor's data (docs/operations.md)
edge events    print a site's automation event stream (edge events tail)
edge rfm       propose RFM cut-offs from the stored profiles (edge rfm propose)
edge preview   print a preview link of a campaign (a draft too), for one's own browser
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge import __version__
from edge.config.settings import Settings
from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.config.registry import SiteRegistry
    from edge.core.rfm import Proposal
    from edge.core.site import Site


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    handler = {
        "serve": serve,
        "check": check,
        "explain": explain,
        "schema": schema,
        "privacy": privacy,
        "events": events,
        "rfm": rfm,
        "preview": preview,
        "segments": segments,
    }[args.command]
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
        help="Redis URL (EDGE_REDIS_URL): redis://host:6379/0, "
        "redis+cluster://host:7000,host:7001, redis+sentinel://host:26379/service[/db] "
        "(rediss... for TLS); default: the embedded in-process store",
    )
    run.add_argument(
        "--workers", type=int, help="worker processes (EDGE_WORKERS); >1 needs --redis"
    )
    run.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    run.add_argument(
        "--log-json",
        dest="log_json",
        action="store_true",
        default=None,
        help="one JSON object per log line (EDGE_LOG_JSON=1)",
    )
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

    priv = commands.add_parser(
        "privacy",
        help="erase or export one visitor's data",
        description="Erase or export everything stored about one visitor. Works on a Redis "
        "store directly (--redis or EDGE_REDIS_URL), or through a running server's admin API "
        "(--server, with EDGE_ADMIN_TOKEN): the embedded store lives inside the server "
        "process, so only its admin API can reach it.",
    )
    actions = priv.add_subparsers(dest="action", required=True)
    for action, text in (("erase", "erase the visitor"), ("export", "print their data as JSON")):
        act = actions.add_parser(action, help=text)
        act.add_argument("--site", required=True)
        act.add_argument("--visitor", required=True, metavar="ID")
        act.add_argument("--redis", dest="redis_url", metavar="URL", help="the Redis store")
        act.add_argument(
            "--server",
            metavar="URL",
            help="a running server's base URL, e.g. http://127.0.0.1:8000 (uses its admin API)",
        )
        act.add_argument(
            "--profiles",
            type=Path,
            default=Path("profiles"),
            help="site configuration folder (finds the coupon pool campaigns)",
        )

    evs = commands.add_parser("events", help="automation events (docs/operations.md)")
    ev_actions = evs.add_subparsers(dest="action", required=True)
    tail = ev_actions.add_parser("tail", help="print a site's automation event stream")
    tail.add_argument("--site", required=True)
    tail.add_argument("--redis", dest="redis_url", metavar="URL", help="the Redis store")
    tail.add_argument("--count", type=int, default=20, help="recent events to print first")
    tail.add_argument("--follow", action="store_true", help="then wait for new events")

    _rfm_parser(commands)
    _preview_parser(commands)
    _segments_parser(commands)

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
            log_json=args.log_json,
        )
    except ValueError as exc:
        print(f"edge serve: {exc}", file=sys.stderr)
        return 2
    from edge.stores.connect import parse_redis_url, redact
    from edge.tracker.geo import open_geo

    try:  # a bad URL or GeoIP file fails here, not in every worker's start-up
        if settings.redis_url:
            parse_redis_url(settings.redis_url)
        open_geo(settings).close()
    except ValueError as exc:
        print(f"edge serve: {exc}", file=sys.stderr)
        return 2
    from edge.runtime.logs import install, log_config

    install(settings.log_level, json_lines=settings.log_json)
    if not settings.profiles.is_dir():
        print(f"edge serve: profiles folder {settings.profiles} not found", file=sys.stderr)
        return 2
    import uvicorn

    from edge.tracker import transport
    from edge.tracker.openfiles import Budget, set_open_files_limit

    try:  # raised here, before uvicorn starts: worker processes inherit it
        budget = Budget.of(set_open_files_limit(settings.max_open_files), settings)
    except ValueError as exc:
        print(f"edge serve: {exc}", file=sys.stderr)
        return 2
    os.environ.update(settings.to_env())  # worker processes rebuild settings from these
    store = f"Redis at {redact(settings.redis_url)}" if settings.redis_url else "the embedded store"
    print(
        f"edge {__version__}: http://{settings.host}:{settings.port}/demo on {store}; "
        f"{budget.describe()}",
        file=sys.stderr,
    )
    uvicorn.run(
        "edge.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, json_lines=settings.log_json),
        # uvicorn's httptools and websockets-sansio protocols with edge's
        # deadlines, size and rate limits and open-files budget (import paths,
        # so that worker processes import them too).
        http=transport.HTTP_PROTOCOL,
        ws=transport.WS_PROTOCOL,
        loop=transport.EVENT_LOOP,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        ws_per_message_deflate=settings.ws_deflate,
        # The client address is edge's to find (EDGE_TRUSTED_PROXIES,
        # edge.tracker.limits): uvicorn must not rewrite it from X-Forwarded-For.
        proxy_headers=False,
        lifespan="on",
    )
    return 0


def check(args: argparse.Namespace) -> int:
    """Load every site as the server would (bounded, in a thread, within
    EDGE_RELOAD_TIMEOUT_S): every problem as ``error file:line: key: message``,
    exit 1 if there is any. A file can only make it report problems."""
    import logging

    registry = _registry_to_check(args.profiles)
    quiet = logging.getLogger("edge.config.registry")  # its log lines would repeat ours
    quiet.disabled, was = True, quiet.disabled
    try:
        finished = registry.reload_within(Settings.from_env().reload_timeout_s)
    except (ConfigError, ValueError) as exc:  # no such folder; a bad EDGE_ variable
        print(f"error {exc}", file=sys.stderr)
        return 1
    finally:
        quiet.disabled = was
    late = None if finished else registry.overdue()  # None: it finished meanwhile
    problems, _ = registry.report()
    for name, site in sorted(registry.sites.items()):
        print(f"ok    {name} (configuration {site.version})")
    for _, lines in sorted(problems.items()):
        for line in lines:
            print(f"error {line}", file=sys.stderr)
    if late is not None and late[0] is None:  # stuck outside any one site
        print(f"error {late[1]}", file=sys.stderr)
    return 1 if problems or late is not None else 0


def _registry_to_check(folder: Path) -> SiteRegistry:
    """The profiles folder's sites, or one site's alone when ``folder`` is a
    site folder (it has YAML files of its own: ``edge check profiles/demo``)."""
    from edge.config.registry import SiteRegistry

    if folder.is_dir() and any(folder.glob("*.yaml")):
        if folder.name in ("", ".", ".."):
            folder = folder.resolve()
        return SiteRegistry(folder.parent, only=folder.name)
    return SiteRegistry(folder)


def explain(args: argparse.Namespace) -> int:
    from edge.admin.explain import ExplainRequest, run_explain

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


def privacy(args: argparse.Namespace) -> int:
    from edge.errors import BadVisitorId
    from edge.ids import check_visitor_id

    try:
        check_visitor_id(args.visitor)
    except BadVisitorId as exc:
        print(f"edge privacy: {exc}", file=sys.stderr)
        return 2
    if args.server:
        return _privacy_via_server(args)
    url = args.redis_url or os.environ.get("EDGE_REDIS_URL")
    if not url:
        print(
            "edge privacy: no Redis store given (--redis URL). The embedded store lives "
            "inside the running server process; erase or export through its admin API: "
            "--server http://127.0.0.1:8000 with EDGE_ADMIN_TOKEN set (docs/operations.md).",
            file=sys.stderr,
        )
        return 2
    import asyncio

    from edge.errors import StoreError

    try:
        report = asyncio.run(_privacy_on_redis(args, url))
    except (StoreError, ValueError, ConfigError) as exc:
        print(f"edge privacy: {exc}", file=sys.stderr)
        return 1
    if report is None:
        print("edge privacy: nothing stored about this visitor", file=sys.stderr)
        return 1
    from edge.admin.privacy import dumps

    print(dumps(report))
    return 0


async def _privacy_on_redis(args: argparse.Namespace, url: str) -> dict[str, object] | None:
    from edge.admin import privacy as p
    from edge.config.sites import load_site
    from edge.stores.coupons import RedisPools
    from edge.stores.redis import RedisStore

    folder = args.profiles / args.site
    configured = (
        p.configured_pools(load_site(folder).decisioning.by_id.values())
        if folder.is_dir()
        else []  # the pools still in Redis are found by a scan all the same
    )
    store = RedisStore.from_url(url)
    try:
        pools = RedisPools(store.client)
        if args.action == "export":
            return await p.export_visitor(store, pools, args.site, args.visitor, configured)
        days = Settings.from_env().erasure_tombstone_days
        return await p.erase_visitor(
            store, pools, args.site, args.visitor, configured, tombstone_s=days * 86400
        )
    finally:
        await store.close()


def _privacy_via_server(args: argparse.Namespace) -> int:
    import urllib.parse

    site = urllib.parse.quote(args.site, safe="")
    method = "DELETE" if args.action == "erase" else "GET"
    path = f"/admin/sites/{site}/visitors/{args.visitor}"
    return _admin_call("edge privacy", args.server, path, method=method, timeout_s=30)


def events(args: argparse.Namespace) -> int:
    url = args.redis_url or os.environ.get("EDGE_REDIS_URL")
    if not url:
        print(
            "edge events: no Redis store given (--redis URL or EDGE_REDIS_URL). The embedded "
            "store keeps its events in the server process only.",
            file=sys.stderr,
        )
        return 2
    import asyncio

    from edge.automation.tail import tail
    from edge.errors import StoreError
    from edge.stores.connect import REDIS_ERRORS

    try:
        asyncio.run(tail(url, args.site, max(0, args.count), args.follow))
    except KeyboardInterrupt:
        return 0
    except (*REDIS_ERRORS, StoreError, OSError, ValueError) as exc:
        print(f"edge events: {exc}", file=sys.stderr)
        return 1
    return 0


def _rfm_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("rfm", help="RFM cut-offs (docs/configuration.md, intelligence)")
    actions = cmd.add_subparsers(dest="action", required=True)
    prop = actions.add_parser(
        "propose",
        help="print quintile cut-offs of a site's customers, as YAML to paste",
        description="Read every stored profile of the site from Redis and print recency, "
        "frequency and monetary cut-offs at the quintiles of its customers (profiles with "
        "orders), in the shape of the site configuration's intelligence.rfm section. Needs "
        "the Redis store (--redis or EDGE_REDIS_URL): the embedded store lives inside the "
        "server process and cannot be read from another one.",
    )
    prop.add_argument("--site", required=True)
    prop.add_argument("--redis", dest="redis_url", metavar="URL", help="the Redis store")
    prop.add_argument("--now", help="ISO date-time recency is measured at (default: now)")
    prop.add_argument(
        "--min-customers",
        type=int,
        default=100,  # edge.core.rfm.MIN_CUSTOMERS
        help="warn when fewer profiles have orders (default 100)",
    )


def rfm(args: argparse.Namespace) -> int:
    """``edge rfm propose``: YAML on standard output, warnings on standard error."""
    url = args.redis_url or os.environ.get("EDGE_REDIS_URL")
    if not url:
        print(
            "edge rfm propose: no Redis store given (--redis URL or EDGE_REDIS_URL). The "
            "embedded store lives inside the running server process and cannot be read from "
            "another process: proposals need the shared Redis store.",
            file=sys.stderr,
        )
        return 2
    import asyncio
    import re
    import time
    from datetime import UTC, datetime

    from edge.config.sites import SITE_ID
    from edge.core.rfm import render_yaml
    from edge.errors import StoreError

    if re.fullmatch(SITE_ID, args.site) is None:
        print(f"edge rfm propose: {args.site!r} is not a site id", file=sys.stderr)
        return 2
    try:
        now = datetime.fromisoformat(args.now).timestamp() if args.now else time.time()
    except ValueError as exc:
        print(f"edge rfm propose: --now: {exc}", file=sys.stderr)
        return 2
    try:
        proposal, scanned = asyncio.run(_rfm_proposal(url, args.site, now))
    except (StoreError, ValueError) as exc:
        print(f"edge rfm propose: {exc}", file=sys.stderr)
        return 1
    if proposal is None:
        print(
            f"edge rfm propose: no profile of site {args.site} has orders ({scanned} profiles "
            "read): nothing to propose, keep the configured cut-offs",
            file=sys.stderr,
        )
        return 1
    for warning in proposal.warnings(args.min_customers):
        print(f"edge rfm propose: warning: {warning}", file=sys.stderr)
    when = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    sys.stdout.write(render_yaml(proposal, args.site, when))
    return 0


async def _rfm_proposal(url: str, site: str, now: float) -> tuple[Proposal | None, int]:
    """Every profile of ``site`` read once; only the customers' three numbers kept."""
    from edge.core.rfm import customer_of, propose
    from edge.stores.redis import RedisStore

    store = RedisStore.from_url(url)
    scanned = 0
    customers = []
    try:
        async for profile in store.iter_profiles(site):
            scanned += 1
            customer = customer_of(profile, now)
            if customer is not None:
                customers.append(customer)
    finally:
        await store.close()
    return propose(customers, scanned), scanned


def _segments_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "segments",
        help="kept segments (docs/operations.md, Segment members)",
        description="Recompute every profile's kept segments (membership: true) now: a "
        "backfill after a segment became kept. Through a running server's admin API "
        "(--server, with EDGE_ADMIN_TOKEN; any store, events to the stream and webhooks) "
        "or on a Redis store directly (--redis; events to the stream only).",
    )
    actions = cmd.add_subparsers(dest="action", required=True)
    ref = actions.add_parser("refresh", help="recompute membership of every profile")
    ref.add_argument("--site", required=True)
    ref.add_argument("--redis", dest="redis_url", metavar="URL", help="the Redis store")
    ref.add_argument("--server", metavar="URL", help="a running server's base URL")
    ref.add_argument("--profiles", type=Path, default=Path("profiles"))


def segments(args: argparse.Namespace) -> int:
    """``edge segments refresh``: the JSON report on standard output."""
    if args.server:
        return _admin_call(
            "edge segments refresh", args.server, f"/admin/sites/{args.site}/segments/refresh"
        )
    url = args.redis_url or os.environ.get("EDGE_REDIS_URL")
    if not url:
        print(
            "edge segments refresh: no store given. The embedded store lives inside the "
            "running server process: use --server http://127.0.0.1:8000 (with "
            "EDGE_ADMIN_TOKEN), or --redis URL for a Redis store.",
            file=sys.stderr,
        )
        return 2
    import asyncio

    from edge.config.sites import load_site
    from edge.errors import StoreError

    try:
        site = load_site(args.profiles / args.site)
        if site.id != args.site:
            raise ConfigError([f"{args.profiles / args.site}: site id is {site.id!r}"])
        report = asyncio.run(_refresh_on_redis(url, site))
    except (StoreError, ValueError, ConfigError, TimeoutError) as exc:
        print(f"edge segments refresh: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


async def _refresh_on_redis(url: str, site: Site) -> dict[str, object]:
    import time

    from edge.admin.segments import refresh
    from edge.automation.store import RedisAutomation
    from edge.core.automation import AutomationEvent, segment_events
    from edge.core.profile import Profile
    from edge.stores.ledger import Ledger
    from edge.stores.redis import RedisStore

    store = RedisStore.from_url(url)
    ledger = Ledger(store)
    ledger.start()
    kept = {s.id for s in site.decisioning.kept}
    events: list[AutomationEvent] = []

    def changed(site: Site, before: Profile | None, after: Profile | None, now: float) -> None:
        if after is not None:
            events.extend(segment_events(site.id, before, after, now, kept))

    try:
        done = await refresh(ledger, site, time.time(), 30.0, changed)
        await ledger.stop()
        if events:
            maxlen = Settings.from_env().automation_stream_maxlen
            await RedisAutomation(store.client, maxlen=maxlen).publish(site.id, events)
    finally:
        await store.close()
    return {"site": site.id, "profiles_read": done.profiles_read, "changed": done.changed}


def _admin_call(
    command: str, server: str, path: str, *, method: str = "POST", timeout_s: float = 600
) -> int:
    """One admin API call on a running server with ``EDGE_ADMIN_TOKEN``: its
    answer to stdout; exit 2 without the token, 1 when the call failed."""
    import urllib.error
    import urllib.request

    token = os.environ.get("EDGE_ADMIN_TOKEN")
    if not token:
        print(f"{command}: --server needs EDGE_ADMIN_TOKEN", file=sys.stderr)
        return 2
    request = urllib.request.Request(
        server.rstrip("/") + path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            sys.stdout.write(answer.read().decode() + "\n")
    except urllib.error.HTTPError as exc:
        print(f"{command}: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _preview_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "preview",
        help="print a preview link of a campaign (docs/configuration.md, Previews)",
        description="Print a link that shows one campaign (a draft or paused one too) in the "
        "browser tab that opens it, whatever its audience, trigger, schedule and caps, with an "
        "overlay saying what was decided and why; nothing that tab does is stored or counted. "
        "Signed with EDGE_ADMIN_TOKEN: the servers that will check it must have the same one.",
    )
    cmd.add_argument("--site", required=True)
    cmd.add_argument("--campaign", required=True, metavar="ID")
    cmd.add_argument("--variant", metavar="ID", help="the arm to show (default: the first)")
    cmd.add_argument(
        "--step", type=int, metavar="N", help="the step to show, from 1 (default: the first)"
    )
    cmd.add_argument(
        "--ttl-min",
        type=float,
        default=30.0,  # edge.core.preview.DEFAULT_TTL_MIN
        help="minutes the link works (default 30, at most 240)",
    )
    cmd.add_argument(
        "--page",
        metavar="URL",
        help="the page to open: a URL, or a path on the site's first allowed origin "
        "(default: the campaign's preview_page, else /)",
    )
    cmd.add_argument("--profiles", type=Path, default=Path("profiles"))
    cmd.add_argument("--json", action="store_true", help="the link, token and grant as JSON")


def preview(args: argparse.Namespace) -> int:
    """``edge preview``: the link on standard output, what it grants on standard error."""
    import time
    from datetime import datetime

    from edge.config.sites import load_site
    from edge.core import preview as previews

    try:
        secret = Settings.from_env().admin_token
    except ValueError as exc:
        print(f"edge preview: {exc}", file=sys.stderr)
        return 2
    if not secret:
        print(
            "edge preview: EDGE_ADMIN_TOKEN is not set: links are signed with the admin token "
            "of the servers that will check them",
            file=sys.stderr,
        )
        return 2
    if args.step is not None and args.step < 1:
        print("edge preview: --step counts from 1 (the first step)", file=sys.stderr)
        return 2
    folder = args.profiles / args.site
    try:
        if not folder.is_dir():
            raise ConfigError([f"{folder}: no such site folder"])
        site = load_site(folder)
        grant, token = previews.mint(
            secret.encode(),
            site,
            args.campaign,
            now=time.time(),
            variant=args.variant,
            step=None if args.step is None else args.step - 1,
            ttl_min=args.ttl_min,
        )
        page = previews.page_for(site.decisioning.by_id[grant.campaign], site, args.page)
    except (ConfigError, ValueError) as exc:
        print(f"edge preview: {exc}", file=sys.stderr)
        return 1
    url = previews.link(page, token)
    if args.json:
        print(json.dumps({"url": url, "token": token, **grant.to_wire()}))
        return 0
    print(url)
    campaign = site.decisioning.by_id[grant.campaign]
    until = datetime.fromtimestamp(grant.expires).astimezone().isoformat(timespec="minutes")
    print(
        f"edge preview: campaign {campaign.id} ({campaign.status}), variant "
        f"{grant.variant or campaign.variants[0].id}, step {(grant.step or 0) + 1} of "
        f"{len(campaign.steps)}, in the tab that opens the link, until {until}",
        file=sys.stderr,
    )
    return 0


def schema(args: argparse.Namespace) -> int:
    from edge.config.sites import site_config_schema

    text = json.dumps(site_config_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
