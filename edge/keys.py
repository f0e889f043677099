"""Every Redis key edge writes, in one place.

All keys of one visitor carry the hash tag ``{<site>:<visitor>}`` so that, on
Redis Cluster, they live in one slot and a profile update stays one atomic
single-slot script. Site-wide keys get their own tags.

    edge:p:{<site>:<visitor>}     hash  v = version (int), p = msgpack profile
                                  TTL: anonymous_ttl_days; identified: none by default
"""

from __future__ import annotations

PREFIX = "edge"


def profile(site: str, visitor: str) -> str:
    return f"{PREFIX}:p:{{{site}:{visitor}}}"
