"""A site's product catalog: ``profiles/<site>/catalog.json``, validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import ConfigError


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


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    products: list[Product]

    def by_id(self, product_id: str) -> Product | None:
        return next((p for p in self.products if p.id == product_id), None)

    def categories(self) -> list[str]:
        return sorted({p.category for p in self.products})


def load_catalog(folder: Path) -> Catalog | None:
    path = folder / "catalog.json"
    if not path.exists():
        return None
    try:
        return Catalog.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
