"""The sites being served, and their hot reload.

``SiteRegistry.reload()`` re-reads a site folder only when a file in it
changed (by size and mtime), and swaps the compiled ``Site`` in one assignment.
A site whose files are now invalid keeps serving its last good ``Site``; its
problems are logged and shown in ``/healthz`` until fixed.

A running server never reloads on its event loop: ``reload_in_background``
runs ``reload()`` in a thread of its own and waits at most a time budget
(``reload_timeout_s``). Loading is bounded (``edge.config.yamlsource``, the template
checks), so that budget is a backstop for what no bound covers, such as a
file system that stops answering. A Python thread cannot be stopped: one that
runs over its budget is left to finish, marked ``daemon`` so that it never
holds up the process's exit (SIGTERM), and while it runs no other reload
starts (``reload()`` refuses at once rather than wait) and ``overdue()``
names the site it is stuck on. When it finishes, its result is applied like
any other (it read the files later than what is being served).

``sites`` and ``problems`` are replaced, never changed in place, so a reader
on the event loop iterates a dict that the reload thread does not touch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config.sites import load_site
from edge.core.site import Site
from edge.errors import ConfigError

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass
class SiteRegistry:
    profiles: Path
    only: str | None = None  # load this site folder alone (``edge check profiles/demo``)
    sites: dict[str, Site] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    reloads: int = 0
    last_reload: str = "ok"  # "ok" or "failed": the last reload as a whole
    reload_error: str | None = None  # why it failed (the profiles folder is gone ...)
    _prints: dict[str, Fingerprint] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float | None = None  # monotonic start of the running reload
    _loading: str | None = None  # the site it is loading now
    _thread: threading.Thread | None = None
    _budget_s: float | None = None

    def get(self, site_id: str | None) -> Site | None:
        return self.sites.get(site_id) if site_id else None

    def reload(self) -> bool:
        """Pick up changed, added and removed sites; True if anything changed.

        ``ConfigError`` when the reload as a whole fails (no profiles folder),
        or when another reload is still running: it never waits for one."""
        if not self._lock.acquire(blocking=False):
            raise ConfigError([f"{self.profiles}: a configuration reload is still running"])
        try:
            self._started = time.monotonic()
            changed = self._reload()
        except Exception as exc:
            self.last_reload, self.reload_error = "failed", _brief(exc)
            raise
        else:
            self.last_reload, self.reload_error = "ok", None
            return changed
        finally:
            self._started = self._loading = None
            self._lock.release()

    def _reload(self) -> bool:
        if not self.profiles.is_dir():
            raise ConfigError([f"{self.profiles}: profiles folder not found"])
        folders = {
            p.name: p
            for p in self.profiles.iterdir()
            if p.is_dir() and not p.name.startswith(".") and self.only in (None, p.name)
        }
        changed = False
        for name in set(self._prints) - set(folders):
            self._prints.pop(name)
            self._publish(name, site=None, problems=None)
            log.info("site %s removed", name)
            changed = True
        for name, folder in sorted(folders.items()):
            self._loading = name  # what overdue() names if this site is where it hangs
            try:
                prints = _fingerprint(folder)
            except Exception as exc:  # changing while listed ...: a problem now, retried next time
                self._prints.pop(name, None)
                self._publish(
                    name, site=self.sites.get(name), problems=[f"{folder}: {_brief(exc)}"]
                )
                changed = True
                continue
            if self._prints.get(name) == prints:
                continue
            self._prints[name] = prints
            changed = True
            self._load(name, folder)
        if changed:
            self.reloads += 1
        return changed

    def _load(self, name: str, folder: Path) -> None:
        try:
            site = load_site(folder)
        except Exception as exc:  # load_site raises ConfigError only; a bug must not stop the rest
            problems = (
                exc.problems if isinstance(exc, ConfigError) else [f"{folder}: {_brief(exc)}"]
            )
            self._publish(name, site=self.sites.get(name), problems=problems)
            kept = (
                "keeps serving the last good configuration" if name in self.sites else "not served"
            )
            log.error(
                "site %s: invalid configuration, %s:\n  %s", name, kept, "\n  ".join(problems)
            )
            return
        old = self.sites.get(name)
        self._publish(name, site=site, problems=None)
        if old is None or old.version != site.version:
            log.info("site %s: configuration %s loaded", name, site.version)

    def _publish(self, name: str, *, site: Site | None, problems: list[str] | None) -> None:
        """Replace both dicts (see the module docstring) with ``name`` set or removed."""
        sites = {k: v for k, v in self.sites.items() if k != name}
        if site is not None:
            sites[name] = site
        reported = {k: v for k, v in self.problems.items() if k != name}
        if problems:
            reported[name] = problems
        self.sites, self.problems = sites, reported

    # --- off the event loop, with a budget -------------------------------------------

    def _start(self, done: Callable[[bool | None, BaseException | None], None]) -> bool:
        """Run ``reload()`` in a new daemon thread, then ``done(result, error)``
        there; False (and nothing started) while the previous one still runs."""
        if self._thread is not None and self._thread.is_alive():
            return False

        def run() -> None:
            try:
                result = self.reload()
            except BaseException as exc:  # handed over; the thread ends either way
                done(None, exc)
            else:
                done(result, None)

        self._thread = threading.Thread(target=run, name="edge-config-reload", daemon=True)
        self._thread.start()
        return True

    async def reload_in_background(self, timeout_s: float) -> bool:
        """``reload()`` in a thread, awaited at most ``timeout_s``: True if
        anything changed, False if not, or if it ran over its budget (then it is
        left to finish, see ``overdue()``), or a previous one is still running.
        ``reload()``'s ConfigError comes through."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[bool] = loop.create_future()

        def settle(result: bool | None, error: BaseException | None) -> None:
            if not outcome.done():
                if error is not None:
                    outcome.set_exception(error)
                else:
                    outcome.set_result(bool(result))

        def done(result: bool | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(settle, result, error)

        self._budget_s = timeout_s
        if not self._start(done):
            self._warn_overdue()
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(outcome), timeout_s)
        except TimeoutError:
            self._warn_overdue()
            return False

    def reload_within(self, timeout_s: float) -> bool:
        """``reload()`` in a thread, waited for at most ``timeout_s`` (``edge
        check``): True if it finished, else ``overdue()`` says where it is."""
        finished = threading.Event()
        errors: list[BaseException] = []

        def done(result: bool | None, error: BaseException | None) -> None:
            errors.extend([error] if error is not None else [])
            finished.set()

        self._budget_s = timeout_s
        if not self._start(done):
            return False
        if not finished.wait(timeout_s):
            return False
        if errors:
            raise errors[0]
        return True

    def overdue(self) -> tuple[str | None, str] | None:
        """``(site or None, problem)`` while a reload runs past its budget."""
        started, budget, site = self._started, self._budget_s, self._loading
        if started is None or budget is None:
            return None
        elapsed = time.monotonic() - started
        if elapsed <= budget:
            return None
        where = self.profiles / site if site else self.profiles
        return site, (
            f"{where}: configuration reload still running after {elapsed:.0f} s "
            f"(budget {budget:g} s); the last good configuration is served"
        )

    def _warn_overdue(self) -> None:
        late = self.overdue()
        if late is not None:
            log.warning("%s", late[1])

    def report(self) -> tuple[dict[str, list[str]], dict[str, Any]]:
        """What ``/healthz`` shows: the problems of each site (with a reload
        that is over its budget), and the state of reloading as a whole."""
        problems = self.problems
        late = self.overdue()
        if late is not None:
            site, problem = late
            if site is not None:
                problems = {**problems, site: [*problems.get(site, []), problem]}
            return problems, {"last_reload": "overdue", "error": problem}
        return problems, {"last_reload": self.last_reload, "error": self.reload_error}


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if not isinstance(exc, ConfigError) else text


def _fingerprint(folder: Path) -> Fingerprint:
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)
