"""Country and region of a visit: a GeoIP file the operator provides, or a
trusted proxy's country header; unknown is a value, never an error. The tests
build their own small MaxMind database with mmdb-writer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from edge.config.settings import Settings, parse_trusted_proxies
from edge.core.profile import Profile
from edge.errors import GeoError
from edge.tracker.geo import UNKNOWN, Geo, Location
from tests.client import Visitor, open_socket
from tests.helpers import ROOT, EdgeServer, edge_server

LOCAL = parse_trusted_proxies("127.0.0.1,::1")
LONDON = "81.2.69.142"
WARSAW6 = "2a02:a000::1"


def build_db(path: Path) -> Path:
    """Two networks, as GeoIP2-City records (IPv4 inside an IPv6 tree, as MaxMind ships)."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    city = {"country": {"iso_code": "GB"}, "subdivisions": [{"iso_code": "ENG"}]}
    writer.insert_network(IPSet(["81.2.69.0/24"]), city)
    writer.insert_network(IPSet(["2a02:a000::/32"]), {"country": {"iso_code": "PL"}})
    writer.insert_network(IPSet(["89.160.20.0/24"]), {"continent": {"code": "EU"}})  # no country
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_db(tmp_path_factory.mktemp("geo") / "city.mmdb")


@pytest.fixture
def geo(db: Path) -> Iterator[Geo]:
    located = Geo(database=db, country_header="CF-IPCountry", trusted_proxies=LOCAL)
    yield located
    located.close()


def test_the_database_gives_country_and_region(geo: Geo) -> None:
    assert geo.locate(LONDON, {}, []) == Location("GB", "ENG")
    assert geo.locate(WARSAW6, {}, []) == Location("PL", None)


@pytest.mark.parametrize(
    "peer", ["8.8.8.8", "10.1.2.3", "192.168.0.9", "::1", "not-an-address", None, "89.160.20.7"]
)
def test_unknown_is_a_value_never_an_error(geo: Geo, peer: str | None) -> None:
    assert geo.locate(peer, {}, []) == UNKNOWN


def test_the_client_behind_a_trusted_proxy_is_located(geo: Geo) -> None:
    assert geo.locate("127.0.0.1", {}, [f"{LONDON}"]) == Location("GB", "ENG")
    # an untrusted peer's X-Forwarded-For is the client's own word: ignored
    assert geo.locate("8.8.8.8", {}, [LONDON]) == UNKNOWN


def test_a_trusted_proxys_country_header_wins(geo: Geo) -> None:
    assert geo.locate("127.0.0.1", {"cf-ipcountry": "pl"}, [LONDON]) == Location("PL")
    # Cloudflare's unknown and Tor: the database decides, else unknown
    assert geo.locate("127.0.0.1", {"cf-ipcountry": "XX"}, [LONDON]) == Location("GB", "ENG")
    assert geo.locate("127.0.0.1", {"cf-ipcountry": "T1"}, []) == UNKNOWN
    assert geo.locate("127.0.0.1", {"cf-ipcountry": "<script>"}, []) == UNKNOWN


def test_a_country_header_from_anyone_else_is_ignored(geo: Geo) -> None:
    assert geo.locate(LONDON, {"cf-ipcountry": "PL"}, []) == Location("GB", "ENG")


def test_without_a_database_only_the_header_is_read() -> None:
    header_only = Geo(country_header="CF-IPCountry", trusted_proxies=LOCAL)
    assert header_only.enabled
    assert header_only.locate("127.0.0.1", {"cf-ipcountry": "DE"}, []) == Location("DE")
    assert header_only.locate(LONDON, {}, []) == UNKNOWN
    assert not Geo().enabled


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "country.mmdb"
    bad.write_bytes(b"not a maxmind file")
    with pytest.raises(GeoError, match=r"country\.mmdb"):
        Geo(database=bad)
    with pytest.raises(ValueError, match="geoip_db: no file"):
        Settings(geoip_db=str(tmp_path / "missing.mmdb")).check()
    with pytest.raises(ValueError, match="country_header"):
        Settings(country_header="CF IPCountry: x").check()


def test_edge_serve_refuses_a_bad_geoip_file(tmp_path: Path) -> None:
    bad = tmp_path / "country.mmdb"
    bad.write_bytes(b"\x00" * 100)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge",
            "serve",
            "--port",
            "1",
            "--profiles",
            str(ROOT / "profiles"),
        ],
        env={"EDGE_GEOIP_DB": str(bad), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    assert "country.mmdb" in done.stderr and "Traceback" not in done.stderr


# --- end to end: a campaign for visitors from Great Britain -------------------------

SHOP = "http://127.0.0.1"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, db: Path) -> Iterator[EdgeServer]:
    profiles = tmp_path_factory.mktemp("profiles")
    folder = profiles / "shop"
    folder.mkdir()
    (folder / "site.yaml").write_text(
        f"site: {{id: shop, timezone: Europe/London, allowed_origins: ['{SHOP}']}}\n"
    )
    (folder / "campaigns.yaml").write_text(
        textwrap.dedent(
            """\
            campaigns:
              - id: uk-delivery
                placement: bar
                audience: {geo.country: GB, geo.region: ENG}
                widget: {kind: bar, headline: {en: Free delivery in England}}
              - id: unknown-country
                placement: bar
                audience: {geo.country: null}
                widget: {kind: bar, headline: {en: Where are you?}}
            """
        )
    )
    env = {"EDGE_GEOIP_DB": str(db), "EDGE_COUNTRY_HEADER": "CF-IPCountry"}
    with edge_server(profiles=profiles, env=env) as running:
        yield running


async def shown(shop: EdgeServer, headers: dict[str, str]) -> list[str]:
    tab = Visitor(shop.ws, site="shop")
    tab.ws = await open_socket(tab.url, additional_headers=headers)
    await tab.send(
        {"type": "hello", "v": 1, "visitor": tab.visitor, "session": tab.session, "url": SHOP}
    )
    assert (await tab.recv())["type"] == "welcome"
    answers = await tab.track(tab.event("page_view", url=f"{SHOP}/"))
    await tab.close()
    decisions = [a for a in answers if a["type"] == "decisions"]
    return [item["campaign"] for a in decisions for item in a["items"]]


async def test_a_campaign_targets_the_visitors_country_and_region(shop: EdgeServer) -> None:
    assert await shown(shop, {"X-Forwarded-For": LONDON}) == ["uk-delivery"]
    assert await shown(shop, {"X-Forwarded-For": "8.8.8.8"}) == ["unknown-country"]
    assert await shown(shop, {}) == ["unknown-country"]  # 127.0.0.1 itself: unknown
    # the proxy's header says Poland: not the British campaign
    assert await shown(shop, {"X-Forwarded-For": LONDON, "CF-IPCountry": "PL"}) == []


def test_the_location_is_not_stored_on_the_profile() -> None:
    """The location belongs to the visit context only; the profile has no field for it."""
    assert not set(Profile.__dataclass_fields__) & {"country", "region", "address", "ip"}
