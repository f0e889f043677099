"""Preview links, the pure part (edge.core.preview): tokens, links and the forced decision."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from edge.cli import main
from edge.config.sites import Site, load_site
from edge.core import preview
from edge.core.context import VisitContext
from edge.core.preview import Grant
from edge.decisioning.attributes import Page
from edge.decisioning.engine import decide
from edge.errors import PreviewRefused
from tests.helpers import PROFILES

SECRET = b"an-admin-token-of-32-characters!"
NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
VISITOR = "8c1f0a9b2d3e4f5061728394a5b6c7d8"
TAB = "f00d0a9b2d3e4f5061728394a5b6c717"
SHOP = "https://shop.example"

CAMPAIGNS = """
campaigns:
  - id: summer
    status: draft
    priority: 10
    placement: popup
    trigger: {exit_intent: true}
    audience: {visitor.identified: true}
    preview_page: /sale
    experiment:
      holdout: 0.5
      variants:
        - {id: a}
        - {id: b, widget: {kind: popup, headline: {en: "B side"}}}
    widget: {kind: popup, headline: {en: "A side"}}
  - id: live-popup
    priority: 5
    placement: popup
    widget: {kind: popup, headline: {en: "live"}}
  - id: live-bar
    placement: bar
    widget: {kind: bar, headline: {en: "bar"}}
  - id: steps
    status: paused
    placement: bar-top
    trigger: {event: signup}
    progressive:
      - {until: close, widget: {kind: bar, headline: {en: "one"}}}
      - {widget: {kind: bar, headline: {en: "two"}}}
"""


def make_site(tmp_path: Path, origins: str = f"['{SHOP}']") -> Site:
    folder = tmp_path / "shop"
    folder.mkdir(parents=True)
    (folder / "site.yaml").write_text(f"site: {{id: shop, allowed_origins: {origins}}}\n")
    (folder / "campaigns.yaml").write_text(textwrap.dedent(CAMPAIGNS))
    return load_site(folder)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


CTX = VisitContext(VISITOR, TAB, url=f"{SHOP}/")


# --- tokens --------------------------------------------------------------------------


def test_a_token_round_trips_and_reads_as_what_it_grants(site: Site) -> None:
    grant, token = preview.mint(SECRET, site, "summer", now=NOW, variant="b")
    assert grant == Grant("shop", "summer", "b", None, int(NOW) + 30 * 60)
    assert token.startswith(f"shop.summer.b.-.{int(NOW) + 1800}.")
    assert preview.verify(token, SECRET, "shop", NOW + 60) == grant


def test_steps_are_counted_from_zero_in_the_token(site: Site) -> None:
    grant, token = preview.mint(SECRET, site, "steps", now=NOW, step=1, ttl_min=5)
    assert token.split(".")[3] == "1" and grant.expires == int(NOW) + 300
    assert preview.verify(token, SECRET, "shop", NOW).step == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"), "signature does not match"),
        (lambda t: t.replace("summer", "steps", 1), "signature does not match"),
        (lambda t: t.replace(".b.", ".a.", 1), "signature does not match"),
        (lambda t: "x" + t, "signature does not match"),
        (lambda t: t.replace(".", "|"), "malformed preview token"),
        (lambda t: t + "0", "malformed preview token"),
        (lambda t: "", "malformed preview token"),
    ],
)
def test_a_changed_token_is_refused(site: Site, change: object, message: str) -> None:
    _, token = preview.mint(SECRET, site, "summer", now=NOW, variant="b")
    with pytest.raises(PreviewRefused, match=message):
        preview.verify(change(token), SECRET, "shop", NOW)  # type: ignore[operator]


def test_expired_foreign_and_unsigned_tokens_are_refused(site: Site) -> None:
    _, token = preview.mint(SECRET, site, "summer", now=NOW)
    with pytest.raises(PreviewRefused, match="expired 10 min ago"):
        preview.verify(token, SECRET, "shop", NOW + 40 * 60)
    with pytest.raises(PreviewRefused, match="for site 'shop', not 'other'"):
        preview.verify(token, SECRET, "other", NOW)
    with pytest.raises(PreviewRefused, match="signature does not match"):
        preview.verify(token, b"another-admin-token-of-32-chars!", "shop", NOW)
    with pytest.raises(PreviewRefused, match="previews are off"):
        preview.verify(token, None, "shop", NOW)
    assert PreviewRefused("x").code == "preview_refused"


def test_a_token_longer_than_the_maximum_is_refused_even_when_signed() -> None:
    grant = Grant("shop", "summer", None, None, int(NOW) + (preview.MAX_TTL_MIN + 10) * 60)
    with pytest.raises(PreviewRefused, match="longer than 240 min"):
        preview.verify(preview.sign(SECRET, grant), SECRET, "shop", NOW)


def test_minting_checks_the_campaign_variant_step_and_lifetime(site: Site) -> None:
    with pytest.raises(ValueError, match="'nope' is not in site shop"):
        preview.mint(SECRET, site, "nope", now=NOW)
    with pytest.raises(ValueError, match=r"no variant 'c' \(it has a, b\)"):
        preview.mint(SECRET, site, "summer", now=NOW, variant="c")
    with pytest.raises(ValueError, match=r"has 1 step$"):
        preview.mint(SECRET, site, "summer", now=NOW, step=1)
    with pytest.raises(ValueError, match="has 2 steps"):
        preview.mint(SECRET, site, "steps", now=NOW, step=2)
    with pytest.raises(ValueError, match="at most 240 minutes"):
        preview.mint(SECRET, site, "summer", now=NOW, ttl_min=241)
    with pytest.raises(ValueError, match="at most 240 minutes"):
        preview.mint(SECRET, site, "summer", now=NOW, ttl_min=0)


def test_a_grant_the_configuration_no_longer_has_is_refused(site: Site) -> None:
    gone = Grant("shop", "winter", None, None, int(NOW) + 60)
    assert preview.refusal(gone, site) == "campaign 'winter' is not in site shop's configuration"
    assert preview.refusal(Grant("shop", "summer", "b", 0, 0), site) is None


# --- links ---------------------------------------------------------------------------


def test_links_open_the_campaigns_preview_page_on_the_first_origin(
    site: Site, tmp_path: Path
) -> None:
    summer = site.decisioning.by_id["summer"]
    assert preview.page_for(summer, site) == f"{SHOP}/sale"
    assert preview.page_for(site.decisioning.by_id["live-bar"], site) == f"{SHOP}/"
    assert preview.page_for(summer, site, "/p/lamp?x=1") == f"{SHOP}/p/lamp?x=1"
    assert preview.page_for(summer, site, "http://other.example/a") == "http://other.example/a"
    with pytest.raises(ValueError, match="neither a URL nor a path"):
        preview.page_for(summer, site, "sale")
    bare = make_site(tmp_path / "bare", origins="[]")
    with pytest.raises(ValueError, match="lists no allowed_origins"):
        preview.page_for(bare.decisioning.by_id["summer"], bare)


def test_a_link_adds_the_token_and_keeps_the_pages_query() -> None:
    url = preview.link(f"{SHOP}/p?utm_source=x&edge_preview=old#top", "shop.summer.-.-.1.ab")
    parts = urlsplit(url)
    assert parse_qs(parts.query) == {"utm_source": ["x"], "edge_preview": ["shop.summer.-.-.1.ab"]}
    assert parts.fragment == "top" and url.startswith(f"{SHOP}/p?")


# --- the decision --------------------------------------------------------------------


def grant(campaign: str, variant: str | None = None, step: int | None = None) -> Grant:
    return Grant("shop", campaign, variant, step, int(NOW) + 60)


def test_a_draft_is_decided_for_no_one_without_a_preview(site: Site) -> None:
    live = decide(None, CTX, site, NOW, page=Page(url=f"{SHOP}/"), explain=True)
    assert [d.campaign for d in live.items] == ["live-popup", "live-bar"]
    assert not any("summer" in line for line in live.trace)


def test_the_preview_shows_the_draft_whatever_its_audience_trigger_and_holdout(
    site: Site,
) -> None:
    result = preview.decide_preview(grant("summer", "b"), None, CTX, site, NOW)
    first = result.items[0]
    assert (first.campaign, first.variant, first.placement) == ("summer", "b", "popup")
    assert first.step == 0
    assert first.widget == {"kind": "popup", "headline": {"en": "B side"}}
    assert first.trigger == {"type": "page_view", "value": True}  # at once, not on exit intent
    assert first.why == "preview of variant b"
    # The pop-up the engine would show is pushed out; the bar stays.
    assert [d.campaign for d in result.items] == ["summer", "live-bar"]
    assert result.trace[:3] == (
        "preview: campaign summer shown in popup (preview of variant b); "
        f"not checked: {preview.NOT_CHECKED}",
        "campaign summer: status draft: shown to no one else",
        "campaign summer, if it were live: audience failed at visitor.identified "
        "(= True, was False)",
    )
    assert (
        "campaign live-popup: shown in popup (audience matched); the preview takes popup: "
        "not shown" in result.trace
    )
    assert "campaign live-bar: shown in bar (audience matched)" in result.trace


def test_without_a_variant_or_step_the_preview_shows_the_first(site: Site) -> None:
    first = preview.decide_preview(grant("summer"), None, CTX, site, NOW).items[0]
    assert (first.variant, first.step) == ("a", 0)
    assert first.widget == {"kind": "popup", "headline": {"en": "A side"}}


def test_a_step_of_a_paused_progressive_campaign_waiting_for_an_event(site: Site) -> None:
    result = preview.decide_preview(grant("steps", step=1), None, CTX, site, NOW)
    first = result.items[0]
    assert (first.campaign, first.placement, first.step) == ("steps", "bar-top", 1)
    assert first.widget == {"kind": "bar", "headline": {"en": "two"}}
    assert first.why == "preview of variant a, step 2 of 2"
    assert "campaign steps: status paused: shown to no one else" in result.trace
    assert "campaign steps, if it were live: waits for event 'signup'" in result.trace
    # nothing else takes bar-top: the live decisions are all there
    assert [d.campaign for d in result.items] == ["steps", "live-popup", "live-bar"]


def test_an_active_campaign_is_traced_as_live_and_not_shown_twice(site: Site) -> None:
    result = preview.decide_preview(
        grant("live-bar"), None, CTX, site, NOW, triggers=("page_view", "event:signup")
    )
    assert [d.campaign for d in result.items] == ["live-bar", "live-popup"]
    assert "campaign live-bar, live: shown in bar (audience matched)" in result.trace
    assert "on event:signup: campaign live-bar, live: not triggered by this event" in result.trace
    assert not any("shown to no one else" in line for line in result.trace)


def test_deciding_a_preview_changes_nothing_it_is_given(site: Site) -> None:
    before = site.decisioning
    preview.decide_preview(grant("summer"), None, CTX, site, NOW)
    assert site.decisioning is before
    assert [c.id for c in site.decisioning.campaigns] == ["live-popup", "live-bar"]
    assert site.decisioning.by_id["summer"].status == "draft"


# --- edge preview (the command) ------------------------------------------------------

ADMIN = {"EDGE_ADMIN_TOKEN": SECRET.decode()}


def run_preview(
    monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None
) -> int:
    monkeypatch.delenv("EDGE_ADMIN_TOKEN", raising=False)
    for key, value in (ADMIN if env is None else env).items():
        monkeypatch.setenv(key, value)
    return main(["preview", "--profiles", str(PROFILES), *args])


def test_edge_preview_prints_a_link_to_the_demos_draft(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = load_site(PROFILES / "demo")
    assert demo.decisioning.by_id["spring-sale"].status == "draft"
    assert "spring-sale" not in [c.id for c in demo.decisioning.campaigns]
    started = time.time()
    assert (
        run_preview(monkeypatch, "--site", "demo", "--campaign", "spring-sale", "--variant", "b")
        == 0
    )
    out, err = capsys.readouterr()
    url = out.strip()
    assert url.startswith(
        "http://127.0.0.1:8000/demo/c/textiles?edge_preview=demo.spring-sale.b.-."
    )
    grant = preview.verify(url.split("edge_preview=")[1], SECRET, "demo", time.time())
    assert grant.variant == "b" and grant.step is None
    assert started + 30 * 60 - 1 <= grant.expires <= time.time() + 30 * 60
    assert "campaign spring-sale (draft), variant b, step 1 of 1" in err


def test_edge_preview_counts_steps_from_one_and_prints_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--site", "demo", "--campaign", "newsletter", "--step", "2", "--ttl-min", "5"]
    assert run_preview(monkeypatch, *args, "--page", "/demo/c/lighting", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["campaign"] == "newsletter" and answer["step"] == 1  # the second step
    assert answer["url"] == f"http://127.0.0.1:8000/demo/c/lighting?edge_preview={answer['token']}"
    assert answer["expires"] <= time.time() + 5 * 60


@pytest.mark.parametrize(
    ("args", "env", "status", "message"),
    [
        (["--campaign", "spring-sale"], {}, 2, "EDGE_ADMIN_TOKEN is not set"),
        (["--campaign", "spring-sale", "--step", "0"], None, 2, "--step counts from 1"),
        (["--campaign", "spring"], None, 1, "campaign 'spring' is not in site demo"),
        (["--campaign", "spring-sale", "--variant", "c"], None, 1, "has no variant 'c'"),
        (["--campaign", "spring-sale", "--ttl-min", "600"], None, 1, "at most 240 minutes"),
        (["--campaign", "spring-sale", "--page", "c/x"], None, 1, "neither a URL nor a path"),
    ],
)
def test_edge_preview_refuses_what_it_cannot_sign(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str] | None,
    status: int,
    message: str,
) -> None:
    assert run_preview(monkeypatch, "--site", "demo", *args, env=env) == status
    out, err = capsys.readouterr()
    assert out == "" and message in err
