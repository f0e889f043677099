"""A site's product catalog: ``profiles/<site>/catalog.json`` or ``catalog.csv``, validated.

The catalog is read on every recommendation, so lookups must not scan it:
the indexes (by id, by category, the discounted products in the order
``recently_discounted`` serves them) are built once, when the model is
validated, and kept in a private attribute. The model itself stays frozen, so
an index can never drift from the products it was built from.

CSV feeds are what most shop platforms export; the header is fixed
(``CSV_COLUMNS``) and every bad row is reported with file and line, all of them
at once, so a broken export is fixed in one pass.
"""

from __future__ import annotations

import csv
import functools
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from edge.errors import ConfigError

CSV_COLUMNS = ("id", "name", "url", "image", "price", "old_price", "category", "in_stock")
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


class Product(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=300)]
    url: Annotated[str, Field(pattern=r"^(https?://|/)")]
    image: Annotated[str, Field(pattern=r"^(https?://|/)")] | None = None
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    old_price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=120)]
    in_stock: bool = True

    @property
    def discounted(self) -> bool:
        return self.old_price is not None and self.old_price > self.price

    @property
    def discount(self) -> float:
        """Relative discount, 0..1: what ``recently_discounted`` ranks by (a 50 %
        cut on a cheap item beats a 10 % cut on an expensive one)."""
        if self.old_price is None or self.old_price <= self.price:
            return 0.0
        return (self.old_price - self.price) / self.old_price


@dataclass(frozen=True, slots=True)
class CatalogIndex:
    """Lookups built once per catalog load. Typed as read-only ``Mapping``s (not
    ``MappingProxyType``, which cannot be copied or pickled) so mypy refuses code
    that would corrupt a catalog shared by every request."""

    by_id: Mapping[str, Product]
    position: Mapping[str, int]  # catalog order, the tie-breaker everywhere
    by_category: Mapping[str, tuple[Product, ...]]
    discounted: tuple[Product, ...] = field(default=())  # largest relative discount first


def _build_index(products: list[Product]) -> CatalogIndex:
    by_category: dict[str, list[Product]] = {}
    for product in products:
        by_category.setdefault(product.category, []).append(product)
    discounted = sorted(
        (p for p in products if p.discounted), key=lambda p: -p.discount
    )  # sorted is stable: equal discounts keep catalog order
    return CatalogIndex(
        by_id={p.id: p for p in products},
        position={p.id: i for i, p in enumerate(products)},
        by_category={k: tuple(v) for k, v in by_category.items()},
        discounted=tuple(discounted),
    )


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    products: list[Product]

    _index: CatalogIndex = PrivateAttr()

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalog:
        counts = Counter(p.id for p in self.products)
        dupes = sorted(k for k, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"duplicate product ids: {', '.join(dupes)}")
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._index = _build_index(self.products)

    @functools.cached_property
    def index(self) -> CatalogIndex:
        # cached in the instance's __dict__: a private attribute is read through
        # pydantic's __getattr__, about a microsecond a call on the hot path
        return self._index

    def by_id(self, product_id: str) -> Product | None:
        return self.index.by_id.get(product_id)

    def in_category(self, category: str) -> tuple[Product, ...]:
        return self.index.by_category.get(category, ())

    def position(self, product_id: str) -> int:
        """The product's place in the feed (``len(products)`` when unknown)."""
        return self.index.position.get(product_id, len(self.products))

    @property
    def discounted(self) -> tuple[Product, ...]:
        """Products whose old price is above their price, in catalog order."""
        return tuple(p for p in self.products if p.discounted)

    @property
    def recently_discounted(self) -> tuple[Product, ...]:
        """Discounted products, largest relative discount first (catalog order on
        ties). Feeds carry no "discounted since" date, so "recently" means
        "discounted in the feed currently loaded"."""
        return self.index.discounted

    def categories(self) -> list[str]:
        return sorted(self.index.by_category)


def load_catalog(folder: Path, *, currency: str = "EUR") -> Catalog | None:
    """The site's catalog, or None when it has none.

    ``currency`` only applies to CSV feeds (JSON carries its own). Having both
    files is refused: silently preferring one would hide an edit to the other.
    """
    json_path, csv_path = folder / "catalog.json", folder / "catalog.csv"
    if json_path.exists() and csv_path.exists():
        raise ConfigError([f"{folder}: both catalog.json and catalog.csv exist; keep one"])
    if csv_path.exists():
        return _load_csv(csv_path, currency)
    if not json_path.exists():
        return None
    try:
        return Catalog.model_validate(json.loads(json_path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        raise ConfigError([f"{json_path}: {exc}"]) from None


def _load_csv(path: Path, currency: str) -> Catalog:
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel exports start with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    products: list[Product] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in _csv_rows(path, text, problems):
        try:
            product = Product.model_validate(_row_fields(row))
        except (ValueError, ValidationError) as exc:
            problems.append(f"{path}:{line}: {_describe(exc)}")
            continue
        if product.id in seen:
            first = seen[product.id]
            problems.append(f"{path}:{line}: duplicate id {product.id!r} (first on line {first})")
            continue
        seen[product.id] = line
        products.append(product)
    if problems:
        raise ConfigError(problems)
    try:
        return Catalog(currency=currency, products=products)
    except ValidationError as exc:
        raise ConfigError([f"{path}: {_describe(exc)}"]) from None


def _csv_rows(path: Path, text: str, problems: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each data row; header and shape problems go to ``problems``."""
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CSV_COLUMNS:
            problems.append(f"{path}:1: the header must be exactly {','.join(CSV_COLUMNS)}")
            return
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank lines are harmless
            if len(cells) != len(CSV_COLUMNS):
                got = len(cells)
                problems.append(f"{path}:{reader.line_num}: expected 8 columns, got {got}")
                continue
            yield reader.line_num, cells
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: {exc}")


def _row_fields(cells: list[str]) -> dict[str, Any]:
    """CSV cells to model fields: empty optional cells are absent, numbers and
    booleans are parsed strictly (pydantic's lax str->bool would accept "off")."""
    raw = dict(zip(CSV_COLUMNS, (c.strip() for c in cells), strict=True))
    out: dict[str, Any] = {k: raw[k] for k in ("id", "name", "url", "category")}
    if raw["image"]:
        out["image"] = raw["image"]
    out["price"] = _number("price", raw["price"])
    if raw["old_price"]:
        out["old_price"] = _number("old_price", raw["old_price"])
    flag = raw["in_stock"].lower()
    if flag:
        if flag not in _TRUE | _FALSE:
            raise ValueError(f"in_stock: expected true/false, got {raw['in_stock']!r}")
        out["in_stock"] = flag in _TRUE
    return out


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}: not a number: {value!r}") from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}" for err in exc.errors()
        )
    return str(exc)
