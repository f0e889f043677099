"""Where a visit comes from: country (and region) of the client address.

Two sources, both optional, both set by the operator (docs/operations.md,
"Country and region"):

- ``country_header``: a trusted reverse proxy's country header (Cloudflare's
  ``CF-IPCountry``, CloudFront's ``CloudFront-Viewer-Country``, a header set
  by nginx's GeoIP module). Believed only when the connection comes from one
  of ``trusted_proxies``, as ``X-Forwarded-For`` is; anyone else could send it.
- ``geoip_db``: a MaxMind database file (GeoLite2/GeoIP2 Country or City,
  ``.mmdb``) that the operator downloads and keeps current; edge reads it with
  ``maxminddb`` and looks up the client address (``edge.tracker.limits``).

The proxy's header wins when it names a country; otherwise the database.
Unknown is a value, never an error: a private or malformed address, an
address the database does not hold, Cloudflare's ``XX`` (unknown) and ``T1``
(Tor) all give ``None``, which a condition tests as ``geo.country: null``.

The address is used for the lookup and forgotten: only the country and the
region reach the decision (``VisitContext``), and neither is stored on the
profile.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import maxminddb

from edge.config.settings import IPNetwork, parse_trusted_proxies
from edge.errors import GeoError
from edge.tracker.limits import client_address

if TYPE_CHECKING:
    from edge.config.settings import Settings

_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_NOT_A_COUNTRY = frozenset({"XX", "T1", "ZZ"})  # unknown, Tor, user-assigned "unknown"
_REGION = re.compile(r"^[A-Za-z0-9]{1,3}$")


class Location(NamedTuple):
    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    region: str | None = None  # ISO 3166-2 subdivision code without the country (City databases)


UNKNOWN = Location()


class Geo:
    def __init__(
        self,
        *,
        database: Path | None = None,
        country_header: str | None = None,
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.header = country_header.lower() if country_header else None
        self.trusted_proxies = trusted_proxies
        self._reader: Any = None
        if database is not None:
            try:
                self._reader = maxminddb.open_database(str(database))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise GeoError(f"geoip_db {str(database)!r} cannot be read: {exc}") from None

    @property
    def enabled(self) -> bool:
        return self._reader is not None or self.header is not None

    def locate(
        self, peer: str | None, headers: Mapping[str, str], forwarded: Iterable[str]
    ) -> Location:
        """The visit's location; ``UNKNOWN`` when nothing says."""
        if self.header is not None and self._from_proxy(peer):
            country = _country(headers.get(self.header))
            if country is not None:
                return Location(country)
        if self._reader is None:
            return UNKNOWN
        address = client_address(peer, forwarded, self.trusted_proxies)
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return UNKNOWN
        if not address.is_global:
            return UNKNOWN
        try:
            record = self._reader.get(str(address))
        except (ValueError, maxminddb.InvalidDatabaseError):  # a damaged file: unknown, not a 500
            return UNKNOWN
        return _from_record(record)

    def _from_proxy(self, peer: str | None) -> bool:
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def open_geo(settings: Settings) -> Geo:
    """The ``Geo`` of ``settings`` (``GeoError``, a ValueError, for a bad file)."""
    return Geo(
        database=Path(settings.geoip_db) if settings.geoip_db else None,
        country_header=settings.country_header,
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
    )


def _country(value: str | None) -> str | None:
    if value is None or not _COUNTRY.match(value.strip()):
        return None
    code = value.strip().upper()
    return None if code in _NOT_A_COUNTRY else code


def _from_record(record: Any) -> Location:
    if not isinstance(record, Mapping):
        return UNKNOWN
    country = record.get("country")
    code = _country(country.get("iso_code")) if isinstance(country, Mapping) else None
    if code is None:
        return UNKNOWN
    region = None
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], Mapping):
        found = subdivisions[0].get("iso_code")
        if isinstance(found, str) and _REGION.match(found):
            region = found.upper()
    return Location(code, region)
