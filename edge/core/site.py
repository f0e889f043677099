"""A compiled site: the plain, frozen configuration the core takes.

``edge.config.sites`` (the loader) builds it from a site folder's YAML files once per
configuration version; the core reads it and never parses anything. It holds
data and compiled forms only (conditions, templates, the catalog, regexes): no
file handles, connections or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from edge.core.automation import DEFAULT as DEFAULT_AUTOMATION
from edge.core.automation import Automation
from edge.core.catalog import Catalog
from edge.core.identity import hash_email
from edge.core.intelligence import DEFAULT as DEFAULT_INTELLIGENCE
from edge.core.intelligence import Intelligence
from edge.core.profile import Bounds
from edge.core.properties import NO_DECLARATIONS, Declarations
from edge.decisioning.campaigns import NO_CAMPAIGNS, Decisioning
from edge.widgets.render import Renderer


@dataclass(frozen=True, slots=True)
class Site:
    """A compiled site: everything the hot path needs, nothing to parse."""

    id: str
    name: str
    allowed_origins: frozenset[str]
    hosts: frozenset[str]
    timezone: ZoneInfo
    currency: str
    locale: str
    secret: bytes | None
    salt: bytes
    keep_email: bool
    token_max_age_s: int
    session_timeout_s: float
    anonymous_ttl_s: int
    identified_ttl_s: int | None
    require_consent: bool
    bounds: Bounds
    version: str  # hash of the files, shown in /healthz so operators see nodes agree
    folder: Path
    renderer: Renderer
    decisioning: Decisioning = NO_CAMPAIGNS
    catalog: Catalog | None = None
    intelligence: Intelligence = DEFAULT_INTELLIGENCE
    automation: Automation = DEFAULT_AUTOMATION
    declared: Declarations = NO_DECLARATIONS  # custom properties and event props

    def contact_key(self, email: str) -> str:
        return f"e:{email.strip().lower()}" if self.keep_email else hash_email(email, self.salt)

    def ttl_s(self, identified: bool) -> int | None:
        return self.identified_ttl_s if identified else self.anonymous_ttl_s
