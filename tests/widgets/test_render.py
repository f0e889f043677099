"""Every widget, rendered with hostile data, yields no executable markup."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge.core.catalog import Product as CatalogProduct
from edge.widgets.render import (
    KIND_TEMPLATES,
    MAX_TEMPLATE_BYTES,
    Renderer,
    RenderError,
    within_budget,
)
from edge.widgets.text import BUILT_IN, LANGUAGES, money, page_language, pick, safe_url, text

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


def test_the_pages_language_wins_over_the_browsers_then_the_sites() -> None:
    assert page_language("en-US", "de", "pl-PL") == "pl"  # <html lang="pl-PL">
    assert page_language("en-US", "de", None) == "en"
    assert page_language("en-US", "de", "") == "en"  # <html> without lang
    assert page_language(None, "de-AT", None) == "de"


def test_every_built_in_text_is_in_every_language() -> None:
    for kind, by_language in BUILT_IN.items():
        keys = set(by_language["en"])
        for lang in LANGUAGES:
            assert set(by_language.get(lang, {})) == keys, (kind, lang)


def test_texts_fall_back_key_by_key() -> None:
    """Issue 16: a site that sets one text in one language keeps edge's own
    texts in every language for the other keys, and its own languages."""
    widget = {
        "kind": "coupon",
        "headline": {"en": "10% off", "pl": "10% rabatu"},
        "body": {"en": "Only in English"},
        "success_headline": {"pl": "Twój kod rabatowy"},
    }
    assert text(widget, "success_headline", "pl", "en") == "Twój kod rabatowy"  # the site's
    assert text(widget, "success_headline", "en", "en") == "Here is your code"  # edge's, en
    assert text(widget, "success_body", "pl", "en") == "Wpisz go przy składaniu zamówienia."
    assert text(widget, "close", "pl", "en") == "Zamknij"  # edge's, for every kind
    assert text(widget, "headline", "pl", "en") == "10% rabatu"
    assert text(widget, "body", "pl", "en") == "Only in English"  # the site's language
    assert text(widget, "success_body", "de", "en") == "Enter it at checkout."  # edge's English
    assert text(widget, "success_body", "de", "pl") == "Wpisz go przy składaniu zamówienia."
    assert text({"kind": "popup", "cta": {"fr": "Allez"}}, "pl", "de", "en") == ""
    assert text({"kind": "popup", "cta": {"fr": "Allez"}}, "cta", "de", "en") == "Allez"
    assert text({"kind": "popup", "cta": "Plain"}, "cta", "pl", "en") == "Plain"
    assert text({"kind": "popup"}, "cta", "pl", "en") == ""  # a coupon's text, not a popup's


ENGLISH = [t for texts in BUILT_IN.values() for t in texts["en"].values()]


@pytest.mark.parametrize("code", ["WELCOME-ABCDEF-GHJK", None])
def test_a_polish_visitor_reads_the_whole_coupon_flow_in_polish(
    renderer: Renderer, code: str | None
) -> None:
    widget = {"kind": "coupon", "headline": {"en": "10% off", "pl": "10% rabatu"}, "ask_name": True}
    pages = [
        renderer.render(widget, lang=lang, campaign="c", variant="a", placement="popup", **extra)
        for lang in ("pl", "en")
        for extra in ({}, {"code": code, "revealed": True})
    ]
    polish, english = pages[:2], pages[2:]
    for html in polish:
        assert 'aria-label="Zamknij"' in html
        assert not [t for t in ENGLISH if t in html], html
    assert "Imię" in polish[0] and "Twój e-mail" in polish[0] and "Pokaż mój kod" in polish[0]
    assert ("Oto Twój kod" if code else "Dziękujemy!") in polish[1]
    assert ("Here is your code" if code else "Thank you!") in english[1]
    assert "First name" in english[0] and 'aria-label="Close"' in english[0]


def test_prices_come_from_babel() -> None:
    assert money(1249.5, "EUR", "en") == "€1,249.50"
    assert money(1249.5, "EUR", "pl") == "1\xa0249,50\xa0€"
    assert money(1249.5, "PLN", "pl-PL") == "1\xa0249,50\xa0zł"
    assert money(None, "EUR", "en") == ""


# --- bounded: no template can hold the CPU or fill the memory ----------------------------


def render_template(
    tmp_path: Path,
    template: str,
    *,
    headline: object = "Hi",
    products: Sequence[object] = (),
    records: Mapping[type, Iterable[str]] | None = None,
) -> str:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "custom.html").write_text(template)
    site_renderer = Renderer(tmp_path, currency="EUR", locale="en", records=records)
    return site_renderer.render(
        {"kind": "html", "template": "custom.html", "headline": headline},
        lang="en",
        campaign="c",
        variant="a",
        placement="hero",
        products=products,
    )


def doubled(times: int, literal: str, use: str) -> str:
    """``a`` doubled ``times`` times by reference: [a, a] costs nothing to build."""
    steps = "".join(f"{{% set a = {literal} %}}" for _ in range(times))
    return "{% set a = 'xx' %}" + steps + use


BOMBS = {
    "range": "{% for x in range(1000000) %}x{% endfor %}",
    "repeat": "{{ 'x' * 10**9 }}",
    "repeat-list": "{{ [0] * 10**9 }}",
    "repeat-nested": "{{ [[0] * 100000] * 100000 }}",
    "power": "{{ 7 ** 1000000000 }}",  # (Jinja reads 7 ** 10 ** 9 as (7 ** 10) ** 9)
    "squaring": "{% set ns = namespace(x=3) %}{% for i in range(40) %}"
    "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}",
    "printf-width": "{{ '%1000000000s' % 'x' }}",
    "printf-star": "{{ '%*s'|format(1000000000, 'x') }}",
    "format-width": "{{ '{:1000000000}'.format('x') }}",
    "format-nested": "{{ '{:{}}'.format('x', 1000000000) }}",
    "center": "{{ 'x'|center(10**9) }}",
    "center-method": "{{ 'x'.center(10**9) }}",
    "join": "{{ range(10000)|join('x' * 100000) }}",
    "replace": "{{ ('x' * 100000)|replace('x', 'y' * 100000) }}",
    "indent": "{{ ('\\n' * 100000)|indent(100000) }}",
    "wordwrap": "{{ ('x ' * 50000)|wordwrap(1, wrapstring='y' * 100000) }}",
    "lazy-map": "{{ range(10000)|map('center', 100000)|list|length }}",
    "batch": "{{ [1]|batch(10**9, 'x')|list }}",
    "slice": "{{ [1]|slice(10**9)|list }}",
    "sum-lists": "{{ [[0] * 1000] * 1000|sum(start=[]) }}",
    "tojson": "{{ range(1000)|list|tojson(indent=10**6) }}",
    "list-doubling": doubled(40, "[a, a]", "{{ a ~ '' }}"),
    "tuple-doubling": doubled(40, "(a, a)", "{{ {a: 1} }}"),
    "dict-doubling": doubled(40, "{'k': a, 'l': a}", "{{ a }}"),
    "concat-doubling": doubled(40, "a ~ a", "{{ a|length }}"),
    "plus-doubling": doubled(40, "a + a", "{{ a|length }}"),
    "namespace": "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "macro-doubling": "{% macro f(x, n) %}{% if n %}{{ f([x, x], n - 1) }}{% else %}"
    "{{ x ~ '' }}{% endif %}{% endmacro %}{{ f(1, 60) }}",
    "list-mutation": "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}",
    "output": "{% for i in range(10000) %}{% for j in range(10000) %}xxxxxxxxxx"
    "{% endfor %}{% endfor %}",
    "lipsum": "{{ lipsum(10**6) }}",
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("template", BOMBS.values(), ids=BOMBS.keys())
def test_a_template_bomb_is_a_render_error(tmp_path: Path, template: str) -> None:
    with pytest.raises(RenderError):
        render_template(tmp_path, template)


@pytest.mark.parametrize(
    ("template", "html"),
    [
        ("{{ [1, 2, 3]|join(', ') }}", "1, 2, 3"),
        ("{{ '%05.1f'|format(3.14159) }} {{ '%s-%s' % ('a', 'b') }}", "003.1 a-b"),
        ("{{ '{:>4}'.format('x') }}|{{ 'ab' * 3 }}|{{ 2 ** 10 }}", "   x|ababab|1024"),
        ("{% for i in range(3) %}{{ i }}{% endfor %}{{ range(5)|sum }}", "01210"),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "6",
        ),
        ("{{ {'a': (1, 2)}['a'][1] }} {{ 'x' ~ 1 ~ [2] }}", "2 x1[2]"),
        ("{{ 'a b'.replace(' ', '-')|center(5) }}{{ ['b', 'a']|sort|join }}", " a-b ab"),
        ("{% for a, b in [(1, 2)] %}{{ a + b }}{% endfor %}", "3"),
    ],
)
def test_templates_within_the_limits_render_as_jinja_does(
    tmp_path: Path, template: str, html: str
) -> None:
    assert render_template(tmp_path, template) == html


def test_a_template_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=f"more than the {MAX_TEMPLATE_BYTES} bytes"):
        render_template(tmp_path, "x" * (MAX_TEMPLATE_BYTES + 1))


@pytest.mark.timeout(20)
def test_the_check_budget_stops_a_rendering_that_runs_long(tmp_path: Path) -> None:
    loops = "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(RenderError, match="took longer than its time budget"):
        within_budget(lambda: render_template(tmp_path, loops), started + 0.2)
    assert sys.gettrace() is None  # the trace function is gone again


def test_the_check_budget_lets_a_quick_rendering_through(renderer: Renderer) -> None:
    html = within_budget(
        lambda: renderer.render(
            {"kind": "banner", "headline": "Hi", "url": "/x"},
            lang="en",
            campaign="c",
            variant="a",
            placement="hero",
        ),
        time.monotonic() + 10,
    )
    assert "Hi" in html


# --- the sandbox's fast paths give its own answers ------------------------------------------


PRODUCT_RECORDS = {CatalogProduct: CatalogProduct.model_fields}


def catalog_product(**fields: object) -> CatalogProduct:
    values: dict[str, object] = {
        "id": "p1",
        "name": "<b>Shoe</b>",
        "url": "/p/1",
        "image": "/i/1.jpg",
        "price": 10.0,
        "old_price": 12.5,
        "category": "shoes",
    }
    return CatalogProduct.model_validate({**values, **fields})


def same_answer(found: object, expected: object) -> bool:
    if isinstance(expected, Undefined):
        return (
            type(found) is type(expected)
            and found._undefined_name == expected._undefined_name  # type: ignore[attr-defined]
            and found._undefined_hint == expected._undefined_hint  # type: ignore[attr-defined]
            and found._undefined_exception is expected._undefined_exception  # type: ignore[attr-defined]
        )
    return found == expected


ATTRIBUTES = [
    *CatalogProduct.model_fields,
    "discounted",  # a property, not a field: the sandbox's way
    "discount",
    "__class__",
    "__dict__",
    "__init__",
    "model_copy",
    "model_dump",
    "_private",
    "missing",
    "items",  # dict's own: attributes first, as Jinja reads them
    "get",
    "update",  # changes the dict: unsafe
    "pop",
    "clear",
    "a",
    "mro",
]


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_fast_lookups_answer_as_the_sandbox(attribute: str) -> None:
    """A product with its fields declared (``records``) and a plain dict:
    every name gives what Jinja's immutable sandbox gives (a value, an
    undefined, or an unsafe undefined), however the fast path took it."""
    env = Renderer(None, currency="EUR", locale="en", records=PRODUCT_RECORDS).env
    assert env.records  # the fast path is on
    for obj in (
        catalog_product(),
        catalog_product(image=None, old_price=None),
        {"a": 1, "items": "shadowed by dict.items", "__class__": "an item", "update": 2},
        {},
    ):
        found = env.getattr(obj, attribute)
        expected = ImmutableSandboxedEnvironment.getattr(env, obj, attribute)
        assert same_answer(found, expected), (obj, attribute, found, expected)


def test_a_template_reaching_past_a_record_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"SecurityError|access to attribute"):
        render_template(
            tmp_path,
            "{% for p in products %}{{ p.name }}{{ p.__class__.__mro__ }}{% endfor %}",
            products=[catalog_product()],
            records=PRODUCT_RECORDS,
        )


def test_helpers_called_in_a_loop_answer_as_jinja_calls_them(tmp_path: Path) -> None:
    """``t`` and ``money`` in and out of a loop, with plain arguments (the
    fast path) and others (the sandbox's way): the same text either way."""
    template = (
        "{{ t('headline') }}|{% for p in products %}{{ money(p.price) }};"
        "{{ money(p.old_price) }};{{ t(['headline'][0]) }};{{ money(range(2)|sum) }};{% endfor %}"
    )
    products = [catalog_product(), catalog_product(price=3.5, old_price=None)]
    html = {
        records: render_template(
            tmp_path,
            template,
            headline={"en": "<Hi>"},
            products=products,
            records=PRODUCT_RECORDS if records else None,
        )
        for records in (True, False)
    }
    assert (
        html[True]
        == html[False]
        == ("&lt;Hi&gt;|€10.00;€12.50;&lt;Hi&gt;;€1.00;€3.50;;&lt;Hi&gt;;€1.00;")
    )
