"""Identification: claimed (an email typed by the visitor) and verified
(a token signed by the shop's backend).

*Claimed* emails are never stored in clear by default: the profile keeps
``HMAC-SHA256(site salt, normalised email)``. A claim changes targeting only;
it never links to or reveals another profile, because anyone can type anyone's
address.

*Verified* tokens prove that the shop's backend knows who this is::

    sig = HMAC-SHA256(secret, "edge-identify-v1|" + site + "|" + customer_id + "|" + ts)

hex-encoded, with ``ts`` in Unix seconds. A token is good for
``token_max_age_s`` after ``ts`` (and up to 5 minutes early, for clock skew)
and only for the site it was signed for. docs/protocol.md shows how a shop
signs one.
"""

from __future__ import annotations

import hashlib
import hmac

from edge.errors import IdentityRejected

TOKEN_PREFIX = "edge-identify-v1"
CLOCK_SKEW_S = 300


def customer_visitor(site: str, customer_id: str) -> str:
    """The id of a customer's own profile: ``c`` and 32 hex digits of
    SHA-256(site, customer id). Every device the customer verifies on is
    aliased to it (``edge.core.merge``). It can never be a client's visitor id (those
    are exactly 32 hex digits, ``edge.ids``), so no one reaches a customer's
    profile by sending its id in ``hello``: only a verified token leads there."""
    digest = hashlib.sha256(f"{site}\x00{customer_id}".encode()).hexdigest()
    return "c" + digest[:32]


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_email(email: str, salt: bytes) -> str:
    digest = hmac.new(salt, normalise_email(email).encode(), hashlib.sha256).hexdigest()
    return f"h1:{digest}"


def token_message(site: str, customer_id: str, ts: int) -> bytes:
    return f"{TOKEN_PREFIX}|{site}|{customer_id}|{ts}".encode()


def sign_token(secret: bytes, site: str, customer_id: str, ts: int) -> str:
    return hmac.new(secret, token_message(site, customer_id, ts), hashlib.sha256).hexdigest()


def verify_token(
    secret: bytes | None,
    site: str,
    customer_id: str,
    ts: int,
    sig: str,
    *,
    now: float,
    max_age_s: float,
) -> None:
    """Raise ``IdentityRejected`` unless the token is genuine, fresh and for ``site``."""
    if secret is None:
        raise IdentityRejected(f"site {site!r} has no identity secret configured")
    expected = sign_token(secret, site, customer_id, ts)
    if not hmac.compare_digest(expected, sig):
        raise IdentityRejected("identity token signature does not match")
    if ts > now + CLOCK_SKEW_S:
        raise IdentityRejected("identity token is from the future")
    if now - ts > max_age_s:
        raise IdentityRejected("identity token has expired")
