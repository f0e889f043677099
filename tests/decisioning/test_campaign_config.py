"""Configuration mistakes in campaigns and segments: every one is reported by
``load_site`` as ``<file>:<line>: <key path>: <message>``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.config.sites import Site, load_site
from edge.errors import ConfigError

SITE_YAML = "site: {id: shop, timezone: Europe/Warsaw}\n"


def write_site(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "site.yaml").write_text(SITE_YAML)
    for name, text in files.items():
        (folder / f"{name.replace('_', '-')}.yaml").write_text(textwrap.dedent(text))
    return folder


def problems(tmp_path: Path, campaigns: str, **more: str) -> tuple[Path, list[str]]:
    folder = write_site(tmp_path, campaigns=campaigns, **more)
    with pytest.raises(ConfigError) as caught:
        load_site(folder)
    return folder / "campaigns.yaml", caught.value.problems


def only_problem(tmp_path: Path, campaigns: str) -> str:
    path, found = problems(tmp_path, campaigns)
    assert len(found) == 1, found
    prefix = f"{path}:"
    assert found[0].startswith(prefix), found
    return found[0].removeprefix(prefix)


def test_a_valid_file_loads(tmp_path: Path) -> None:
    folder = write_site(
        tmp_path,
        campaigns="""\
        segments:
          - id: engaged
            condition: {session.pageviews: {$gte: 3}}
        campaigns:
          - id: ok
            placement: bar-top
            trigger: {delay_s: 2}
            audience:
              segments: {$in: [engaged]}
              page.url: {$regex: "^https://"}
            schedule: {start: 2025-01-01, end: 2025-02-01, hours: [9, 21], weekdays: [mon]}
            experiment: {holdout: 0.1, variants: [{id: x}, {id: y, weight: 2}]}
            widget: {kind: bar}
        """,
    )
    site: Site = load_site(folder)
    assert [c.id for c in site.decisioning.campaigns] == ["ok"]
    [ok] = site.decisioning.campaigns
    assert ok.attribution_days == 7  # the default window
    assert ok.shares() == pytest.approx({"x": 0.3, "y": 0.6, "holdout": 0.1})


# --- condition problems (found when compiling) ------------------------------------


def test_unknown_operator(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: first
        placement: bar
        widget: {kind: bar}
      - id: second
        placement: bar
        audience:
          session.pageviews: {$gtee: 3}
        widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == (
        "8: campaigns[1].audience['session.pageviews'].$gtee: unknown operator '$gtee'"
    )


def test_unknown_operator_inside_or(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        audience:
          $or:
            - visitor.identified: true
            - session.pageviews: {$gtee: 3}
        widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == (
        "7: campaigns[0].audience.$or[1]['session.pageviews'].$gtee: unknown operator '$gtee'"
    )


def test_unknown_attribute_with_suggestion(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        audience:
          session.pageview: {$gte: 3}
        widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == (
        "5: campaigns[0].audience['session.pageview']: unknown attribute "
        "'session.pageview' (did you mean session.pageviews?)"
    )


def test_unknown_namespace(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        audience: {sesion.pageviews: 3}
        widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == (
        "4: campaigns[0].audience['sesion.pageviews']: unknown attribute 'sesion.pageviews': "
        "namespaces are visitor, session, first_touch, last_touch, page, device, cart, "
        "orders, viewed, segments, "
        "campaigns, events, time, geo, rfm, score, interests, lifecycle, props, event"
    )


def test_unknown_segment_in_an_audience(tmp_path: Path) -> None:
    text = """\
    segments:
      - id: engaged
        condition: {session.pageviews: {$gte: 3}}
    campaigns:
      - id: c
        placement: bar
        audience:
          segments: {$in: [engaged, enagged]}
        widget: {kind: bar}
    """
    assert (
        only_problem(tmp_path, text)
        == "8: campaigns[0].audience.segments: unknown segment 'enagged'"
    )


def test_a_segment_cannot_depend_on_segments(tmp_path: Path) -> None:
    text = """\
    segments:
      - id: base
        condition: {orders.count: {$gte: 1}}
      - id: derived
        condition:
          segments: {$in: [base]}
    campaigns: []
    """
    assert only_problem(tmp_path, text) == (
        "6: segments[1].condition.segments: a segment cannot depend on segments"
    )


def test_invalid_regex(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        audience:
          page.url: {$regex: "shoes("}
        widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == (
        "5: campaigns[0].audience['page.url'].$regex: invalid regular expression 'shoes(': "
        "missing ), unterminated subpattern at position 5"
    )


def test_a_nested_condition_that_is_not_a_mapping(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        audience:
          $and:
            - visitor.identified: true
            - 42
        widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == (
        "7: campaigns[0].audience.$and[1]: a condition must be a mapping, not int 42"
    )


def test_an_audience_that_is_not_a_mapping(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        audience:
          - session.pageviews: 3
        widget: {kind: bar}
    """
    assert (
        only_problem(tmp_path, text)
        == "4: campaigns[0].audience: Input should be a valid dictionary"
    )


def test_duplicate_campaign_id(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: sale
        placement: bar
        widget: {kind: bar}
      - id: other
        placement: bar
        widget: {kind: bar}
      - id: sale
        placement: popup
        widget: {kind: popup}
    """
    assert only_problem(tmp_path, text) == "8: campaigns[2].id: id 'sale' is used twice"


# --- shape problems (found by validation) ------------------------------------------


def test_unknown_key_in_a_campaign(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        frequncy: {per_session: 1}
        widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == "4: campaigns[0].frequncy: unknown key 'frequncy'"


def test_trigger_with_two_kinds(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: popup
        widget: {kind: popup}
        trigger:
          exit_intent: true
          delay_s: 5
    """
    assert only_problem(tmp_path, text) == (
        "5: campaigns[0].trigger: a trigger has exactly one of page_view, delay_s, scroll_pct, "
        "exit_intent, inactivity_s, event"
    )


def test_widget_kind_not_allowed(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: popup
        widget:
          kind: modal
          headline: {en: hi}
    """
    assert only_problem(tmp_path, text) == (
        "5: campaigns[0].widget.kind: Input should be 'popup', 'bar', 'coupon', "
        "'recommendations', 'banner' or 'html'"
    )


def test_schedule_end_before_start(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        widget: {kind: bar}
        schedule:
          start: 2025-06-01T00:00:00
          end: 2025-05-01T00:00:00
    """
    assert only_problem(tmp_path, text) == "5: campaigns[0].schedule: end must be after start"


def test_schedule_hours_backwards(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        widget: {kind: bar}
        schedule: {hours: [21, 9]}
    """
    assert only_problem(tmp_path, text) == (
        "5: campaigns[0].schedule: hours is [from, to) with from < to, e.g. [9, 21]"
    )


def test_progressive_with_variants(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        progressive:
          - widget: {kind: bar}
            until: close
          - widget: {kind: bar}
        experiment:
          variants: [{id: x}, {id: y}]
    """
    assert only_problem(tmp_path, text) == (
        "2: campaigns[0]: variants of a progressive campaign are not supported; "
        "use a holdout, or two campaigns"
    )


def test_variant_id_holdout_is_reserved(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        widget: {kind: bar}
        experiment:
          variants:
            - id: a
            - id: holdout
    """
    assert only_problem(tmp_path, text) == (
        "5: campaigns[0].experiment: 'holdout' is reserved for the holdout group"
    )


def test_holdout_share_out_of_range(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        widget: {kind: bar}
        experiment:
          holdout: 1.5
    """
    assert only_problem(tmp_path, text) == (
        "6: campaigns[0].experiment.holdout: Input should be less than 1"
    )


def test_attribution_window(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        widget: {kind: bar}
        experiment: {attribution_days: 0.5}
    """
    [c] = load_site(write_site(tmp_path, campaigns=text)).decisioning.campaigns
    assert c.attribution_days == 0.5 and c.shares() == {"a": 1.0}
    (tmp_path / "too-long").mkdir()
    too_long = text.replace("0.5", "91")
    assert only_problem(tmp_path / "too-long", too_long) == (
        "5: campaigns[0].experiment.attribution_days: Input should be less than or equal to 90"
    )


def test_placement_with_a_space(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: hero banner
        widget: {kind: banner}
    """
    assert only_problem(tmp_path, text) == (
        "3: campaigns[0].placement: String should match pattern "
        "'^(popup|bar|bar-top|bar-bottom|[a-z0-9][a-z0-9_-]{0,62})$'"
    )


def test_step_with_two_ways_to_advance(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        progressive:
          - widget: {kind: bar}
            until: close
            until_visits: 2
    """
    assert only_problem(tmp_path, text) == (
        "5: campaigns[0].progressive[0]: a step advances on 'until' or on 'until_visits', not both"
    )


def test_widget_and_progressive_together(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: c
        placement: bar
        widget: {kind: bar}
        progressive:
          - widget: {kind: bar}
    """
    assert only_problem(tmp_path, text) == (
        "2: campaigns[0]: a campaign has either 'widget' or 'progressive' steps"
    )


def test_delay_zero_is_a_valid_trigger(tmp_path: Path) -> None:
    folder = write_site(
        tmp_path,
        campaigns="""\
        campaigns:
          - id: c
            placement: popup
            trigger: {delay_s: 0}
            widget: {kind: popup}
        """,
    )
    site = load_site(folder)
    assert site.decisioning.by_id["c"].trigger.to_wire() == {"type": "delay_s", "value": 0}


# --- several problems, several files ---------------------------------------------------


def test_several_validation_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: a
        placement: bar
        frequncy: {per_session: 1}
        widget: {kind: modal}
      - id: b
        placement: bad place
        widget: {kind: bar}
        schedule: {hours: [21, 9]}
      - id: c
        placement: bar
        widget: {kind: bar}
        experiment: {holdout: 1.5}
    """
    path, found = problems(tmp_path, text)
    assert found == [
        f"{path}:5: campaigns[0].widget.kind: Input should be 'popup', 'bar', 'coupon', "
        "'recommendations', 'banner' or 'html'",
        f"{path}:4: campaigns[0].frequncy: unknown key 'frequncy'",
        f"{path}:7: campaigns[1].placement: String should match pattern "
        "'^(popup|bar|bar-top|bar-bottom|[a-z0-9][a-z0-9_-]{0,62})$'",
        f"{path}:9: campaigns[1].schedule: hours is [from, to) with from < to, e.g. [9, 21]",
        f"{path}:13: campaigns[2].experiment.holdout: Input should be less than 1",
    ]


def test_several_condition_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    text = """\
    campaigns:
      - id: a
        placement: bar
        audience:
          session.pageviews: {$gtee: 3}
          session.pageview: 3
          segments: {$in: [nope]}
        widget: {kind: bar}
      - id: a
        placement: bar
        audience:
          page.url: {$regex: "("}
        widget: {kind: bar}
    """
    path, found = problems(tmp_path, text)
    assert len(found) == 5
    assert found == [
        f"{path}:9: campaigns[1].id: id 'a' is used twice",
        f"{path}:5: campaigns[0].audience['session.pageviews'].$gtee: unknown operator '$gtee'",
        f"{path}:6: campaigns[0].audience['session.pageview']: unknown attribute "
        "'session.pageview' (did you mean session.pageviews?)",
        f"{path}:7: campaigns[0].audience.segments: unknown segment 'nope'",
        f"{path}:12: campaigns[1].audience['page.url'].$regex: invalid regular expression '(': "
        "missing ), unterminated subpattern at position 0",
    ]


def test_campaigns_in_two_files_are_concatenated(tmp_path: Path) -> None:
    folder = write_site(
        tmp_path,
        campaigns="""\
        campaigns:
          - id: first
            placement: bar
            priority: 1
            widget: {kind: bar}
        """,
        more_campaigns="""\
        campaigns:
          - id: second
            placement: popup
            priority: 2
            widget: {kind: popup}
        """,
    )
    site = load_site(folder)
    assert [c.id for c in site.decisioning.campaigns] == ["second", "first"]
    assert set(site.decisioning.by_id) == {"first", "second"}


def test_an_error_in_the_second_file_names_that_file_and_line(tmp_path: Path) -> None:
    path, found = problems(
        tmp_path,
        """\
        campaigns:
          - id: first
            placement: bar
            widget: {kind: bar}
        """,
        more_campaigns="""\
        # more campaigns, kept apart
        campaigns:
          - id: second
            placement: bar
            audience:
              session.pageviews: {$gtee: 3}
            widget: {kind: bar}
          - id: first
            placement: bar
            frequency: {per_sesion: 1}
            widget: {kind: bar}
        """,
    )
    more = path.with_name("more-campaigns.yaml")
    assert found == [f"{more}:10: campaigns[2].frequency.per_sesion: unknown key 'per_sesion'"]


def test_compile_errors_in_the_second_file_use_global_indices(tmp_path: Path) -> None:
    path, found = problems(
        tmp_path,
        """\
        campaigns:
          - id: first
            placement: bar
            widget: {kind: bar}
        """,
        more_campaigns="""\
        # more campaigns, kept apart
        campaigns:
          - id: second
            placement: bar
            audience:
              session.pageviews: {$gtee: 3}
            widget: {kind: bar}
          - id: first
            placement: bar
            widget: {kind: bar}
        """,
    )
    more = path.with_name("more-campaigns.yaml")
    assert found == [
        f"{more}:8: campaigns[2].id: id 'first' is used twice",
        f"{more}:6: campaigns[1].audience['session.pageviews'].$gtee: unknown operator '$gtee'",
    ]
