"""Unit tests for edge/config/sites.py, edge/config/yamlsource.py and edge/config/registry.py."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.config.registry import SiteRegistry
from edge.config.sites import Site, load_site, load_sites
from edge.core.identity import hash_email
from edge.core.profile import Bounds
from edge.errors import ConfigError

DEMO = Path(__file__).resolve().parents[2] / "profiles" / "demo"
GOOD = """\
site:
  id: shop
  name: Shop
  allowed_origins:
    - https://shop.example
    - https://WWW.Shop.example/
  timezone: Europe/Warsaw
  tracking:
    session_timeout_min: 20
"""


def write_site(root: Path, files: dict[str, str | bytes], name: str = "shop") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in files.items():
        path = folder / file
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return folder


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_site(folder)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- the good case ----------------------------------------------------------------


def test_good_site_compiles(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD})
    site = load_site(folder)
    assert isinstance(site, Site)
    assert (site.id, site.name, site.folder) == ("shop", "Shop", folder)
    assert site.allowed_origins == frozenset({"https://shop.example", "https://www.shop.example"})
    assert site.hosts == frozenset({"shop.example", "www.shop.example"})
    assert site.timezone == ZoneInfo("Europe/Warsaw")
    assert (site.currency, site.locale) == ("EUR", "en")
    assert site.session_timeout_s == 1200.0
    assert site.anonymous_ttl_s == 90 * 86400
    assert site.identified_ttl_s is None
    assert site.token_max_age_s == 86400
    assert site.require_consent is False
    assert site.secret is None
    assert site.bounds == Bounds()
    assert len(site.version) == 12
    assert site.contact_key("A@B.co") == hash_email("a@b.co", site.salt)


def test_the_demo_site_loads() -> None:
    site = load_site(DEMO)
    assert site.id == "demo"
    assert site.name == "Lumen & Loom (demo shop)"
    assert site.hosts == frozenset({"127.0.0.1", "localhost"})
    assert site.timezone == ZoneInfo("Europe/Warsaw")
    assert site.session_timeout_s == 1800.0
    sites, problems = load_sites(DEMO.parent)
    assert problems == {}
    assert sites["demo"].version == site.version


def test_secret_and_keep_email_come_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_TEST_SHOP_SECRET", "t0p")
    text = GOOD + "  identity:\n    secret_env: EDGE_TEST_SHOP_SECRET\n    keep_email: true\n"
    site = load_site(write_site(tmp_path, {"site.yaml": text}))
    assert site.secret == b"t0p"
    assert site.contact_key(" Ann@Example.com") == "e:ann@example.com"


def test_version_changes_when_a_file_changes(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD})
    first = load_site(folder).version
    assert load_site(folder).version == first  # stable while nothing changes
    (folder / "site.yaml").write_text(GOOD.replace("name: Shop", "name: Shop 2"))
    second = load_site(folder).version
    assert second != first
    (folder / "more.yaml").write_text("# nothing yet\n")
    assert load_site(folder).version not in {first, second}


# --- mistakes name file:line: path: message ------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD + "campains:\n  - x\n"})
    assert problems_of(folder) == [f"{folder / 'site.yaml'}:10: campains: unknown key 'campains'"]


def test_unknown_key_inside_site(tmp_path: Path) -> None:
    text = GOOD.replace("  timezone:", "  colour: red\n  timezone:")
    folder = write_site(tmp_path, {"site.yaml": text})
    assert problems_of(folder) == [f"{folder / 'site.yaml'}:7: site.colour: unknown key 'colour'"]


@pytest.mark.parametrize("bad_id", ["Shop", "-shop", "shop!", "a" * 64, '""'])
def test_bad_site_id(tmp_path: Path, bad_id: str) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD.replace("id: shop", f"id: {bad_id}")})
    assert problems_of(folder) == [
        f"{folder / 'site.yaml'}:2: site.id: String should match pattern "
        "'^[a-z0-9][a-z0-9_-]{0,62}$'"
    ]


def test_site_id_must_match_the_folder_name(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD.replace("id: shop", "id: other")})
    assert problems_of(folder) == [
        f"{folder / 'site.yaml'}:2: site.id: 'other' must equal the folder name 'shop'"
    ]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/Warsav", "../../etc/passwd"])
def test_invalid_time_zone(tmp_path: Path, zone: str) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD.replace("Europe/Warsaw", zone)})
    assert problems_of(folder) == [
        f"{folder / 'site.yaml'}:7: site.timezone: unknown time zone {zone!r}"
    ]


@pytest.mark.parametrize(
    "origin", ["https://shop.example/path", "ftp://shop.example", "shop.example", "https://"]
)
def test_origin_that_is_not_an_origin(tmp_path: Path, origin: str) -> None:
    text = GOOD.replace("    - https://shop.example\n", f"    - {origin}\n")
    folder = write_site(tmp_path, {"site.yaml": text})
    assert problems_of(folder) == [
        f"{folder / 'site.yaml'}:4: site.allowed_origins: "
        f"{origin!r} is not an origin like https://shop.example"
    ]


@pytest.mark.parametrize(
    ("value", "bound"), [("-5", "greater"), ("0", "greater"), ("1441", "less")]
)
def test_session_timeout_out_of_range(tmp_path: Path, value: str, bound: str) -> None:
    text = GOOD.replace("session_timeout_min: 20", f"session_timeout_min: {value}")
    folder = write_site(tmp_path, {"site.yaml": text})
    limit = "1" if bound == "greater" else "1440"
    assert problems_of(folder) == [
        f"{folder / 'site.yaml'}:9: site.tracking.session_timeout_min: "
        f"Input should be {bound} than or equal to {limit}"
    ]


def test_wrong_type(tmp_path: Path) -> None:
    text = GOOD + "    require_consent: maybe\n"
    folder = write_site(tmp_path, {"site.yaml": text})
    assert problems_of(folder) == [
        f"{folder / 'site.yaml'}:10: site.tracking.require_consent: "
        "Input should be a valid boolean, unable to interpret input"
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        "site:\n"  # 1
        "  id: shop\n"  # 2
        "  timezone: Nowhere/Land\n"  # 3
        "  colour: red\n"  # 4
        "  tracking:\n"  # 5
        "    session_timeout_min: -5\n"  # 6
        "    require_consent: maybe\n"  # 7
        "extra: 1\n"  # 8
    )
    folder = write_site(tmp_path, {"site.yaml": text})
    file = folder / "site.yaml"
    assert sorted(problems_of(folder)) == sorted(
        [
            f"{file}:3: site.timezone: unknown time zone 'Nowhere/Land'",
            f"{file}:4: site.colour: unknown key 'colour'",
            f"{file}:6: site.tracking.session_timeout_min: Input should be greater than or "
            "equal to 1",
            f"{file}:7: site.tracking.require_consent: Input should be a valid boolean, "
            "unable to interpret input",
            f"{file}:8: extra: unknown key 'extra'",
        ]
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("site:\n  id: shop\n\tname: y\n", 3),
        ("site:\n  id: shop\n name: x\n", 3),
        ("site:\n  id: shop\n  tracking: {a: 1\n  name: y\n", 4),
    ],
    ids=["tab", "indent", "unclosed-flow"],
)
def test_invalid_yaml_names_the_line_of_the_syntax_error(
    tmp_path: Path, text: str, line: int
) -> None:
    folder = write_site(tmp_path, {"site.yaml": text})
    [problem] = problems_of(folder)
    assert problem.startswith(f"{folder / 'site.yaml'}:{line}: not valid YAML: ")


def test_a_top_level_key_defined_in_two_files(tmp_path: Path) -> None:
    folder = write_site(
        tmp_path, {"a.yaml": GOOD, "b.yaml": "# more settings\n\nsite:\n  name: Other\n"}
    )
    assert problems_of(folder) == [
        f"{folder / 'b.yaml'}:3: site: also defined at {folder / 'a.yaml'}:1"
    ]


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD, "z.yaml": "- 1\n- 2\n"})
    assert problems_of(folder) == [f"{folder / 'z.yaml'}:1: the file must be a mapping of sections"]


def test_empty_files_are_skipped_and_no_files_is_a_problem(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD, "empty.yaml": "# nothing\n"})
    assert load_site(folder).id == "shop"
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert problems_of(empty) == [f"{empty}: no *.yaml files"]


def test_missing_site_section(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": "# only a comment\n", "x.yaml": "other: 1\n"})
    problems = problems_of(folder)
    assert f"{folder / 'x.yaml'}:1: other: unknown key 'other'" in problems
    assert f"{folder / 'x.yaml'}: site: Field required" in problems


# --- safe loading ----------------------------------------------------------------------


def python_tag(marker: Path) -> str:
    return GOOD + f'evil: !!python/object/apply:os.system ["touch {marker}"]\n'


def test_a_python_tag_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = write_site(tmp_path, {"site.yaml": python_tag(marker)})
    with pytest.raises(Exception, match="python/object/apply") as caught:
        load_site(folder)
    assert not isinstance(caught.value, AssertionError)
    assert not marker.exists()
    assert not os.path.exists("pwned")


def test_a_python_tag_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = write_site(tmp_path, {"site.yaml": python_tag(marker)})
    [problem] = problems_of(folder)
    assert problem.startswith(f"{folder / 'site.yaml'}:10: ")
    assert not marker.exists()


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD.encode() + b"  locale: \xff\n"})
    [problem] = problems_of(folder)
    assert problem.startswith(f"{folder / 'site.yaml'}")


# --- the registry: hot reload keeps the last good site -----------------------------


def test_registry_good_bad_good(tmp_path: Path) -> None:
    registry = SiteRegistry(tmp_path)
    folder = write_site(tmp_path, {"site.yaml": GOOD})
    assert registry.reload() is True
    good = registry.get("shop")
    assert good is not None
    assert good.name == "Shop"
    assert registry.problems == {}
    assert registry.reload() is False  # nothing changed
    assert registry.reloads == 1

    (folder / "site.yaml").write_text(GOOD + "    require_consent: maybe\n")
    assert registry.reload() is True
    assert registry.get("shop") is good  # still serving the last good configuration
    assert registry.problems == {
        "shop": [
            f"{folder / 'site.yaml'}:10: site.tracking.require_consent: "
            "Input should be a valid boolean, unable to interpret input"
        ]
    }

    (folder / "site.yaml").write_text(GOOD.replace("name: Shop", "name: Shop Again"))
    assert registry.reload() is True
    fixed = registry.get("shop")
    assert fixed is not None
    assert fixed is not good
    assert fixed.name == "Shop Again"
    assert fixed.version != good.version
    assert registry.problems == {}
    assert registry.reloads == 3


def test_registry_bad_site_is_not_served_and_removed_sites_go(tmp_path: Path) -> None:
    registry = SiteRegistry(tmp_path)
    write_site(tmp_path, {"site.yaml": GOOD})
    write_site(tmp_path, {"site.yaml": GOOD.replace("id: shop", "id: wrong")}, name="broken")
    (tmp_path / ".hidden").mkdir()
    assert registry.reload() is True
    assert set(registry.sites) == {"shop"}
    assert registry.get("broken") is None
    assert registry.get(None) is None
    assert list(registry.problems) == ["broken"]
    (tmp_path / "shop" / "site.yaml").unlink()
    (tmp_path / "shop").rmdir()
    assert registry.reload() is True
    assert registry.get("shop") is None
    assert set(registry.sites) == set()


def test_registry_without_a_profiles_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profiles folder not found"):
        SiteRegistry(tmp_path / "missing").reload()


def test_registry_keeps_serving_when_a_python_tag_appears(tmp_path: Path) -> None:
    registry = SiteRegistry(tmp_path)
    folder = write_site(tmp_path, {"site.yaml": GOOD})
    registry.reload()
    good = registry.get("shop")
    (folder / "site.yaml").write_text(python_tag(tmp_path / "pwned"))
    assert registry.reload() is True
    assert registry.get("shop") is good
    assert list(registry.problems) == ["shop"]


# --- nothing a file holds stops loading: every failure is a problem line ---------------

HTML_CAMPAIGN = """\
campaigns:
  - id: custom
    placement: hero-banner
    widget: {kind: html, template: custom.html}
"""


def with_template(tmp_path: Path, template: str) -> Path:
    folder = write_site(tmp_path, {"site.yaml": GOOD, "campaigns.yaml": HTML_CAMPAIGN})
    (folder / "templates").mkdir()
    (folder / "templates" / "custom.html").write_text(template)
    return folder


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% for x in range(1000000) %}x{% endfor %}", "range() of more than"),
        ("{{ 'x' * 10**9 }}", "a template value of more than"),
        ("{{ 'x'|center(10**9) }}", "a template value of more than"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}", "time"),
    ],
    ids=["overflow", "memory", "center", "recursion", "zero-division", "loops"],
)
def test_a_template_that_raises_anything_is_a_problem_of_its_widget(
    tmp_path: Path, template: str, message: str
) -> None:
    folder = with_template(tmp_path, template)
    [problem] = problems_of(folder)
    assert problem.startswith(f"{folder / 'campaigns.yaml'}:4: campaigns[0].widget: template: ")
    assert message in problem


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_a_problem_with_file_and_line(tmp_path: Path) -> None:
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    folder = write_site(tmp_path, {"site.yaml": GOOD, "bomb.yaml": "\n".join(levels) + "\n"})
    assert problems_of(folder) == [
        f"{folder / 'bomb.yaml'}:6: stands for more than 200000 values once its aliases "
        "are expanded"
    ]


def test_a_time_zone_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    zone = "Europe/" + "x" * 5000  # ZoneInfo raises OSError (name too long), not ValueError
    folder = write_site(tmp_path, {"site.yaml": GOOD.replace("Europe/Warsaw", zone)})
    [problem] = problems_of(folder)
    assert problem.startswith(f"{folder / 'site.yaml'}:7: site.timezone: unknown time zone ")


def test_a_catalog_nested_too_deeply_for_the_json_parser(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD, "catalog.json": "[" * 100_000})
    [problem] = problems_of(folder)
    assert problem.startswith(f"{folder / 'catalog.json'}: RecursionError: ")


@pytest.mark.timeout(10)
def test_a_catalog_that_is_a_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    folder = write_site(tmp_path, {"site.yaml": GOOD})
    os.mkfifo(folder / "catalog.json")
    assert problems_of(folder) == [f"{folder / 'catalog.json'}: not a regular file"]


def test_a_step_that_raises_something_unexpected_is_still_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug,\nover two lines")

    monkeypatch.setattr("edge.config.sites.compile_decisioning", broken)
    folder = write_site(tmp_path, {"site.yaml": GOOD})
    assert problems_of(folder) == [
        f"{folder / 'site.yaml'}: campaigns: RuntimeError: a bug, over two lines"
    ]
    monkeypatch.setattr("edge.config.sites.compile_site", broken)
    assert problems_of(folder) == [f"{folder}: RuntimeError: a bug, over two lines"]


def test_a_flood_of_problems_is_reported_in_part(tmp_path: Path) -> None:
    extra = "".join(f"  unknown{i}: 1\n" for i in range(300))
    folder = write_site(tmp_path, {"site.yaml": GOOD.replace("site:\n", "site:\n" + extra)})
    problems = problems_of(folder)
    assert len(problems) == 201
    assert problems[0] == f"{folder / 'site.yaml'}:2: site.unknown0: unknown key 'unknown0'"
    assert problems[-1] == "... and 100 more problems"


@pytest.mark.timeout(10)
def test_registry_keeps_the_last_good_site_when_a_bomb_arrives(tmp_path: Path) -> None:
    registry = SiteRegistry(tmp_path)
    folder = with_template(tmp_path, "<p>{{ t('headline') }}</p>")
    registry.reload()
    good = registry.get("shop")
    assert good is not None
    (folder / "templates" / "custom.html").write_text("{% for x in range(10**6) %}{% endfor %}")
    (folder / "bomb.yaml").write_text("a: &a [*a]\n")
    assert registry.reload() is True
    assert registry.get("shop") is good
    assert registry.problems == {
        "shop": [f"{folder / 'bomb.yaml'}:1: an alias names the value that contains it"]
    }
    (folder / "bomb.yaml").unlink()
    assert registry.reload() is True
    assert registry.get("shop") is good
    [problem] = registry.problems["shop"]
    assert "template: TemplateLimit: range() of more than" in problem
    assert registry.last_reload == "ok"  # the reload worked; the site is what failed


def test_registry_reports_a_reload_that_failed_as_a_whole(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    registry = SiteRegistry(profiles)
    with pytest.raises(ConfigError):
        registry.reload()
    assert registry.report() == (
        {},
        {"last_reload": "failed", "error": f"{profiles}: profiles folder not found"},
    )
    write_site(profiles, {"site.yaml": GOOD})
    assert registry.reload() is True
    assert registry.report() == ({}, {"last_reload": "ok", "error": None})


def test_a_coupon_pool_file_over_its_size_limit_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge.widgets.check.MAX_POOL_BYTES", 1024)
    campaigns = (
        "campaigns:\n  - id: launch\n    placement: popup\n    widget:\n      kind: coupon\n"
        "      headline: hi\n      coupon: {source: pool, file: codes.txt}\n"
    )
    folder = write_site(tmp_path, {"site.yaml": GOOD, "campaigns.yaml": campaigns})
    (folder / "coupons").mkdir()
    (folder / "coupons" / "codes.txt").write_text("\n".join(f"C{i:06d}" for i in range(500)))
    [problem] = problems_of(folder)
    assert "campaigns.yaml:" in problem
    assert "codes.txt has 3999 bytes, over the limit of 1024: split the pool" in problem
