"""Load-time checks of every campaign's widgets: a broken template, an unsafe
link or a missing coupon file is a configuration error naming the campaign,
never a surprise on a shopper's page.

A check never stops loading: whatever a template or a check raises is a
problem of that widget, and renderings run ``within_budget``: each gets
``CHECK_RENDER_BUDGET_S`` and all of a site's together ``CHECK_BUDGET_S``
(then the rest are not checked, and that is a problem too), so a template
that loops for long is a problem, not a frozen reload."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edge.decisioning.campaigns import Problems, Where
from edge.decisioning.config import CampaignConfig, widget_dict
from edge.widgets.coupons import MAX_POOL_BYTES
from edge.widgets.recommend import STRATEGIES
from edge.widgets.render import KIND_TEMPLATES, Renderer, within_budget
from edge.widgets.text import is_safe_url

URL_KEYS = ("url", "image")
DEFAULT_LIMIT = 4
MAX_LIMIT = 24
PREFIX = re.compile(r"^[A-Z0-9]{1,12}$")
# A real widget renders in about a millisecond.
CHECK_RENDER_BUDGET_S = 0.5  # each check rendering
CHECK_BUDGET_S = 2.0  # all of one site's
CONVERTING_FORM = "data-edge-form"  # what the tracker reports a conversion for
CONVERTING_CLICK = 'data-edge-click="convert"'  # and a link of a widget with convert_on: click


def widgets_of(campaign: CampaignConfig) -> Iterator[tuple[Where, dict[str, Any]]]:
    if campaign.widget is not None:
        yield ("widget",), widget_dict(campaign.widget)
    for i, step in enumerate(campaign.progressive or ()):
        yield ("progressive", i, "widget"), widget_dict(step.widget)
    for i, variant in enumerate(campaign.experiment.variants if campaign.experiment else ()):
        if variant.widget is not None:
            yield ("experiment", "variants", i, "widget"), widget_dict(variant.widget)


def check_widgets(
    campaigns: list[CampaignConfig], renderer: Renderer, folder: Path, problems: Problems
) -> None:
    end = time.monotonic() + CHECK_BUDGET_S
    try:
        within_budget(renderer.stylesheet, _deadline(end))
    except Exception as exc:  # a RenderError, or anything else: a problem either way
        problems.add(("campaigns",), str(exc))
    for index, campaign in enumerate(campaigns):
        for sub, widget in widgets_of(campaign):
            where: Where = ("campaigns", index, *sub)
            if time.monotonic() >= end:
                problems.add(
                    where, f"not checked: the templates took more than {CHECK_BUDGET_S:g} s"
                )
                return
            try:
                _check_one(campaign, widget, renderer, folder, where, problems, _deadline(end))
            except Exception as exc:  # a check that broke on odd input is still a problem
                problems.add(where, f"{type(exc).__name__}: {exc}")
        _check_conversions(campaign, index, renderer, problems, _deadline(end))


def _deadline(end: float) -> float:
    return min(time.monotonic() + CHECK_RENDER_BUDGET_S, end)


def _check_one(
    campaign: CampaignConfig,
    widget: Mapping[str, Any],
    renderer: Renderer,
    folder: Path,
    where: Where,
    problems: Problems,
    deadline: float,
) -> None:
    for key in URL_KEYS:
        if key in widget and not is_safe_url(widget[key]):
            problems.add((*where, key), f"{widget[key]!r} is not an http(s) or site-relative URL")
    kind = widget.get("kind")
    if kind == "html" and not isinstance(widget.get("template"), str):
        problems.add((*where, "template"), "an html widget names its template file")
        return
    if kind == "coupon":
        _check_coupon(widget.get("coupon"), folder, (*where, "coupon"), problems)
    if kind == "recommendations":
        strategy = widget.get("strategy")
        if strategy not in STRATEGIES:
            problems.add(
                (*where, "strategy"),
                f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}",
            )
        limit = widget.get("limit", DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            problems.add((*where, "limit"), f"limit is a whole number from 1 to {MAX_LIMIT}")
    if kind in KIND_TEMPLATES or kind == "html":
        try:
            within_budget(lambda: _render_checks(campaign, widget, renderer), deadline)
        except Exception as exc:  # a RenderError, or anything else: a problem either way
            problems.add(where, f"template: {exc}")


def _check_conversions(
    campaign: CampaignConfig, index: int, renderer: Renderer, problems: Problems, deadline: float
) -> None:
    """A step ``until: conversion`` ends only when its widget reports ``convert``,
    and the tracker reports it only for a ``<form data-edge-form>`` in the
    widget: a step whose widget has none could never end (issue 14, item 7)."""
    for i, step in enumerate(campaign.progressive or ()):
        if step.until != "conversion":
            continue
        render = functools.partial(
            renderer.render,
            widget_dict(step.widget),
            lang="",
            campaign=campaign.id,
            variant="a",
            placement=campaign.placement,
        )
        try:
            html = within_budget(render, deadline)
        except Exception:  # a broken template is reported by _check_one
            continue
        if CONVERTING_FORM not in html and CONVERTING_CLICK not in html:
            problems.add(
                ("campaigns", index, "progressive", i, "until"),
                "until: conversion never ends here: a step converts only through a "
                "<form data-edge-form> with an email input in its widget (a coupon, or "
                "an html template with one), or a click on its link with convert_on: click",
            )


def _render_checks(campaign: CampaignConfig, widget: Mapping[str, Any], renderer: Renderer) -> None:
    renderer.render(
        widget, lang="", campaign=campaign.id, variant="a", placement=campaign.placement
    )
    if widget.get("kind") == "coupon":
        renderer.render(
            widget,
            lang="",
            campaign=campaign.id,
            variant="a",
            placement=campaign.placement,
            code="CODE",
            revealed=True,
        )


def _check_coupon(coupon: Any, folder: Path, where: Where, problems: Problems) -> None:
    if not isinstance(coupon, Mapping):
        problems.add(where, "a coupon widget needs coupon: {source: generated|pool, ...}")
        return
    source = coupon.get("source")
    if source == "generated":
        if not PREFIX.match(str(coupon.get("prefix", ""))):
            problems.add((*where, "prefix"), "a prefix of 1-12 capital letters or digits")
    elif source == "pool":
        file = coupon.get("file")
        if not isinstance(file, str) or "/" in file or file.startswith("."):
            problems.add((*where, "file"), "the name of a file in the site's coupons/ folder")
        elif not (folder / "coupons" / file).is_file():
            problems.add((*where, "file"), f"{folder / 'coupons' / file} does not exist")
        elif (size := (folder / "coupons" / file).stat().st_size) > MAX_POOL_BYTES:
            problems.add(
                (*where, "file"),
                f"{folder / 'coupons' / file} has {size} bytes, over the limit of "
                f"{MAX_POOL_BYTES}: split the pool",
            )
    else:
        problems.add((*where, "source"), "source is 'generated' or 'pool'")
