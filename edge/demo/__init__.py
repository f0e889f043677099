"""The demo shop served under ``/demo``: a small fictional store whose pages
embed the tracker. It is the newcomer's playground and the browser tests'
target. Its catalog is ``profiles/demo/catalog.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge.core.catalog import Catalog
from edge.core.site import Site
from edge.widgets.text import page_language, preferred

HERE = Path(__file__).parent
DEMO_SITE = "demo"

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def _site_and_catalog(request: Request) -> tuple[Site, Catalog]:
    site = request.app.state.ingest.registry.get(DEMO_SITE)
    if site is None:
        raise HTTPException(404, "the demo site is not configured (profiles/demo)")
    catalog = site.catalog
    if catalog is None:
        raise HTTPException(404, "the demo site has no catalog.json")
    return site, catalog


def _render(request: Request, template: str, **context: Any) -> HTMLResponse:
    site, catalog = _site_and_catalog(request)
    # The shopper's language as the tracker reports it (the browser's first
    # choice), and prices through the widgets' own formatter: the shop and
    # its widgets write a price the same way.
    lang = page_language(preferred(request.headers.get("accept-language")), site.locale)

    def money(value: float) -> str:
        return site.renderer.money(value, lang)

    html = _env.get_template(template).render(
        site_id=site.id,
        site_name=site.name,
        categories=catalog.categories(),
        currency=site.currency,
        lang=lang,
        money=money,
        **context,
    )
    return HTMLResponse(html)


async def home(request: Request) -> Response:
    _, catalog = _site_and_catalog(request)
    return _render(request, "home.html", products=catalog.products)


async def category(request: Request) -> Response:
    _, catalog = _site_and_catalog(request)
    name = request.path_params["name"]
    products = [p for p in catalog.products if p.category == name]
    if not products:
        raise HTTPException(404, "no such category")
    return _render(request, "category.html", category=name, products=products)


async def product(request: Request) -> Response:
    _, catalog = _site_and_catalog(request)
    item = catalog.by_id(request.path_params["sku"])
    if item is None:
        raise HTTPException(404, "no such product")
    # json.dumps output is safe inside <script> only with "<" escaped.
    product_json = json.dumps(item.model_dump()).replace("<", "\\u003c")
    return _render(request, "product.html", product=item, product_json=product_json)


async def cart(request: Request) -> Response:
    return _render(request, "cart.html")


async def thanks(request: Request) -> Response:
    return _render(request, "thanks.html")


async def root(request: Request) -> Response:
    return RedirectResponse("/demo")


routes = [
    Route("/demo", home),
    Route("/demo/c/{name}", category),
    Route("/demo/p/{sku}", product),
    Route("/demo/cart", cart),
    Route("/demo/thanks", thanks),
    Mount("/demo/static", StaticFiles(directory=HERE / "static"), name="demo-static"),
]
