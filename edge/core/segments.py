"""Segments kept on the profile: who is in a segment outside one decision.

A segment with ``membership: true`` (docs/configuration.md, "Segments") is
evaluated whenever an event is applied to a profile (``edge.core.updates.apply``
calls ``refreshed``; so do the admin API's property change and the backfill,
``edge.admin.segments.refresh``) and the answer is kept on the profile as
``segments``: one ``Membership(id, since)`` per segment the visitor is in,
``since`` being when they entered it. Pure: a function of the new profile,
the site's configuration and ``now``, so a replayed event (which ``apply``
does not apply) changes nothing, and re-applying events after a lost
compare-and-set gives the same membership.

What counts: the profile's attributes only (visitor, session, touches, cart,
orders, viewed, campaigns, events, rfm, score, interests, lifecycle), as of
the event. A kept segment may not name ``page``, ``device``, ``time`` or
``geo``: those belong to one page view, not to the visitor (the compiler
refuses them). Attributes that move with the clock alone (``cart.abandoned``,
``*.days_since_*``, ``lifecycle.*``, ``rfm.r``, a decaying ``score``) are
re-evaluated at the visitor's next stored event, not when the clock crosses
the line: membership is "as of the last event".

What changed between the profile before and after an event gives the
automation events ``segment_entered`` / ``segment_left``
(``edge.core.automation.derive``), derived from the applied change like
every other automation event.

Cost per applied event, for a site with kept segments: the attribute
namespaces their conditions name are built once (``attributes.of_profile``,
a few microseconds) and each kept segment's compiled condition is run once;
nothing at all for a site without kept segments and a profile without
memberships.
"""

from __future__ import annotations

from edge.core.profile import Membership, Profile, evolve
from edge.core.site import Site
from edge.decisioning.attributes import of_profile


def membership(profile: Profile, site: Site, now: float) -> tuple[Membership, ...]:
    """The kept segments ``profile`` is in at ``now``, in configuration order;
    a segment it was in already keeps its ``since``."""
    decisioning = site.decisioning
    if not decisioning.kept:
        return ()
    attributes = of_profile(profile, site, now, decisioning.kept_roots, later=True)
    since = {m.id: m.since for m in profile.segments}
    return tuple(
        Membership(s.id, since.get(s.id, now)) for s in decisioning.kept if s.test(attributes)
    )


def refreshed(profile: Profile, site: Site, now: float) -> Profile:
    """``profile`` with its membership recomputed: the same object when it
    did not change. Memberships of segments no longer kept are dropped."""
    if not site.decisioning.kept and not profile.segments:
        return profile
    segments = membership(profile, site, now)
    if segments == profile.segments:
        return profile
    return evolve(profile, {"segments": segments})


def member_of(profile: Profile, segment: str) -> Membership | None:
    """The profile's membership of ``segment``, or None."""
    return next((m for m in profile.segments if m.id == segment), None)
