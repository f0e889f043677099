"""The attributes a targeting condition sees: one documented namespace built
from the profile, the visit's context and the clock (docs/configuration.md
lists every attribute with its type and an example).

``KNOWN`` is the catalogue used at load time: a condition that names an
attribute outside it is a configuration error with a suggestion, because a
typo (``session.pageview``) would otherwise be a campaign that silently never
shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from edge.core.automation import abandoned
from edge.core.context import VisitContext
from edge.core.intelligence import BUILDERS as INTELLIGENCE_BUILDERS
from edge.core.intelligence import NAMESPACES as INTELLIGENCE_NAMESPACES
from edge.core.intelligence import attributes as intelligence_attributes
from edge.core.intelligence import days_to_birthday
from edge.core.profile import Profile, Touch
from edge.core.source import url_path
from edge.widgets.text import language

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from edge.core.automation import Automation
    from edge.core.catalog import Catalog
    from edge.core.intelligence import Intelligence


class Site(Protocol):
    """What attributes read of a compiled site (``edge.core.site.Site``). A
    protocol, not that class: the site holds the compiled campaigns, whose
    compiler checks conditions with this module, and an import back would
    close a circle."""

    @property
    def timezone(self) -> ZoneInfo: ...
    @property
    def automation(self) -> Automation: ...
    @property
    def catalog(self) -> Catalog | None: ...
    @property
    def intelligence(self) -> Intelligence: ...


DAY_S = 86400.0
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

TOUCH_FIELDS = frozenset(
    {"source", "medium", "campaign", "search_phrase", "referrer_domain", "landing_page", "days_ago"}
)

# namespace -> its attributes; None marks an open namespace keyed by ids.
KNOWN: dict[str, frozenset[str] | None] = {
    "visitor": frozenset(
        {
            "identified",
            "level",
            "returning",
            "visits",
            "pageviews",
            "consent",
            "marketing_consent",
            "days_since_first_visit",
            "days_since_last_visit",
            "customer_id",
            "first_name",
            "tier",
            "days_to_birthday",
        }
    ),
    "session": frozenset(
        {
            "pageviews",
            "duration_s",
            "source",
            "medium",
            "campaign",
            "referrer_domain",
            "search_phrase",
            "landing_page",
            "landing_url",
            "referrer",
            "pages",
        }
    ),
    "first_touch": TOUCH_FIELDS,
    "last_touch": TOUCH_FIELDS,
    "page": frozenset({"url", "path", "type", "category", "product", "query", "lang"}),
    "device": frozenset({"type", "os", "browser", "bot"}),
    "cart": frozenset(
        {
            "items",
            "lines",
            "value",
            "currency",
            "skus",
            "categories",
            "minutes_since_change",
            "abandoned",
        }
    ),
    "orders": frozenset(
        {"count", "revenue", "average_value", "days_since_last", "skus", "categories", "items"}
    ),
    "viewed": frozenset({"skus", "categories", "products"}),
    "segments": frozenset(),  # a list, used as a whole
    "campaigns": None,  # campaigns.<id>.impressions / clicks / closes / conversions / step
    "events": None,  # events.<custom event name>: how many times it happened
    "time": frozenset({"hour", "minute", "weekday", "date", "month", "day"}),
    "geo": frozenset({"country", "region"}),  # edge.tracker.geo; null when unknown
    "rfm": frozenset({"r", "f", "m", "segment"}),
    "score": frozenset({"value", "hot"}),
    "interests": frozenset({"top", "scores"}),  # interests.scores.<category> too
    "lifecycle": frozenset({"stage", "churn_risk", "winback"}),
    "props": None,  # props.<declared property> (edge.core.properties), checked by the compiler
    "event": None,  # event.<prop> of the custom event a decision is for, likewise
}
# What one page view brings rather than the profile: a segment kept on the
# profile (``membership: true``, edge.core.segments) may not name these.
PER_PAGE = frozenset({"page", "device", "time", "geo"})
_INTELLIGENCE = INTELLIGENCE_NAMESPACES
CAMPAIGN_FIELDS = frozenset({"impressions", "clicks", "closes", "conversions", "step"})


class Later(Mapping[str, Any]):
    """A namespace built when a condition first reads it.

    The ``rfm``, ``score``, ``interests`` and ``lifecycle`` namespaces are
    scored over the whole profile (decayed interests, quantiles), and a site's
    conditions name them but seldom reach them on a given event: the audience
    entries before them fail first. Built for every decision and every kept
    segments' check, they were 2.4% of an event's instructions (``python -m
    benchmarks instructions``: 1,249,199 -> 1,219,038), nearly always for
    nothing. The answer is the same either way: a condition that reads this
    gets what ``make`` builds, once (the conditions' fast paths take only a
    ``dict``; their general path reads any ``Mapping``)."""

    __slots__ = ("_cfg", "_data", "_make", "_now", "_profile")

    def __init__(
        self,
        make: Callable[[Profile, Intelligence, float], dict[str, Any]],
        profile: Profile,
        cfg: Intelligence,
        now: float,
    ) -> None:
        self._make = make
        self._profile = profile
        self._cfg = cfg
        self._now = now
        self._data: dict[str, Any] | None = None

    @property
    def built(self) -> bool:
        """Whether a read built it already."""
        return self._data is not None

    def _built(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._make(self._profile, self._cfg, self._now)
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._built().get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __repr__(self) -> str:
        return f"Later({self._built()!r})"


@dataclass(frozen=True, slots=True)
class Page:
    """The page a decision is made for, from the events that asked for it."""

    url: str | None = None
    type: str | None = None
    category: str | None = None
    product: str | None = None


def unknown_attribute(path: str) -> str | None:
    """A message when ``path`` names no attribute, else None."""
    root, _, rest = path.partition(".")
    if root not in KNOWN:
        return f"unknown attribute {path!r}: namespaces are {', '.join(KNOWN)}"
    leaves = KNOWN[root]
    if leaves is None:
        if root == "campaigns" and rest.count(".") == 1:
            field = rest.split(".")[1]
            if field not in CAMPAIGN_FIELDS:
                fields = ", ".join(sorted(CAMPAIGN_FIELDS))
                return f"unknown attribute {path!r}: campaigns.<id>.{{{fields}}}"
        return None
    if not leaves:
        return None if not rest else f"unknown attribute {path!r}: {root} is a list"
    leaf = rest.split(".")[0]
    if leaf not in leaves:
        import difflib

        close = difflib.get_close_matches(leaf, sorted(leaves), n=1)
        hint = f" (did you mean {root}.{close[0]}?)" if close else ""
        return f"unknown attribute {path!r}{hint}"
    return None


def condition_paths(condition: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every attribute path a condition names, with where it stands in it."""
    if not isinstance(condition, Mapping):
        return
    for key, value in condition.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            for index, item in enumerate(value):
                for sub, path in condition_paths(item):
                    yield (key, index, *sub), path
        elif key == "$not":
            for sub, path in condition_paths(value):
                yield (key, *sub), path
        elif isinstance(key, str) and not key.startswith("$"):
            yield (key,), key


ALL = frozenset(KNOWN)


def build(
    profile: Profile | None,
    ctx: VisitContext,
    site: Site,
    now: float,
    page: Page,
    device: Mapping[str, Any],
    roots: frozenset[str] = ALL,
    *,
    later: bool = False,
) -> dict[str, Any]:
    """The attributes for one decision (``segments`` is filled in by the engine).

    Only the namespaces in ``roots`` are sure to be there (``ALL``: every
    one, for explaining): a decision passes the namespaces its site's
    conditions name (``Decisioning.roots``), since building the profile's
    namespaces is most of the cost of a decision and most sites name few.
    ``later``: the scored namespaces come as ``Later``, built if read (for
    conditions; an explanation shows them built)."""
    attrs: dict[str, Any] = {"segments": []}
    if "time" in roots:
        local = datetime.fromtimestamp(now, site.timezone)
        attrs["time"] = {
            "hour": local.hour,
            "minute": local.minute,
            "weekday": WEEKDAY_NAMES[local.weekday()],
            "date": local.date().isoformat(),
            "month": local.month,
            "day": local.day,
        }
    if "page" in roots:
        lang = language(ctx.page_lang) or None
        attrs["page"] = {**_page(page.url or ctx.url, page), "lang": lang}
    if "device" in roots:
        attrs["device"] = device
    if "geo" in roots:
        attrs["geo"] = {"country": ctx.country, "region": ctx.region}
    if not roots.isdisjoint(_OF_PROFILE):
        if profile is None:
            profile = Profile(visitor=ctx.visitor, created_at=now, first_seen=now, last_seen=now)
        attrs.update(of_profile(profile, site, now, roots, later=later))
    return attrs


def of_profile(
    profile: Profile, site: Site, now: float, roots: frozenset[str], *, later: bool = False
) -> dict[str, Any]:
    """The attributes of the profile alone (no page, device, time or geo): the
    profile's part of ``build``, and the attributes of segments kept on the
    profile (edge.core.segments).
    Only the namespaces in ``roots`` are sure to be there: this runs on every
    applied event, so the others are not built. ``later``: as for ``build``."""
    attrs: dict[str, Any] = {
        name: make(profile, now) for name, make in _BUILDERS.items() if name in roots
    }
    if attrs:
        if "visitor" in roots:
            visitor = attrs["visitor"]
            visitor["first_name"] = profile.first_name
            visitor["tier"] = profile.tier
            today = datetime.fromtimestamp(now, site.timezone).date()
            visitor["days_to_birthday"] = days_to_birthday(profile.birthday, today)
        if "cart" in roots:
            attrs["cart"]["abandoned"] = abandoned(profile, site.automation, now)
        if "orders" in roots:
            attrs["orders"].update(_bought(profile, site.catalog, now))
    wanted = roots & _INTELLIGENCE
    if wanted and later:
        cfg = site.intelligence
        for name in wanted:
            attrs[name] = Later(INTELLIGENCE_BUILDERS[name], profile, cfg, now)
    elif wanted:
        attrs.update(intelligence_attributes(profile, site.intelligence, now, wanted))
    return attrs


def _bought(profile: Profile, catalog: Catalog | None, now: float) -> dict[str, Any]:
    """Purchase history (``profile.purchased``, newest first): ``skus``,
    ``categories`` (from the catalog, as it is now) and ``items``, one record
    per product with ``sku``, ``category``, ``qty`` and ``days_ago`` (since it
    was last bought), for ``$elemMatch``: "bought a toy for 6-year-olds 330 to
    400 days ago"."""
    if not profile.purchased:
        return {"skus": [], "categories": [], "items": []}
    items = []
    for bought in profile.purchased:
        product = catalog.by_id(bought.sku) if catalog is not None else None
        category = product.category if product is not None else None
        days = round((now - bought.at) / DAY_S, 3)
        items.append({"sku": bought.sku, "category": category, "qty": bought.qty, "days_ago": days})
    categories = list(dict.fromkeys(i["category"] for i in items if i["category"]))
    return {"skus": [i["sku"] for i in items], "categories": categories, "items": items}


def _page(url: str | None, page: Page) -> dict[str, Any]:
    path = query = None
    if url:
        try:
            parts = urlsplit(url)
            path, query = parts.path or "/", parts.query
        except ValueError:
            pass
    return {
        "url": url,
        "path": path,
        "query": query,
        "type": page.type,
        "category": page.category,
        "product": page.product,
    }


def _days(since: float | None, now: float) -> float | None:
    return None if since is None else round((now - since) / DAY_S, 3)


def _visitor(profile: Profile, now: float) -> dict[str, Any]:
    return {
        "identified": profile.level != "anonymous",
        "level": profile.level,
        "returning": profile.visits > 1,
        "visits": profile.visits,
        "pageviews": profile.pageviews,
        "consent": profile.consent,
        "marketing_consent": profile.marketing_consent,
        "customer_id": profile.customer_id,
        "days_since_first_visit": _days(profile.first_seen, now),
        "days_since_last_visit": _days(profile.previous_visit_at, now),
    }


def _session(profile: Profile, now: float) -> dict[str, Any]:
    session = profile.session
    return {
        "pageviews": session.pageviews if session else 0,
        "duration_s": round(now - session.started_at, 1) if session else 0.0,
        "source": session.source if session else "direct",
        "medium": session.medium if session else "none",
        "campaign": session.campaign if session else None,
        "referrer_domain": session.referrer_domain if session else None,
        "search_phrase": session.term if session else None,
        "landing_page": url_path(session.landing) if session else None,
        "landing_url": session.landing if session else None,
        "referrer": session.referrer if session else None,
        "pages": list(session.pages) if session else [],
    }


def _cart(profile: Profile, now: float) -> dict[str, Any]:
    cart = profile.cart
    return {
        "items": sum(line.qty for line in cart.lines),
        "lines": len(cart.lines),
        "value": cart.value,
        "currency": cart.currency,
        "skus": [line.sku for line in cart.lines],
        "categories": sorted({line.category for line in cart.lines if line.category}),
        "minutes_since_change": round((now - cart.updated_at) / 60, 1) if cart.lines else None,
    }


def _orders(profile: Profile, now: float) -> dict[str, Any]:
    return {
        "count": profile.orders,
        "revenue": profile.revenue,
        "average_value": round(profile.revenue / profile.orders, 2) if profile.orders else 0.0,
        "days_since_last": _days(profile.last_order_at, now),
    }


def _viewed(profile: Profile, now: float) -> dict[str, Any]:
    return {
        "skus": [v.sku for v in profile.products],
        "categories": [c.name for c in profile.categories],
        "products": len(profile.products),
    }


def _campaigns(profile: Profile, now: float) -> dict[str, Any]:
    return {
        c.id: {
            "impressions": c.impressions,
            "clicks": c.clicks,
            "closes": c.closes,
            "conversions": c.conversions,
            "step": c.step,
        }
        for c in profile.campaigns
    }


def _events(profile: Profile, now: float) -> dict[str, Any]:
    return {c.name: c.total for c in profile.custom}


def _props(profile: Profile, now: float) -> dict[str, Any]:
    return dict(profile.props)


def _first_touch(profile: Profile, now: float) -> dict[str, Any]:
    return _touch(profile.first_touch, now)


def _last_touch(profile: Profile, now: float) -> dict[str, Any]:
    return _touch(profile.last_touch, now)


# The namespaces read from the profile alone, and how each is built.
_BUILDERS: dict[str, Callable[[Profile, float], dict[str, Any]]] = {
    "visitor": _visitor,
    "session": _session,
    "first_touch": _first_touch,
    "last_touch": _last_touch,
    "cart": _cart,
    "orders": _orders,
    "viewed": _viewed,
    "campaigns": _campaigns,
    "events": _events,
    "props": _props,
}
_OF_PROFILE = frozenset(_BUILDERS) | _INTELLIGENCE


def _touch(touch: Touch | None, now: float) -> dict[str, Any]:
    if touch is None:
        touch = Touch()
    return {
        "source": touch.source,
        "medium": touch.medium,
        "campaign": touch.campaign,
        "search_phrase": touch.term,
        "referrer_domain": touch.referrer_domain,
        "landing_page": url_path(touch.landing),
        "days_ago": _days(touch.at, now) if touch.at else None,
    }
