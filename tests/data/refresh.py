"""Rebuild the out-of-sample User-Agent files from their packages.

    python tests/data/refresh.py --matomo 6.5.1 --intoli 2.1.198

downloads the PyPI package ``device-detector`` (Matomo's fixtures ship in its
wheel) with pip and the npm package ``user-agents`` with npm, and rewrites
``useragents/matomo-bots.json``, ``matomo-browsers.json.gz`` and
``intoli-browsers.json``. Update README.md's versions afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent / "useragents"
FIXTURES = "device_detector/tests/fixtures/upstream/"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _write(name: str, source: str, licence: str, agents: list[str]) -> None:
    data = {"meta": {"source": source, "license": licence}, "user_agents": agents}
    if name.endswith(".gz"):
        with gzip.GzipFile(HERE / name, "wb", compresslevel=9, mtime=0) as f:
            f.write(json.dumps(data, ensure_ascii=False).encode())
    else:
        (HERE / name).write_text(json.dumps(data, indent=0, ensure_ascii=False) + "\n")
    print(f"{name}: {len(agents)} user agents")


def matomo(version: str, work: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         f"device-detector=={version}", "-d", str(work)],
        check=True,
    )
    wheel = next(work.glob("device_detector-*.whl"))
    bots: list[str] = []
    browsers: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not (name.startswith(FIXTURES) and name.endswith(".yml")):
                continue
            cases: list[dict[str, Any]] = yaml.safe_load(archive.read(name)) or []
            if name.endswith("/bots.yml"):
                bots += [c["user_agent"] for c in cases]
            else:
                browsers += [
                    c["user_agent"]
                    for c in cases
                    if (c.get("client") or {}).get("type") == "browser" and c.get("user_agent")
                ]
    origin = f"as shipped in the PyPI package device-detector {version}"
    _write(
        "matomo-bots.json",
        f"matomo-org/device-detector test fixtures (Tests/fixtures/bots.yml), {origin}",
        "LGPL-3.0-or-later",
        _unique(bots),
    )
    _write(
        "matomo-browsers.json.gz",
        "matomo-org/device-detector test fixtures (Tests/fixtures/*.yml, entries whose "
        f"client type is browser), {origin}",
        "LGPL-3.0-or-later",
        _unique(browsers),
    )


def intoli(version: str, work: Path) -> None:
    subprocess.run(["npm", "pack", f"user-agents@{version}"], check=True, cwd=work)
    with tarfile.open(next(work.glob("user-agents-*.tgz"))) as archive:
        member = archive.extractfile("package/dist/user-agents.json")
        assert member is not None
        entries: list[dict[str, Any]] = json.load(member)
    entries.sort(key=lambda e: -float(e.get("weight", 0)))
    _write(
        "intoli-browsers.json",
        f"intoli/user-agents {version} (npm), dist/user-agents.json: distinct userAgent "
        "values, most frequent first",
        "BSD-2-Clause",
        _unique([e["userAgent"] for e in entries]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matomo", metavar="VERSION", help="device-detector release on PyPI")
    parser.add_argument("--intoli", metavar="VERSION", help="user-agents release on npm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.matomo:
            matomo(args.matomo, Path(folder))
        if args.intoli:
            intoli(args.intoli, Path(folder))


if __name__ == "__main__":
    main()
