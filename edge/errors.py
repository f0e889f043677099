"""Every exception edge raises on purpose, in one hierarchy.

    EdgeError
    ├── ConfigError              a site's YAML is invalid (names file, line, key)
    ├── BadRedisUrl              --redis / EDGE_REDIS_URL cannot be used (also a ValueError)
    ├── GeoError                 EDGE_GEOIP_DB cannot be read (also a ValueError)
    ├── ProtocolError            a client sent something we refuse; carries a
    │   │                        machine-readable ``code`` for the error frame
    │   ├── MalformedFrame       undecodable JSON / msgpack (close 1007)
    │   ├── InvalidMessage       well-formed but wrong shape or values
    │   ├── HelloRequired        events before ``hello``
    │   ├── BadVisitorId         missing, placeholder or malformed visitor id
    │   ├── UnknownSite          ``site`` is not configured here
    │   ├── OriginRefused        Origin header not allowed for the site
    │   ├── IdentityRejected     forged, expired or foreign identity token
    │   └── PreviewRefused       forged, expired or foreign preview token (edge.core.preview)
    └── StoreError               the profile store failed or timed out
        └── ProfileMoved         the profile was merged into another one while
                                 events were waiting to be stored (resend them)

``ConditionError`` (edge.decisioning.conditions) subclasses ``ValueError``
so the condition compiler can be used on its own; the site loader turns it
into a ``ConfigError`` with file and line.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class of edge's own errors."""


class ConfigError(EdgeError):
    """A site configuration is invalid. ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ProtocolError(EdgeError):
    """A client message is refused. ``code`` goes into the error frame."""

    code = "protocol_error"

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        self.message = message
        self.seq = seq
        super().__init__(message)


class MalformedFrame(ProtocolError):
    code = "malformed"


class InvalidMessage(ProtocolError):
    code = "invalid"


class HelloRequired(ProtocolError):
    code = "hello_required"


class BadVisitorId(ProtocolError):
    code = "bad_visitor_id"


class UnknownSite(ProtocolError):
    code = "unknown_site"


class OriginRefused(ProtocolError):
    code = "origin_refused"


class IdentityRejected(ProtocolError):
    code = "identity_rejected"


class PreviewRefused(ProtocolError):
    code = "preview_refused"


class StoreError(EdgeError):
    """The profile store failed (connection lost, timeout, bad data)."""


class ProfileMoved(StoreError):
    """The visitor's profile was merged into a customer's profile (by another
    tab or process) before these events were stored. They were not stored and
    not acknowledged: the tracker resends them, and they go to the customer's
    profile."""


class BadRedisUrl(EdgeError, ValueError):
    """``--redis`` / ``EDGE_REDIS_URL`` is not a Redis URL edge can use. The
    message names the problem and the accepted forms, never the password."""


class GeoError(EdgeError, ValueError):
    """The GeoIP database (``geoip_db``) cannot be opened or is not one."""
