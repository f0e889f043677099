"""A site's compiled ``automation`` section, by site version.

``edge.sites.Site`` does not carry the section (the site loader validates it as
part of the site file, so a bad ``automation:`` is reported like any other
problem); this module reads it from the site's folder once per configuration
version and keeps the compiled form. The service warms the cache at start and
on every claimer tick, so the hot path only does a dict lookup.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError

from edge.core.automation import DEFAULT, Automation, compile_automation
from edge.decisioning.config import AutomationConfig
from edge.yamlsource import YamlProblem, load_merged

if TYPE_CHECKING:
    from edge.sites import Site

log = logging.getLogger(__name__)

_compiled: dict[tuple[str, str], Automation] = {}
_last_good: dict[str, Automation] = {}


def automation_of(site: Site) -> Automation:
    """The site's automation settings; the defaults when it has none."""
    key = (site.id, site.version)
    found = _compiled.get(key)
    if found is not None:
        return found
    try:
        located = load_merged(sorted(site.folder.glob("*.yaml")))
        compiled = compile_automation(
            AutomationConfig.model_validate(located.data.get("automation") or {})
        )
    except (OSError, YamlProblem, ValidationError, AttributeError, TypeError):
        # the loader reports the problem; keep what worked (or the defaults)
        log.exception("site %s: reading the automation section failed", site.id)
        compiled = _last_good.get(site.id, DEFAULT)
    for old in [k for k in _compiled if k[0] == site.id]:
        del _compiled[old]
    _compiled[key] = _last_good[site.id] = compiled
    return compiled
