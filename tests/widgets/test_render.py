"""Every widget, rendered with hostile data, yields no executable markup."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edge.widgets.render import KIND_TEMPLATES, Renderer
from edge.widgets.text import money, pick, safe_url

PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)",
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example/x.js",
    "{{ 7*7 }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
    "</style><script>alert(1)</script>",
    "&lt;script&gt;",
    "\u2028<iframe src=javascript:alert(1)>",
]
ALLOWED_TAGS = {
    "div",
    "button",
    "img",
    "h2",
    "h3",
    "p",
    "a",
    "form",
    "input",
    "label",
    "span",
    "section",
}
URL_ATTRIBUTES = {"href", "src", "action", "formaction"}


class Inspector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event handler {name}={value!r}")
            if name in URL_ATTRIBUTES and value is not None and safe_url(value) != value:
                self.problems.append(f"unsafe {name}={value!r}")


def executable_markup(html: str) -> list[str]:
    inspector = Inspector()
    inspector.feed(html)
    inspector.close()
    return inspector.problems


@dataclass
class Product:
    name: str
    url: str
    image: str
    price: float = 10.0
    old_price: float | None = 12.0


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(None, currency="EUR", locale="en")


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("kind", sorted(KIND_TEMPLATES))
def test_no_executable_markup(renderer: Renderer, kind: str, payload: str) -> None:
    widget = {
        "kind": kind,
        "headline": {"en": payload, "pl": payload},
        "body": payload,
        "cta": payload,
        "url": payload,
        "image": payload,
        "consent": payload,
        "ask_name": True,
        "success_headline": payload,
        "email_label": payload,
    }
    products = [Product(payload, payload, payload)]
    for revealed in (False, True) if kind == "coupon" else (False,):
        html = renderer.render(
            widget,
            lang="en",
            campaign="c",
            variant="a",
            placement="bar-top",
            products=products,
            code=payload,
            revealed=revealed,
        )
        assert executable_markup(html) == [], html
        if "<" in payload:
            assert payload not in html  # escaped, not passed through


def test_texts_arrive_as_text(renderer: Renderer) -> None:
    html = renderer.render(
        {"kind": "banner", "headline": "<b>Sale</b>", "url": "/sale"},
        lang="en",
        campaign="c",
        variant="a",
        placement="hero",
    )
    assert "&lt;b&gt;Sale&lt;/b&gt;" in html
    assert 'href="/sale"' in html


def test_site_templates_render_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "banner.html").write_text(
        "<p>{{ t('headline') }}</p>{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    site_renderer = Renderer(tmp_path, currency="EUR", locale="en")
    with pytest.raises(ValueError, match=r"SecurityError|access to attribute"):
        site_renderer.render(
            {"kind": "banner", "headline": "x"},
            lang="en",
            campaign="c",
            variant="a",
            placement="hero",
        )


def test_a_site_template_overrides_ours(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "banner.html").write_text("<p class=mine>{{ t('headline') }}</p>")
    site_renderer = Renderer(tmp_path, currency="EUR", locale="en")
    html = site_renderer.render(
        {"kind": "banner", "headline": "<hi>"},
        lang="en",
        campaign="c",
        variant="a",
        placement="hero",
    )
    assert html == "<p class=mine>&lt;hi&gt;</p>"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://shop.example/a?b=1", True),
        ("/demo/p/1", True),
        ("http://x.y", True),
        ("javascript:alert(1)", False),
        ("//evil.example", False),
        ("data:x", False),
        ("vbscript:x", False),
        ("", False),
        (None, False),
        ("/path with space", False),
    ],
)
def test_safe_url(url: object, safe: bool) -> None:
    assert (safe_url(url) != "#") is safe


def test_texts_per_language() -> None:
    texts = {"pl": "Cześć", "en": "Hello"}
    assert pick(texts, "pl", "en") == "Cześć"
    assert pick(texts, "de", "en") == "Hello"  # the site's language
    assert pick({"fr": "Salut"}, "de", "en") == "Salut"  # the first given
    assert pick("Plain", "pl", "en") == "Plain"


def test_prices_come_from_babel() -> None:
    assert money(1249.5, "EUR", "en") == "€1,249.50"
    assert money(1249.5, "EUR", "pl") == "1\xa0249,50\xa0€"
    assert money(1249.5, "PLN", "pl-PL") == "1\xa0249,50\xa0zł"
    assert money(None, "EUR", "en") == ""
