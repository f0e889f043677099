"""Every Redis key edge writes, in one place.

All keys of one visitor carry the hash tag ``{<site>:<visitor>}`` so that, on
Redis Cluster, they live in one slot and a profile update stays one atomic
single-slot script. Site-wide keys get their own tags.

    edge:p:{<site>:<visitor>}     hash  v = version (int), p = msgpack profile
                                  TTL: anonymous_ttl_days; identified: none by default
    edge:gone:{<site>:<visitor>}  string  erased at (unix s); TTL erasure_tombstone_days

Redis Cluster hashes only the text between the first ``{`` and the next ``}``
(the tag), so keys with one tag share a slot, whatever follows the tag. The
rule every Redis user keeps: whatever must be atomic is one Lua script (edge
sends no MULTI: ``edge.stores.connect`` says why) over keys of one tag, all
passed in KEYS. Per tag, that is:

    {<site>:<visitor>}       profile compare-and-set and erasure (profile, tombstone)
    {sig:<site>}             a site's recommendation signals (one script sums 24 hour
                             buckets into their cache)
    {cp:<site>:<campaign>}   one coupon pool (load, claim)
    {st:<site>:<campaign>}   one campaign's statistics, a hash per day (no script)
    {au:<site>}              a site's automation stream, deadlines, dead letters
                             (the deadline claim pops, reads and appends at once)

Batches across tags (a flush's profiles, statistics of several campaigns) are
non-transactional pipelines; the cluster client splits them by master. How
keys spread: visitors over the whole cluster; signals, automation and the
site-wide part of each site on one slot per site (a busy site's signals load
one master); pools and statistics one slot per campaign.
"""

from __future__ import annotations

PREFIX = "edge"


def profile(site: str, visitor: str) -> str:
    return f"{PREFIX}:p:{{{site}:{visitor}}}"


def profile_pattern(site: str) -> str:
    """``edge:p:{<site>:*}``: a SCAN MATCH pattern for every profile key of one
    site (``ProfileStore.iter_profiles``). Braces are literal in Redis glob
    patterns; the glob characters ``* ? [ ] \\`` are escaped in the site id, which
    its validation (``edge.config.sites.SITE_ID``) already keeps free of them. Site ids
    contain no ``:``, so the pattern matches no other site's keys; tombstones
    (``edge:gone:``) have another prefix. On Redis Cluster the keys of one site
    are spread over every node (the tag holds the visitor), so a scan visits all
    primaries."""
    escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in site)
    return f"{PREFIX}:p:{{{escaped}:*}}"


def tombstone(site: str, visitor: str) -> str:
    """``edge:gone:{<site>:<visitor>}``  string  the erasure time (unix seconds);
    TTL erasure_tombstone_days. It shares the profile's hash tag (one slot on
    Redis Cluster), so the compare-and-set script checks it atomically and a
    late event cannot bring an erased profile back. It holds nothing about the
    visitor beyond the fact of the erasure."""
    return f"{PREFIX}:gone:{{{site}:{visitor}}}"


# --- shared recommendation signals (edge.stores.signals) -------------------
#
# Site-wide, not per visitor: every key of one site carries the tag
# ``{sig:<site>}``, so each site's signals sit in one slot (different sites
# spread over the cluster) and the trending sum below, which reads 24 keys in
# one script, stays a single-slot command.
#
#     edge:sig:{sig:<site>}:vt:<sku>     zset  partner sku -> times viewed in the same
#                                              visit as <sku>; trimmed to the top N
#     edge:sig:{sig:<site>}:bt:<sku>     zset  partner sku -> orders containing both;
#                                              trimmed to the top N
#     edge:sig:{sig:<site>}:bs           zset  sku -> units purchased, all time; trimmed
#     edge:sig:{sig:<site>}:tr:<hour>    zset  sku -> views in that hour (unix time // 3600);
#                                              TTL 25 h, so only the last day exists
#     edge:sig:{sig:<site>}:tr           zset  cache of the sum of the last 24 hour buckets;
#                                              TTL trending_cache_s (short)


def _signals(site: str) -> str:
    return f"{PREFIX}:sig:{{sig:{site}}}"


def viewed_together(site: str, sku: str) -> str:
    """Partners of ``sku`` by co-views in one visit."""
    return f"{_signals(site)}:vt:{sku}"


def bought_together(site: str, sku: str) -> str:
    """Partners of ``sku`` by co-occurrence in one order."""
    return f"{_signals(site)}:bt:{sku}"


def bestsellers(site: str) -> str:
    """Units sold per sku."""
    return f"{_signals(site)}:bs"


def trending_bucket(site: str, hour: int) -> str:
    """Views per sku during one hour (``hour`` = unix seconds // 3600)."""
    return f"{_signals(site)}:tr:{hour}"


def trending(site: str) -> str:
    """The cached 24-hour sum of the trending buckets."""
    return f"{_signals(site)}:tr"


# --- coupon pools (edge.stores.coupons) ------------------------------------
#
# The three keys of one campaign's pool share the tag ``{cp:<site>:<campaign>}``:
# a claim reads the visitor's code and pops a free one in one atomic script,
# which on Redis Cluster needs one slot; different pools spread over slots.
#
#     edge:cp:{cp:<site>:<campaign>}:known   set   every code ever loaded (loading is idempotent)
#     edge:cp:{cp:<site>:<campaign>}:free    list  codes not handed out yet
#     edge:cp:{cp:<site>:<campaign>}:given   hash  visitor -> their code (never expires)


def _pool(site: str, campaign: str) -> str:
    return f"{PREFIX}:cp:{{cp:{site}:{campaign}}}"


def coupon_known(site: str, campaign: str) -> str:
    return f"{_pool(site, campaign)}:known"


def coupon_free(site: str, campaign: str) -> str:
    return f"{_pool(site, campaign)}:free"


def coupon_given(site: str, campaign: str) -> str:
    return f"{_pool(site, campaign)}:given"


# --- campaign statistics (edge.stores.stats) ---------------------------------
#
#     edge:st:{st:<site>:<campaign>}:<YYYY-MM-DD>   hash  "<arm>:<field>" -> count or sum
#                                                   TTL 400 days
#
# One tag per campaign: a campaign's days sit together (a 30-day read is one
# slot), different campaigns spread over the cluster. Activity fields
# (impressions, clicks, closes, conversions) go to the day they happened; a
# visitor's exposure (visitors) and its outcomes within the attribution window
# (clicked, converted, purchased, orders, revenue) to the day of the exposure,
# whose hash an outcome may increment days later (its TTL then starts again).


def campaign_stats(site: str, campaign: str, day: str) -> str:
    return f"{PREFIX}:st:{{st:{site}:{campaign}}}:{day}"


# --- automation events out (edge.automation) ------------------------------------
#
# One tag per site, ``{au:<site>}``: the claim script pops due deadlines, reads
# their carts and appends to the stream in one atomic single-slot call, and the
# schedule script sets or cancels deadlines together with their carts.
#
#     edge:au:{au:<site>}:events   stream  automation events, XADD MAXLEN ~ (setting
#                                          automation_stream_maxlen); fields type, site,
#                                          visitor, customer, at, payload (JSON)
#     edge:au:{au:<site>}:due      zset    member -> deadline (unix s); the member is <visitor>
#                                          for an abandoned cart, <kind>|<visitor> for the
#                                          timed kinds (browse_abandoned, customer_away,
#                                          churn_risk): edge.automation.store.member
#     edge:au:{au:<site>}:carts    hash    <member> -> the event's payload (JSON) set with that
#                                          deadline, <member>:c -> customer id ("" if none)
#     edge:au:{au:<site>}:dead     list    JSON webhook deliveries that failed every try; newest
#                                          first, trimmed to 1,000


def _automation(site: str) -> str:
    return f"{PREFIX}:au:{{au:{site}}}"


def automation_stream(site: str) -> str:
    return f"{_automation(site)}:events"


def cart_deadlines(site: str) -> str:
    return f"{_automation(site)}:due"


def cart_payloads(site: str) -> str:
    return f"{_automation(site)}:carts"


def webhook_dead_letters(site: str) -> str:
    return f"{_automation(site)}:dead"
