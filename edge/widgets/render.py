"""Widget HTML, rendered on the server in Jinja2's sandbox.

Every template (ours in ``edge/widgets/templates``, and a site's own under
``profiles/<site>/templates``, which take precedence) renders in a
``SandboxedEnvironment`` with autoescape on, so a product name such as
``<img src=x onerror=alert(1)>`` in the catalog, or anything a visitor typed,
arrives as text. Nothing is ever marked safe; links and image sources go
through the ``url`` filter, which lets only http(s) and site-relative URLs
through. The tracker places the result in a Shadow DOM root, behind the stylesheet
it got once in ``welcome``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from edge.widgets.text import money, pick, safe_url

TEMPLATES = Path(__file__).parent / "templates"
KIND_TEMPLATES = {
    "popup": "popup.html",
    "bar": "bar.html",
    "coupon": "coupon.html",
    "banner": "banner.html",
    "recommendations": "recommendations.html",
}
COUPON_CODE_TEMPLATE = "coupon_code.html"


class RenderError(ValueError):
    """A template failed; raised at load time for every campaign's widget."""


class Renderer:
    """One per site: the site's templates first, then edge's."""

    def __init__(self, site_folder: Path | None, *, currency: str, locale: str) -> None:
        loaders = []
        if site_folder is not None and (site_folder / "templates").is_dir():
            loaders.append(FileSystemLoader(site_folder / "templates"))
        loaders.append(FileSystemLoader(TEMPLATES))
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=True,
            auto_reload=False,
        )
        self.env.filters["url"] = safe_url
        self.currency = currency
        self.locale = locale
        self._stylesheet: str | None = None

    def stylesheet(self) -> str:
        """The widgets' CSS (``_style.html``, a site may override it), sent once
        per connection in ``welcome`` and put by the tracker into every widget's
        Shadow DOM root, so decisions carry markup only."""
        if self._stylesheet is None:
            try:
                self._stylesheet = self.env.get_template("_style.html").render()
            except TemplateError as exc:
                raise RenderError(f"_style.html: {type(exc).__name__}: {exc}") from exc
        return self._stylesheet

    def template_name(self, widget: Mapping[str, Any], *, revealed: bool = False) -> str:
        if revealed:
            return COUPON_CODE_TEMPLATE
        kind = widget.get("kind", "")
        if kind == "html":
            return str(widget.get("template", ""))
        return KIND_TEMPLATES[kind]

    def render(
        self,
        widget: Mapping[str, Any],
        *,
        lang: str,
        campaign: str,
        variant: str,
        placement: str,
        products: Sequence[Any] = (),
        code: str | None = None,
        revealed: bool = False,
    ) -> str:
        default = self.locale.split("-")[0].split("_")[0]

        def t(key: str) -> str:
            return pick(widget.get(key), lang, default)

        def price(amount: Any) -> str:
            return money(amount, self.currency, lang or self.locale)

        try:
            template = self.env.get_template(self.template_name(widget, revealed=revealed))
            return template.render(
                widget=widget,
                t=t,
                money=price,
                campaign=campaign,
                variant=variant,
                placement=placement,
                products=list(products),
                code=code,
                lang=lang,
            )
        except TemplateError as exc:
            raise RenderError(f"{type(exc).__name__}: {exc}") from exc
