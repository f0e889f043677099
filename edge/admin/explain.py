"""``edge explain``: run the engine for one visitor and page, offline, and say
why each campaign would or would not show. The admin API reuses it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.config.sites import load_site
from edge.core.context import VisitContext
from edge.core.profile import Profile, from_wire
from edge.decisioning.attributes import Page
from edge.decisioning.engine import decide
from edge.errors import ConfigError
from edge.ids import new_id
from edge.tracker.useragent import classify
from edge.widgets.service import nothing_to_recommend

CLIENT_TRIGGERS = ("exit_intent", "delay_s", "scroll_pct", "inactivity_s")


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    profiles: Path
    site: str
    page: str
    profile: Path | None = None
    trigger: str = "page_view"
    user_agent: str = ""
    now: str | None = None


def load_profile(path: Path | None, now: float) -> Profile | None:
    if path is None:
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile is a JSON object")
    data.setdefault("visitor", new_id())
    data.setdefault("created_at", now)
    return from_wire(_tuples(data))


def _tuples(value: Any) -> Any:
    """JSON arrays as the tuples the stored layout decodes to."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def run_explain(request: ExplainRequest) -> dict[str, Any]:
    folder = request.profiles / request.site
    if not folder.is_dir():
        raise ConfigError([f"{folder}: no such site folder"])
    site = load_site(folder)
    now = datetime.fromisoformat(request.now).timestamp() if request.now else time.time()
    profile = load_profile(request.profile, now)
    visitor = profile.visitor if profile else new_id()
    ctx = VisitContext(visitor, new_id(), user_agent=request.user_agent, url=request.page)
    engine_trigger = "page_view" if request.trigger in CLIENT_TRIGGERS else request.trigger
    decisions = decide(
        profile,
        ctx,
        site,
        now,
        trigger=engine_trigger,
        page=Page(url=request.page),
        device=classify(request.user_agent).to_attributes(),
        unavailable=nothing_to_recommend(site, profile, None),
        explain=True,
    )
    items = decisions.to_wire()
    trace = list(decisions.trace)
    if request.trigger in CLIENT_TRIGGERS:
        armed = [i for i in items if i["trigger"]["type"] == request.trigger]
        for item in items:
            if item not in armed:
                trace.append(
                    f"campaign {item['campaign']}: decided, but shows on "
                    f"{item['trigger']['type']}, not {request.trigger}"
                )
        items = armed
    return {
        "site": site.id,
        "config": site.version,
        "page": request.page,
        "trigger": request.trigger,
        "visitor": visitor,
        "trace": trace,
        "decisions": items,
        "attributes": decisions.attributes,
    }
