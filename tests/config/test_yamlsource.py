"""edge/config/yamlsource.py: a YAML file is bounded before it is walked or built.

The bomb tests carry a short timeout: without the bounds they do not fail,
they run (a "billion laughs" file expands to 10**9 values)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edge.config.yamlsource import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    YamlProblem,
    load_file,
)

DEMO = Path(__file__).resolve().parents[2] / "profiles" / "demo"

# The classic: nine lines, each nine aliases of the line before: 9**9 strings.
BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def written(tmp_path: Path, text: str | bytes, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problem_of(path: Path) -> str:
    with pytest.raises(YamlProblem) as caught:
        load_file(path)
    return str(caught.value)


@pytest.mark.parametrize("name", ["site.yaml", "segments.yaml", "campaigns.yaml"])
def test_the_demo_files_load_as_safe_load_reads_them(name: str) -> None:
    path = DEMO / name
    data, lines = load_file(path)
    assert data == yaml.safe_load(path.read_text(encoding="utf-8"))
    assert all(lines[(key,)] >= 1 for key in data)


@pytest.mark.timeout(10)
def test_a_billion_laughs_is_refused_at_once_with_file_and_line(tmp_path: Path) -> None:
    path = written(tmp_path, BILLION_LAUGHS)
    # e: holds 9**5 * 10 values... the first line past MAX_NODES is f (line 6).
    assert problem_of(path) == (
        f"{path}:6: stands for more than {MAX_NODES} values once its aliases are expanded"
    )


@pytest.mark.timeout(10)
def test_a_bomb_of_mappings_is_refused_too(tmp_path: Path) -> None:
    lines = ["l0: &l0 {k: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}"]
    for i in range(1, 12):
        lines.append(f"l{i}: &l{i} {{a: *l{i - 1}, b: *l{i - 1}, c: *l{i - 1}, d: *l{i - 1}}}")
    path = written(tmp_path, "\n".join(lines) + "\n")
    assert "once its aliases are expanded" in problem_of(path)


def test_aliases_within_the_limits_load_as_shared_values(tmp_path: Path) -> None:
    text = "base: &base {pageviews: {$gte: 3}}\nfirst: *base\nsecond: {<<: *base, extra: 1}\n"
    data, lines = load_file(written(tmp_path, text))
    assert data["first"] == {"pageviews": {"$gte": 3}}
    assert data["second"] == {"pageviews": {"$gte": 3}, "extra": 1}
    assert lines[("first", "pageviews")] == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: [1, {c: *a}]}\n"])
def test_an_alias_inside_its_own_value_is_refused(tmp_path: Path, text: str) -> None:
    path = written(tmp_path, text)
    assert problem_of(path) == f"{path}:1: an alias names the value that contains it"


def test_too_many_aliases(tmp_path: Path) -> None:
    uses = "".join(f"k{i}: *x\n" for i in range(MAX_ALIASES + 1))
    path = written(tmp_path, "x: &x 1\n" + uses)
    assert problem_of(path) == (
        f"{path}:{MAX_ALIASES + 2}: more than {MAX_ALIASES} aliases in one file"
    )


@pytest.mark.timeout(10)
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_before_python_recursion_fails(tmp_path: Path, levels: int) -> None:
    path = written(tmp_path, "a: " + "[" * levels + "]" * levels + "\n")
    problem = problem_of(path)
    assert problem.startswith(f"{path}:1: ")
    assert "nest" in problem


def test_deep_nesting_through_aliases_is_refused(tmp_path: Path) -> None:
    lines = ["l0: &l0 [1]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, MAX_DEPTH + 2)]
    path = written(tmp_path, "\n".join(lines) + "\n")
    assert f"nested more than {MAX_DEPTH} levels deep through its aliases" in problem_of(path)


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = written(tmp_path, "a: 1\n" + "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    size = path.stat().st_size
    assert size > MAX_FILE_BYTES
    assert problem_of(path) == (
        f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} bytes a configuration "
        "file may have (split it into several files)"
    )


def test_a_file_at_the_size_limit_loads(tmp_path: Path) -> None:
    text = "a: 1\n"
    path = written(tmp_path, text + "#" * (MAX_FILE_BYTES - len(text)))
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_file(path)[0] == {"a": 1}


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    os.mkfifo(path)
    assert problem_of(path) == f"{path}: not a regular file"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: 1\nwhen: 2001-13-45\n", 2, "ValueError: month must be in 1..12"),
        ("a: 1\nb: 2\nbig: " + "9" * 5000 + "\n", 3, "ValueError: Exceeds the limit"),
    ],
    ids=["bad-date", "huge-integer"],
)
def test_a_value_python_cannot_build_is_a_problem_with_its_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = written(tmp_path, text)
    assert problem_of(path).startswith(f"{path}:{line}: not valid YAML: {message}")


def test_several_documents_are_refused(tmp_path: Path) -> None:
    path = written(tmp_path, "a: 1\n---\nb: 2\n")
    assert problem_of(path).startswith(f"{path}:2: not valid YAML: ")
