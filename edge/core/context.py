"""What we know about a visit besides its events: the handshake and ``hello``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VisitContext:
    """Per-connection facts, fixed for the life of one WebSocket (or beacon).

    ``session`` is the tracker's tab session, the key of the exactly-once
    bookkeeping; the analytics visit is ``Profile.session``, kept by the server.
    The client address is deliberately absent: it is used for rate limits in
    the shell and never reaches a profile.
    """

    visitor: str
    session: str
    user_agent: str = ""
    lang: str | None = None  # the browser's language (``navigator.language``)
    page_lang: str | None = None  # the page's (``<html lang>``): widgets prefer it
    screen: tuple[int, int] | None = None
    consent: bool | None = None
    url: str | None = None  # the page that said hello
    referrer: str | None = None  # document.referrer of that page
    country: str | None = None  # edge.tracker.geo: ISO 3166-1 alpha-2, None when unknown
    region: str | None = None  # its subdivision code (City databases)
