"""Widget keys are checked per kind (issue 14, item 8): a key the widget's kind
does not read (``headlin:``) is refused with the file, line and key, like every
other unknown key; ``kind: html`` takes any keys (its template reads them);
``convert_on: click`` is a key of the widgets with a link."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.sites import load_site
from edge.decisioning.config import WIDGETS
from tests.decisioning.test_campaign_config import only_problem, write_site


def test_a_typo_in_a_widget_key_names_file_line_and_key(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: popup
        widget:
          kind: coupon
          headlin: {en: "10% off"}
          coupon: {source: generated, prefix: WELCOME}
    """
    problem = only_problem(tmp_path, text)
    assert problem.startswith(
        "6: campaigns[0].widget.headlin: unknown key 'headlin' for a coupon widget "
        "(its keys: close, headline, body, cta, email_label,"
    ), problem


@pytest.mark.parametrize(
    ("where", "widget", "key"),
    [
        ("widget", "{kind: bar, headline: hi, image: /a.png}", "image"),
        ("widget", "{kind: banner, headline: hi, url: /, cta: go}", "cta"),
        ("widget", "{kind: recommendations, strategy: bestsellers, body: hi}", "body"),
        ("widget", "{kind: popup, headline: hi, coupon: {source: generated, prefix: A}}", "coupon"),
        (
            "widget",
            "{kind: coupon, coupon: {source: generated, prefix: A}, convert_on: click}",
            "convert_on",
        ),
    ],
)
def test_each_kind_refuses_the_keys_it_does_not_read(
    tmp_path: Path, where: str, widget: str, key: str
) -> None:
    text = f"""\
    campaigns:
      - id: c
        placement: popup
        {where}: {widget}
    """
    problem = only_problem(tmp_path, text)
    assert problem.startswith(f"4: campaigns[0].widget.{key}: unknown key {key!r} for a "), problem


def test_keys_of_a_step_and_of_a_variant_are_checked_too(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        progressive:
          - widget: {kind: bar, headline: hi}
          - widget: {kind: bar, headlne: hi}
      - id: d
        placement: bar
        widget: {kind: bar, headline: hi}
        experiment:
          variants:
            - {id: a}
            - {id: b, widget: {kind: bar, titel: hi}}
    """
    folder = write_site(tmp_path, campaigns=text)
    with pytest.raises(Exception) as caught:
        load_site(folder)
    found = caught.value.problems  # type: ignore[attr-defined]
    assert [p.split(": ", 2)[1] for p in found] == [
        "campaigns[0].progressive[1].widget.headlne",
        "campaigns[1].experiment.variants[1].widget.titel",
    ], found


def test_a_missing_kind_is_named(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        widget: {headline: hi}
    """
    assert only_problem(tmp_path, text) == "4: campaigns[0].widget.kind: Field required"


def test_html_widgets_take_any_keys_and_the_others_load_as_given(tmp_path: Path) -> None:
    (tmp_path / "shop" / "templates").mkdir(parents=True)
    (tmp_path / "shop" / "templates" / "mine.html").write_text(
        "<p>{{ widget.subtitle }}</p>", encoding="utf-8"
    )
    folder = tmp_path / "shop"
    (folder / "site.yaml").write_text("site: {id: shop, timezone: Europe/Warsaw}\n")
    (folder / "campaigns.yaml").write_text(
        "campaigns:\n"
        "  - {id: h, placement: box, widget: {kind: html, template: mine.html, subtitle: x}}\n"
        "  - {id: b, placement: bar, widget: {kind: bar, headline: hi, cta: go, url: /x,"
        " convert_on: click}}\n"
    )
    site = load_site(folder)
    widgets = {c.id: c.steps[0].widget for c in site.decisioning.campaigns}
    assert widgets["h"] == {"kind": "html", "template": "mine.html", "subtitle": "x"}
    # only the keys given: the renderer's defaults (limit: 4, ...) still apply
    assert widgets["b"] == {
        "kind": "bar",
        "headline": "hi",
        "cta": "go",
        "url": "/x",
        "convert_on": "click",
    }


def test_every_kind_has_a_model() -> None:
    assert set(WIDGETS) == {"popup", "bar", "coupon", "recommendations", "banner", "html"}


def test_convert_on_click_marks_the_link_and_lets_a_step_end_on_conversion(
    tmp_path: Path,
) -> None:
    """A widget with ``convert_on: click``: its link carries
    ``data-edge-click="convert"`` (the tracker reports a conversion with the
    click), so a step ``until: conversion`` can end on it; without it, the
    link counts a click only."""
    folder = write_site(
        tmp_path,
        campaigns="""\
        campaigns:
          - id: steps
            placement: bar
            progressive:
              - until: conversion
                widget: {kind: bar, headline: hi, cta: go, url: /sale, convert_on: click}
              - widget: {kind: bar, headline: later}
          - id: plain
            placement: popup
            widget: {kind: popup, headline: hi, cta: go, url: /sale}
        """,
    )
    site = load_site(folder)
    by_id = {c.id: c for c in site.decisioning.campaigns}
    for campaign, placement, marked in (("steps", "bar", True), ("plain", "popup", False)):
        html = site.renderer.render(
            by_id[campaign].steps[0].widget,
            lang="en",
            campaign=campaign,
            variant="a",
            placement=placement,
        )
        assert ('data-edge-click="convert"' in html) is marked, html
        assert "data-edge-click" in html
