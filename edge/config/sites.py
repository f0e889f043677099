"""Site configuration: ``profiles/<site>/*.yaml`` validated into a ``Site``.

Every ``*.yaml`` file in a site's folder is read with ``safe_load`` semantics
and merged (see ``edge.config.yamlsource``), validated with pydantic, and compiled
into a frozen ``Site`` that the hot path reads without any parsing. Problems
are reported all at once, each as ``file:line: path: message``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.config.yamlsource import Located, YamlProblem, load_merged
from edge.core.automation import compile_automation
from edge.core.catalog import Catalog, Product, load_catalog
from edge.core.intelligence import compile_intelligence
from edge.core.profile import Bounds
from edge.core.properties import (
    EventsConfig,
    PropertiesConfig,
    compile_declarations,
)
from edge.core.site import Site
from edge.decisioning.campaigns import NO_CAMPAIGNS, Problems, compile_decisioning
from edge.decisioning.config import WIDGETS, DecisioningConfig, IntelligenceConfig
from edge.errors import ConfigError
from edge.widgets.check import check_widgets
from edge.widgets.render import Renderer

log = logging.getLogger(__name__)

SITE_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_PROBLEMS = 200  # problem lines reported per site; the rest are counted
MAX_PROBLEM_CHARS = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentityConfig(_Strict):
    secret_env: str | None = None  # name of the environment variable holding the secret
    salt_env: str | None = (
        None  # for claimed-email hashes; defaults to a key derived from the secret
    )
    keep_email: bool = False  # store claimed emails in clear (off: salted hash only)
    token_max_age_s: Annotated[int, Field(ge=60, le=30 * 86400)] = 86400


class TrackingConfig(_Strict):
    session_timeout_min: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    anonymous_ttl_days: Annotated[int, Field(ge=1, le=3650)] = 90
    identified_ttl_days: Annotated[int, Field(ge=1, le=36500)] | None = None  # None: keep
    require_consent: bool = False


class SiteSection(_Strict):
    id: Annotated[str, Field(pattern=SITE_ID)]
    name: str | None = None
    allowed_origins: list[str] = []
    timezone: str = "UTC"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    locale: str = "en"
    identity: IdentityConfig = IdentityConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if (
                parts.scheme not in {"http", "https"}
                or not parts.netloc
                or parts.path not in {"", "/"}
            ):
                raise ValueError(f"{origin!r} is not an origin like https://shop.example")
        return [o.rstrip("/").lower() for o in value]

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
            raise ValueError(f"unknown time zone {value[:100]!r}") from None
        return value


class SiteFile(DecisioningConfig):
    """Everything a site folder's YAML files may hold, merged."""

    site: SiteSection
    intelligence: IntelligenceConfig = IntelligenceConfig()
    # custom profile properties and custom event props (edge.core.properties)
    properties: PropertiesConfig = {}
    events: EventsConfig = {}


def load_site(folder: Path) -> Site:
    """The compiled site of ``folder``, or ``ConfigError`` with every problem.

    Nothing else escapes: whatever a file makes any step raise (YAML,
    validation, conditions, templates, coupon files, the catalog, a file
    vanishing half-way) becomes a problem line naming the file, so a file can
    never stop the process that loads it (docs/configuration.md, "Limits")."""
    try:
        return _load_site(folder)
    except ConfigError as exc:
        raise ConfigError(_capped(exc.problems)) from None
    except Exception as exc:  # a step not guarded below; still the folder's fault
        raise ConfigError([f"{folder}: {_brief(exc)}"]) from None


def _load_site(folder: Path) -> Site:
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError([f"{folder}: no *.yaml files"])
    try:
        located = load_merged(files)
    except YamlProblem as exc:
        raise ConfigError([str(exc)]) from None
    except OSError as exc:
        raise ConfigError([f"{folder}: {exc}"]) from None
    try:
        parsed = SiteFile.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, located)) from None
    except Exception as exc:  # a validator that raised something else
        raise ConfigError([f"{located.where(())}: {_brief(exc)}"]) from None
    if parsed.site.id != folder.name:
        raise ConfigError(
            [
                f"{located.where(('site', 'id'))}: site.id: {parsed.site.id!r} "
                f"must equal the folder name {folder.name!r}"
            ]
        )
    every = sorted(p for p in folder.rglob("*") if p.is_file())  # catalog, templates, pools too
    site = compile_site(parsed, folder, _version(every, folder))
    problems = Problems()
    try:
        decisioning = compile_decisioning(parsed, site.timezone, problems, site.declared)
    except Exception as exc:  # the compiler reports what it expects; this is the rest
        problems.add(("campaigns",), _brief(exc))
        decisioning = NO_CAMPAIGNS
    check_widgets(parsed.campaigns, site.renderer, folder, problems)  # catches its own
    if problems.items:
        raise ConfigError([f"{located.where(w)}: {dotted(w)}: {m}" for w, m in problems.items])
    catalog = _catalog(folder, site.currency)
    return replace(site, decisioning=decisioning, catalog=catalog)


def _catalog(folder: Path, currency: str) -> Catalog | None:
    files = [f for f in (folder / "catalog.json", folder / "catalog.csv") if f.exists()]
    for file in files:
        if not file.is_file():  # a FIFO would block the reader forever
            raise ConfigError([f"{file}: not a regular file"])
    try:
        return load_catalog(folder, currency=currency)
    except ConfigError:
        raise
    except Exception as exc:  # load_catalog reports what it expects; this is the rest
        raise ConfigError([f"{files[-1] if files else folder}: {_brief(exc)}"]) from None


def _brief(exc: BaseException) -> str:
    """One line, of bounded length: a problem line must not carry a traceback
    or a megabyte of a file into logs and /healthz."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _capped(problems: list[str]) -> list[str]:
    """At most ``MAX_PROBLEMS`` lines, each one line of at most ``MAX_PROBLEM_CHARS``
    (a list of 100,000 bad items is reported, not echoed item by item)."""
    lines = [" ".join(p.splitlines()) for p in problems[:MAX_PROBLEMS]]
    lines = [
        p if len(p) <= MAX_PROBLEM_CHARS else p[: MAX_PROBLEM_CHARS - 3] + "..." for p in lines
    ]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
    return lines


def dotted(path: tuple[str | int, ...]) -> str:
    """``campaigns[3].audience['session.pageviews'].$gte``"""
    parts = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif "." in p:
            parts.append(f"[{p!r}]")
        else:
            parts.append(f".{p}")
    return "".join(parts).lstrip(".")


def describe(exc: ValidationError, located: Located) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        raw = error["loc"]
        # A widget's model is chosen by its kind, which pydantic puts in the path.
        kind = next((k for w, k in pairwise(raw) if w == "widget" and k in WIDGETS), None)
        loc = tuple(
            p for i, p in enumerate(raw) if not _is_union_tag(p) and not _widget_tag(raw, i)
        )
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("union_tag_invalid", "union_tag_not_found") and loc[-1:] == (
            "widget",
        ):  # the kind chooses the widget's keys: say what is wrong with it
            loc = (*loc, "kind")
            message = (
                "Input should be "
                + ", ".join(repr(k) for k in list(WIDGETS)[:-1])
                + f" or {list(WIDGETS)[-1]!r}"
                if error["type"] == "union_tag_invalid"
                else "Field required"
            )
        elif error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
            if kind is not None:
                keys = ", ".join(k for k in WIDGETS[kind].model_fields if k != "kind")
                message += f" for a {kind} widget (its keys: {keys})"
        problems.append(f"{located.where(loc)}: {dotted(loc)}: {message}")
    return problems


def _widget_tag(loc: tuple[str | int, ...], i: int) -> bool:
    return i > 0 and loc[i - 1] == "widget" and loc[i] in WIDGETS


def _is_union_tag(part: str | int) -> bool:
    # pydantic puts the chosen type of a union into the location
    # ("function-after[...]", "literal['a']"); a marketer needs the YAML path only.
    return isinstance(part, str) and ("[" in part or part in {"int", "float", "str", "bool"})


def _version(files: list[Path], folder: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as file:  # in chunks: a large catalog is never in memory twice
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def compile_site(parsed: SiteFile, folder: Path, version: str) -> Site:
    site = parsed.site
    secret = _env_bytes(site.identity.secret_env, site.id)
    salt = _env_bytes(site.identity.salt_env, site.id)
    if salt is None:
        # Derived, so every node of one installation hashes emails alike; with no
        # secret at all the hash is still one-way but not secret (documented).
        salt = hashlib.sha256(
            b"edge-claimed-salt|" + site.id.encode() + b"|" + (secret or b"")
        ).digest()
    return Site(
        id=site.id,
        name=site.name or site.id,
        allowed_origins=frozenset(site.allowed_origins),
        hosts=frozenset(h for h in (urlsplit(o).hostname for o in site.allowed_origins) if h),
        timezone=ZoneInfo(site.timezone),
        currency=site.currency,
        locale=site.locale,
        secret=secret,
        salt=salt,
        keep_email=site.identity.keep_email,
        token_max_age_s=site.identity.token_max_age_s,
        session_timeout_s=site.tracking.session_timeout_min * 60.0,
        anonymous_ttl_s=site.tracking.anonymous_ttl_days * 86400,
        identified_ttl_s=(site.tracking.identified_ttl_days or 0) * 86400 or None,
        require_consent=site.tracking.require_consent,
        bounds=Bounds(),
        version=version,
        folder=folder,
        renderer=Renderer(
            folder,
            currency=site.currency,
            locale=site.locale,
            records={Product: Product.model_fields},
        ),
        intelligence=compile_intelligence(parsed.intelligence),
        declared=compile_declarations(parsed.properties, parsed.events),
        automation=compile_automation(parsed.automation),
    )


def _env_bytes(name: str | None, site_id: str) -> bytes | None:
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        log.warning("site %s: environment variable %s is not set", site_id, name)
        return None
    return value.encode()


def load_sites(profiles: Path) -> tuple[dict[str, Site], dict[str, list[str]]]:
    """Load every site folder; returns the good sites and the problems of the bad."""
    sites: dict[str, Site] = {}
    problems: dict[str, list[str]] = {}
    if not profiles.is_dir():
        raise ConfigError([f"{profiles}: not a directory"])
    for folder in sorted(
        p for p in profiles.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        try:
            sites[folder.name] = load_site(folder)
        except ConfigError as exc:
            problems[folder.name] = exc.problems
    return sites, problems


def site_config_schema() -> dict[str, Any]:
    """JSON Schema of one site file. ``site`` is not required in it, because a
    site's sections may be split over several files (campaigns.yaml ...)."""
    schema = SiteFile.model_json_schema()
    schema["required"] = [r for r in schema.get("required", []) if r != "site"]
    if not schema["required"]:
        del schema["required"]
    return schema
