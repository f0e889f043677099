"""Unique coupon codes: one per visitor per campaign, the same one every time.

*Generated* codes need no state. A code is ``PREFIX-BODY-CHECK``:
``BODY`` is 6 characters of HMAC-SHA256(site secret, "edge-coupon-v1|site|
campaign|visitor"), so one visitor always gets the same code, on any node;
``CHECK`` is 4 characters of HMAC-SHA256(secret, "edge-coupon-check-v1|PREFIX|
BODY"), so the shop can tell a real code from a made-up one offline, with the
secret alone (docs/configuration.md shows the five lines). Characters come
from Crockford's base32 alphabet: no I, L, O or U to misread.

*Pool* codes come from a file (``profiles/<site>/coupons/<file>``), loaded into
the store once (idempotently: every node may load the same file) and handed
out atomically: a visitor's first claim pops one code and records it against
the visitor in the same atomic step, later claims return that code.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

log = logging.getLogger(__name__)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
BODY_CHARS = 6
CHECK_CHARS = 4


def _base32(digest: bytes, chars: int) -> str:
    number = int.from_bytes(digest[:8], "big")
    out = []
    for _ in range(chars):
        number, index = divmod(number, 32)
        out.append(ALPHABET[index])
    return "".join(out)


def _mac(secret: bytes, message: str) -> bytes:
    return hmac.new(secret, message.encode(), hashlib.sha256).digest()


def generated_code(secret: bytes, site: str, campaign: str, visitor: str, prefix: str) -> str:
    body = _base32(_mac(secret, f"edge-coupon-v1|{site}|{campaign}|{visitor}"), BODY_CHARS)
    check = _base32(_mac(secret, f"edge-coupon-check-v1|{prefix}|{body}"), CHECK_CHARS)
    return f"{prefix}-{body}-{check}"


def verify_code(secret: bytes, code: str) -> bool:
    """True if ``code`` was generated with ``secret`` (any site, campaign, visitor)."""
    prefix, _, rest = code.strip().upper().rpartition("-")
    head, _, body = prefix.rpartition("-")
    if not head or len(body) != BODY_CHARS or len(rest) != CHECK_CHARS:
        return False
    expected = _base32(_mac(secret, f"edge-coupon-check-v1|{head}|{body}"), CHECK_CHARS)
    return hmac.compare_digest(expected, rest)


# A pool file is read whole when its site loads (about a million codes); a
# larger one is a configuration problem (edge.widgets.check), never a stall.
MAX_POOL_BYTES = 32 << 20


def read_pool(path: Path) -> list[str]:
    """Codes, one per line; blank lines and ``#`` comments are skipped."""
    if path.stat().st_size > MAX_POOL_BYTES:
        raise ValueError(f"{path} is over {MAX_POOL_BYTES >> 20} MiB")
    codes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        code = line.strip()
        if code and not code.startswith("#"):
            codes.append(code)
    return codes
