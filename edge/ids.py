"""Visitor and session identifiers.

A visitor id is 128 random bits written as 32 lowercase hex characters. The
tracker mints it (``crypto.getRandomValues``) or the server does on first
contact. Anything else is refused, in particular the placeholders that buggy
integrations send (``null``, ``undefined``, ``guest``, ``""``): accepting them
would pour unrelated people into one profile (Mautic's contact-merging bugs).
Session ids (one per browser tab, see docs/protocol.md) have the same format.
"""

from __future__ import annotations

import re
import secrets

from edge.errors import BadVisitorId, InvalidMessage

_ID = re.compile(r"[0-9a-f]{32}")
# An id whose 128 bits are all one nibble repeated is not random; refusing it
# catches hand-typed test ids such as "000...0" leaking into production.
_DEGENERATE = frozenset(c * 32 for c in "0123456789abcdef")

EVENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def new_id() -> str:
    """Mint a fresh 128-bit id."""
    return secrets.token_hex(16)


def is_valid_id(value: object) -> bool:
    return (
        isinstance(value, str) and _ID.fullmatch(value) is not None and (value not in _DEGENERATE)
    )


def check_visitor_id(value: object) -> str:
    if not is_valid_id(value):
        raise BadVisitorId(f"visitor id must be 32 lowercase hex characters, got {value!r:.40}")
    assert isinstance(value, str)
    return value


def check_session_id(value: object) -> str:
    if not is_valid_id(value):
        raise InvalidMessage(f"session id must be 32 lowercase hex characters, got {value!r:.40}")
    assert isinstance(value, str)
    return value
