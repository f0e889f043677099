"""docs/configuration.md's worked examples must stay true (issue 14, item 7:
they disagreed with the code on the failing clause): each example's profile
(the JSON blocks of "`edge explain`") is run through ``edge explain`` on the
demo, and every trace line the docs print must be in its output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge.cli import main
from tests.helpers import PROFILES, ROOT

DOC = (ROOT / "docs" / "configuration.md").read_text()
PAGE = "http://127.0.0.1:8000/demo"
NOW = "2025-11-25T18:00:00+01:00"
# the worked examples' output blocks, in order: (profile file, trigger)
EXAMPLES = [
    (None, None),
    ("social.json", "exit_intent"),
    ("cart.json", None),
    ("lapsed.json", None),
]
TRACE = re.compile(r"^(  campaign |shows |holdout: )")


def section(title: str) -> str:
    start = DOC.index(f"\n## {title}")
    end = DOC.index("\n## ", start + 1)
    return DOC[start:end]


def blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(rf"\n```{lang}\n(.*?)\n```", text, flags=re.DOTALL)


def profile_json(name: str) -> str:
    found = re.search(rf"`{re.escape(name)}`, .*?\n```json\n(.*?)\n```", DOC, flags=re.DOTALL)
    assert found is not None, name
    return found.group(1)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_a_worked_example_says_what_edge_explain_says(
    index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_DEMO_SECRET", "docs")
    block = blocks(section("Worked examples: the demo shop"))[index]
    name, trigger = EXAMPLES[index]
    args = ["explain", "--profiles", str(PROFILES), "--site", "demo", "--page", PAGE]
    if name is not None:
        path = tmp_path / name
        path.write_text(json.dumps(json.loads(profile_json(name))))
        args += ["--profile", str(path), "--now", NOW]
    if trigger is not None:
        args += ["--trigger", trigger]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    expected = [line for line in block.splitlines() if TRACE.match(line)]
    assert expected, block
    assert [line for line in expected if line not in out] == []
