"""Coupon codes: generated ones verify offline; pools hand out each code once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.stores.coupons import CouponPools, MemoryPools, RedisPools
from edge.stores.redis import RedisStore
from edge.widgets.coupons import ALPHABET, generated_code, verify_code
from tests.client import new_id
from tests.helpers import RedisServer

SECRET = b"shop-secret"
CODE = re.compile(rf"^WELCOME-[{ALPHABET}]{{6}}-[{ALPHABET}]{{4}}$")


def test_generated_codes_are_stable_per_visitor_and_campaign() -> None:
    a, b = new_id(), new_id()
    first = generated_code(SECRET, "demo", "welcome", a, "WELCOME")
    assert CODE.match(first)
    assert generated_code(SECRET, "demo", "welcome", a, "WELCOME") == first
    assert generated_code(SECRET, "demo", "welcome", b, "WELCOME") != first
    assert generated_code(SECRET, "demo", "other", a, "WELCOME") != first
    assert generated_code(b"another-secret", "demo", "welcome", a, "WELCOME") != first


def test_codes_verify_offline_with_the_secret_alone() -> None:
    code = generated_code(SECRET, "demo", "welcome", new_id(), "WELCOME")
    assert verify_code(SECRET, code)
    assert verify_code(SECRET, code.lower())  # typed by hand
    assert not verify_code(b"wrong", code)
    body = code.split("-")[1]
    forged = f"WELCOME-{body}-{'0000' if not code.endswith('0000') else '1111'}"
    assert not verify_code(SECRET, forged)
    assert not verify_code(SECRET, "WELCOME-ABC")
    assert not verify_code(SECRET, "nonsense")


@pytest.fixture(params=["embedded", "redis"])
async def pools(request: pytest.FixtureRequest) -> AsyncIterator[CouponPools]:
    if request.param == "embedded":
        yield MemoryPools()
        return
    server: RedisServer = request.getfixturevalue("redis")
    store = RedisStore.from_url(server.url.replace("/0", "/7"))
    await store.client.flushdb()
    yield RedisPools(store.client)
    await store.close()


async def test_loading_is_idempotent(pools: CouponPools) -> None:
    assert await pools.load("demo", "c", ["A1", "A2", "A3"]) == 3
    assert await pools.load("demo", "c", ["A2", "A3", "A4"]) == 1  # another node, same file
    assert await pools.remaining("demo", "c") == 4


async def test_a_visitor_keeps_their_code_and_codes_run_out(pools: CouponPools) -> None:
    await pools.load("demo", "c", ["A1", "A2"])
    v1, v2, v3 = new_id(), new_id(), new_id()
    first = await pools.claim("demo", "c", v1)
    assert first == "A1"
    assert await pools.claim("demo", "c", v1) == "A1"  # reload, replay, another tab
    assert await pools.claim("demo", "c", v2) == "A2"
    assert await pools.claim("demo", "c", v3) is None
    assert await pools.remaining("demo", "c") == 0
    assert await pools.claim("demo", "c", v1) == "A1"  # still theirs


async def test_concurrent_claims_never_share_a_code(pools: CouponPools) -> None:
    await pools.load("demo", "race", [f"R{i:04d}" for i in range(150)])
    visitors = [new_id() for _ in range(200)]
    codes = await asyncio.gather(*(pools.claim("demo", "race", v) for v in visitors))
    given = [c for c in codes if c is not None]
    assert len(given) == 150 and len(set(given)) == 150
    again = await asyncio.gather(*(pools.claim("demo", "race", v) for v in visitors))
    assert again == codes


def test_the_offline_check_in_the_docs_works() -> None:
    """docs/configuration.md gives shops these lines; they must stay true."""
    import hashlib
    import hmac

    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def valid(code: str, secret: bytes) -> bool:
        prefix, body, check = code.upper().rsplit("-", 2)
        mac = hmac.new(secret, f"edge-coupon-check-v1|{prefix}|{body}".encode(), hashlib.sha256)
        n = int.from_bytes(mac.digest()[:8], "big")
        return check == "".join(alphabet[(n >> 5 * i) & 31] for i in range(4))

    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert 'f"edge-coupon-check-v1|{prefix}|{body}"' in docs
    for _ in range(20):
        code = generated_code(SECRET, "demo", "welcome", new_id(), "WELCOME")
        assert valid(code, SECRET) and not valid(code, b"other")
