"""A site's compiled ``automation`` section.

The site loader (``edge.config.sites``) validates the section as part of the site
file, so a bad ``automation:`` is reported like any other problem, and
compiles it into ``Site.automation`` (``edge.core.site``), where the decision
core reads it. The shells ask for it here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.core.automation import Automation
    from edge.core.site import Site


def automation_of(site: Site) -> Automation:
    """The site's automation settings; the defaults when it has none."""
    return site.automation
