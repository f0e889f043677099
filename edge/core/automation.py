"""Automation events: what marketing automation acts on, derived purely.

``derive`` turns one applied event (profile before, profile after, event)
into the automation events it implies, and ``deadline`` into what it does to
the visitor's abandoned-cart deadline. Like ``edge.core.signals.signal_updates``
both are pure, so a replayed event (``apply`` returns the same profile
object) implies nothing, and an order reported twice is one ``purchase``.

A typed email leaves edge in one case only, the lead hand-off: the site keeps
emails (``identity.keep_email: true``) and the visitor ticked the form's
marketing consent. Then ``identified`` carries the email, the name typed with
it and the consent record, so a mailing tool can subscribe them, and
``marketing_consent`` reports every later change of that consent (a
withdrawal too, so the tool unsubscribes them; with the email when kept, and
for a verified customer by their customer id). Otherwise a claimed identity
is reported by its level only, and a verified one by the shop's own customer
id. The body's JSON Schema is generated from ``edge.automation.schema``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.core import events as p
from edge.core.intelligence import DAY_S, Intelligence, expected_interval_days, winback
from edge.core.profile import Cart, Membership, Profile
from edge.core.source import url_path
from edge.decisioning.config import AutomationConfig
from edge.decisioning.config import AutomationEvent as EventKind

EventType = EventKind  # one list of event types, in the configuration module
_RANK = {"anonymous": 0, "claimed": 1, "verified": 2}


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    events: frozenset[str]  # empty: every event
    secret_env: str

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


@dataclass(frozen=True, slots=True)
class Automation:
    """A site's compiled ``automation`` section."""

    cart_window_s: float = 30 * 60.0
    watched: tuple[re.Pattern[str], ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    browse_window_s: float | None = 60 * 60.0  # None: no browse_abandoned
    away_s: float | None = 90 * DAY_S  # None: no customer_away
    churn_threshold: float | None = 0.5  # None: no churn_risk


DEFAULT = Automation()


def compile_automation(config: AutomationConfig) -> Automation:
    """The runtime form: regexes compiled once."""
    return Automation(
        cart_window_s=config.cart_abandon_min * 60.0,
        watched=tuple(re.compile(pattern) for pattern in config.watched_pages),
        webhooks=tuple(Webhook(w.url, frozenset(w.events), w.secret_env) for w in config.webhooks),
        browse_window_s=_scaled(config.browse_abandon_min, 60.0),
        away_s=_scaled(config.away_days, DAY_S),
        churn_threshold=config.churn_risk_threshold,
    )


def _scaled(value: float | None, unit_s: float) -> float | None:
    return None if value is None else value * unit_s


@dataclass(frozen=True, slots=True)
class AutomationEvent:
    type: str
    site: str
    visitor: str
    at: float
    customer: str | None = None  # the shop's customer id, verified identities only
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_fields(self) -> dict[str, str]:
        """The stream entry (every value a string; ``customer`` empty when none)."""
        return {
            "type": self.type,
            "site": self.site,
            "visitor": self.visitor,
            "customer": self.customer or "",
            "at": f"{self.at:.3f}",
            "payload": json.dumps(dict(self.payload), separators=(",", ":"), sort_keys=True),
        }

    def to_json(self) -> dict[str, Any]:
        """The webhook body."""
        return {
            "type": self.type,
            "site": self.site,
            "visitor": self.visitor,
            "customer": self.customer,
            "at": self.at,
            "payload": dict(self.payload),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> AutomationEvent:
        f = {_text(k): _text(v) for k, v in fields.items()}
        return cls(
            type=f["type"],
            site=f["site"],
            visitor=f["visitor"],
            at=float(f["at"]),
            customer=f.get("customer") or None,
            payload=json.loads(f.get("payload") or "{}"),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def customer_of(profile: Profile) -> str | None:
    return profile.customer_id if profile.level == "verified" else None


def cart_items(cart: Cart) -> list[dict[str, Any]]:
    return [
        {"sku": line.sku, "qty": line.qty, "price": line.price, "name": line.name}
        for line in cart.lines
    ]


def cart_payload(cart: Cart) -> dict[str, Any]:
    return {
        "items": cart_items(cart),
        "value": cart.value,
        "currency": cart.currency,
        "changed_at": cart.updated_at,
    }


def derive(
    site: str,
    before: Profile | None,
    after: Profile,
    event: p.Event,
    cfg: Automation,
    intelligence: Intelligence,
    now: float,
    kept: Collection[str] | None = None,
) -> list[AutomationEvent]:
    """The automation events of one applied event (``cart_abandoned`` and
    ``coupon_issued`` come from elsewhere: the deadline claimer, the reveal).
    ``kept``: the ids of the segments kept on the profile now; a membership
    dropped because its segment no longer is (removed, or ``membership``
    turned off) is no ``segment_left``. None: every change counts."""
    if after is before:  # a replayed event
        return []
    out: list[AutomationEvent] = []

    def emit(kind: str, **payload: Any) -> None:
        out.append(AutomationEvent(kind, site, after.visitor, now, customer_of(after), payload))

    old_level = before.level if before is not None else "anonymous"
    if _RANK[after.level] > _RANK[old_level]:
        emit("identified", level=after.level, **lead(after))
    elif _consent_changed(before, after):
        email = kept_email(after)
        if email is not None or customer_of(after) is not None:
            emit("marketing_consent", email=email, consent=consent_record(after))
    if isinstance(event, p.Purchase) and after.orders > (before.orders if before else 0):
        items = [{"sku": i.sku, "qty": i.qty, "price": i.price} for i in event.items]
        emit(
            "purchase",
            order_id=event.order_id,
            value=event.value,
            currency=event.currency,
            items=items,
        )
    if isinstance(event, p.PageView) and cfg.watched:
        path = url_path(event.url)
        if path is not None and any(pattern.search(path) for pattern in cfg.watched):
            emit("watched_page_visited", path=path)
    if after.score_crossed_at is not None and (before is None or before.score_crossed_at is None):
        emit("score_threshold", score=round(after.score, 2))
    if _new_visit(before, after) and winback(after, intelligence):
        assert after.session is not None and after.previous_visit_at is not None
        away = (after.session.started_at - after.previous_visit_at) / DAY_S
        emit("winback_returned", days_away=round(away, 1))
    if isinstance(event, p.Widget) and event.action == "convert" and _counted(before, after, event):
        emit("widget_converted", campaign=event.campaign, variant=event.variant, step=event.step)
    out += segment_events(site, before, after, now, kept)
    return out


def segment_events(
    site: str, before: Profile | None, after: Profile, now: float, kept: Collection[str] | None
) -> list[AutomationEvent]:
    """``segment_entered`` / ``segment_left`` of one stored change: of an
    event (``derive``), or of a change with no event (a property set by the
    admin API, a membership backfill: ``AutomationService.changed``)."""
    old = before.segments if before is not None else ()
    if after.segments is old:  # edge.core.segments keeps the tuple when nothing changed
        return []
    entered, left = segment_changes(old, after.segments)
    customer = customer_of(after)
    out = [
        AutomationEvent("segment_entered", site, after.visitor, now, customer, {"segment": m.id})
        for m in entered
    ]
    for m in left:
        if kept is None or m.id in kept:
            payload = {"segment": m.id, "entered_at": m.since}
            out.append(AutomationEvent("segment_left", site, after.visitor, now, customer, payload))
    return out


def segment_changes(
    before: tuple[Membership, ...], after: tuple[Membership, ...]
) -> tuple[list[Membership], list[Membership]]:
    """(entered, left): memberships in ``after`` only, and in ``before`` only
    (segments kept on the profile, edge.core.segments)."""
    old = {m.id for m in before}
    new = {m.id for m in after}
    return [m for m in after if m.id not in old], [m for m in before if m.id not in new]


def kept_email(profile: Profile) -> str | None:
    """The email in clear, when the site keeps emails (``e:`` contacts)."""
    contact = profile.contact
    return contact[2:] if contact is not None and contact.startswith("e:") else None


def consent_record(profile: Profile) -> dict[str, Any]:
    """What the form's marketing-consent checkbox said last, and when."""
    return {"given": bool(profile.marketing_consent), "at": profile.marketing_consent_at}


def lead(profile: Profile) -> dict[str, Any]:
    """The hand-off fields of ``identified``: only with a kept email and a
    consent given (a verified identity's typed email included)."""
    email = kept_email(profile)
    if email is None or profile.marketing_consent is not True:
        return {}
    return {"email": email, "name": profile.claimed_name, "consent": consent_record(profile)}


def _consent_changed(before: Profile | None, after: Profile) -> bool:
    old = before.marketing_consent if before is not None else None
    return (
        after.level != "anonymous"
        and after.marketing_consent is not None
        and (after.marketing_consent != old)
    )


def _counted(before: Profile | None, after: Profile, event: p.Widget) -> bool:
    """The widget event changed the campaign's record: it matched an offer
    (edge.core.offers); one that did not is no conversion of anything."""
    old = before.campaign(event.campaign) if before is not None else None
    return after.campaign(event.campaign) != old


def _new_visit(before: Profile | None, after: Profile) -> bool:
    if after.session is None:
        return False
    return (
        before is None
        or before.session is None
        or before.session.started_at != after.session.started_at
    )


Deadline = tuple[Literal["schedule"], float] | tuple[Literal["cancel"], None] | None


def deadline(before: Profile | None, after: Profile, event: p.Event, cfg: Automation) -> Deadline:
    """What one applied event does to the visitor's abandoned-cart deadline:
    a non-empty cart change (re)schedules it at ``updated_at + window``; an
    emptied cart or a new order cancels it; anything else leaves it alone."""
    if after is before:
        return None
    if isinstance(event, p.Cart):
        if after.cart.lines:
            return ("schedule", after.cart.updated_at + cfg.cart_window_s)
        return ("cancel", None)
    if isinstance(event, p.Purchase) and after.orders > (before.orders if before else 0):
        return ("cancel", None)
    return None


def abandoned(profile: Profile, cfg: Automation, now: float) -> bool:
    """``cart.abandoned``: the cart is not empty and has not changed for the
    site's window: exactly when the claimer emits ``cart_abandoned`` (give or
    take its polling interval)."""
    return bool(profile.cart.lines) and now - profile.cart.updated_at >= cfg.cart_window_s


# --- timed automation beyond carts ------------------------------------------------
#
# Like the abandoned cart, each is a deadline per (kind, visitor) that a stored
# event sets, moves or cancels, and that the claimer turns into one event when
# it falls due with nothing having moved it (edge.automation.store: claimed
# once across every process). The payload is fixed when the deadline is set.

TIMED_KINDS: tuple[str, ...] = ("browse_abandoned", "customer_away", "churn_risk")
BROWSE_SKUS = 10  # the products a browse_abandoned event lists, newest first
Timed = tuple[str, float | None, dict[str, Any] | None]  # kind, due (None: cancel), payload


def timed(
    before: Profile | None, after: Profile, event: p.Event, cfg: Automation, intel: Intelligence
) -> list[Timed]:
    """What one applied event does to the visitor's timed deadlines."""
    if after is before:
        return []
    out: list[Timed] = []
    if cfg.browse_window_s is not None:
        out += _browse(before, after, event, cfg.browse_window_s)
    if cfg.away_s is not None:
        out += _away(before, after, cfg.away_s)
    if cfg.churn_threshold is not None:
        out += _churn(before, after, event, cfg.churn_threshold, intel)
    return out


def _browse(before: Profile | None, after: Profile, event: p.Event, window_s: float) -> list[Timed]:
    """A visit with products viewed and nothing put in the cart or bought:
    due ``window_s`` after the visit's last event; a cart or an order cancels it."""
    session = after.session
    if isinstance(event, p.Purchase | p.Cart) and (
        isinstance(event, p.Purchase) or after.cart.lines
    ):
        return [("browse_abandoned", None, None)] if _browsing(before) else []
    if session is None or after.cart.lines:
        return []
    viewed = [v.sku for v in after.products if v.at >= session.started_at][:BROWSE_SKUS]
    if not viewed or _ordered_since(after, session.started_at):
        return []
    payload = {"skus": viewed, "visit_started_at": session.started_at}
    return [("browse_abandoned", after.last_seen + window_s, payload)]


def _browsing(profile: Profile | None) -> bool:
    """Whether ``profile`` may hold a browse deadline (to cancel it)."""
    if profile is None or profile.session is None:
        return False
    started = profile.session.started_at
    return any(v.at >= started for v in profile.products)


def _ordered_since(profile: Profile, at: float) -> bool:
    return profile.last_order_at is not None and profile.last_order_at >= at


def _away(before: Profile | None, after: Profile, away_s: float) -> list[Timed]:
    """A customer (an order, or an identity) not back ``away_s`` after their
    last visit started; every new visit (or becoming a customer) moves it."""
    if not _customer(after) or after.session is None:
        return []
    if not (_new_visit(before, after) or not _customer(before)):
        return []
    started = after.session.started_at
    payload = {
        "away_days": round(away_s / DAY_S, 2),
        "last_visit_at": started,
        "orders": after.orders,
        "last_order_at": after.last_order_at,
    }
    return [("customer_away", started + away_s, payload)]


def _customer(profile: Profile | None) -> bool:
    return profile is not None and (profile.orders > 0 or profile.level != "anonymous")


def _churn(
    before: Profile | None,
    after: Profile,
    event: p.Event,
    threshold: float,
    intel: Intelligence,
) -> list[Timed]:
    """Churn risk (edge.core.intelligence.churn_risk) only grows with time after
    the last order, so when it reaches ``threshold`` is known at each order:
    ``last_order_at + expected interval x (1 + 2 x threshold)``."""
    if not isinstance(event, p.Purchase) or after.orders <= (before.orders if before else 0):
        return []
    expected = expected_interval_days(after, intel)
    if expected is None or after.last_order_at is None:
        return []
    due = after.last_order_at + expected * (1 + 2 * threshold) * DAY_S
    payload = {
        "risk": threshold,
        "expected_interval_days": round(expected, 2),
        "last_order_at": after.last_order_at,
        "orders": after.orders,
    }
    return [("churn_risk", due, payload)]
