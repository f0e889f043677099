"""Tests for the condition language (edge.decisioning.conditions).

The conformance cases are GrowthBook's cross-SDK suite (MIT), vendored in
``tests/data/conformance/``; its README names the source and version.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from edge.decisioning.conditions import (
    MAX_REGEX_LENGTH,
    ConditionError,
    compile_condition,
    evaluate,
)

CONFORMANCE_PATH = Path(__file__).resolve().parents[1] / "data" / "conformance" / "conditions.json"

# Conformance cases whose condition is malformed. GrowthBook evaluates them to
# False at run time; our rule is to reject malformed input at compile time, so
# these raise ConditionError instead. Review every addition: a case belongs
# here only if its *condition* (not its attributes) is wrong.
EXPECTED_COMPILE_ERRORS = {
    # `$in` / `$nin` need a list operand; `1` is not a list.
    "$in - not array",
    "$nin - not array",
    # "/???***[)" is not a valid regular expression ("multiple repeat").
    "$regex invalid - pass",
    "$regex invalid - fail",
}


def _load_cases() -> list[Any]:
    if not CONFORMANCE_PATH.is_file():
        # Fail loudly (not skip): a missing suite must never look like a pass.
        return [pytest.param(None, id="conformance-file-missing")]
    cases = json.loads(CONFORMANCE_PATH.read_text(encoding="utf-8"))["cases"]
    return [pytest.param(case, id=case[0]) for case in cases]


def _unpack(case: list[Any]) -> tuple[str, Any, Any, bool, Any]:
    name, condition, attributes, expected = case[:4]
    saved_groups = case[4] if len(case) > 4 else None
    return name, condition, attributes, expected, saved_groups


def _nest(condition: Any) -> Any:
    """The same condition one namespace down: ``k`` becomes ``ns.k``.

    Attribute keys are rewritten at condition level (through $and, $or, $nor
    and $not), never inside operator objects, whose keys are not attributes.
    """
    if not isinstance(condition, dict):
        return condition
    out: dict[str, Any] = {}
    for key, value in condition.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            out[key] = [_nest(item) for item in value]
        elif key == "$not":
            out[key] = _nest(value)
        else:  # an attribute, `$groups`-style names included
            out[f"ns.{key}"] = value
    return out


@pytest.mark.parametrize("case", _load_cases())
def test_conformance_one_namespace_down(case: list[Any] | None) -> None:
    """The whole suite again on ``ns.<attribute>`` paths: these take the
    compiler's fast paths (``namespace.attribute`` shapes), so this proves the
    fast paths answer exactly as the general form does."""
    if case is None:
        pytest.fail(f"conformance suite not found at {CONFORMANCE_PATH}")
    name, condition, attributes, expected, saved_groups = _unpack(case)
    if name in EXPECTED_COMPILE_ERRORS:
        return
    nested = compile_condition(_nest(condition), saved_groups)
    assert nested({"ns": attributes}) is expected


@pytest.mark.parametrize("case", _load_cases())
def test_conformance(case: list[Any] | None) -> None:
    if case is None:
        pytest.fail(f"conformance suite not found at {CONFORMANCE_PATH}")
    name, condition, attributes, expected, saved_groups = _unpack(case)
    try:
        predicate = compile_condition(condition, saved_groups)
    except ConditionError as exc:
        assert name in EXPECTED_COMPILE_ERRORS, f"unexpected compile error: {exc}"
        assert expected is False, "a malformed condition may only stand in for False"
        return
    assert name not in EXPECTED_COMPILE_ERRORS, "listed as malformed but compiled"
    assert predicate(attributes) is expected
    assert evaluate(condition, attributes, saved_groups) is expected


def test_conformance_compile_errors_are_exactly_the_reviewed_list() -> None:
    assert CONFORMANCE_PATH.is_file(), f"conformance suite not found at {CONFORMANCE_PATH}"
    cases = json.loads(CONFORMANCE_PATH.read_text(encoding="utf-8"))["cases"]
    assert len(cases) >= 100
    assert len({case[0] for case in cases}) == len(cases), "case names must be unique"
    failing = set()
    for case in cases:
        name, condition, _, _, saved_groups = _unpack(case)
        try:
            compile_condition(condition, saved_groups)
        except ConditionError:
            failing.add(name)
    assert failing == EXPECTED_COMPILE_ERRORS


# --------------------------------------------------------------------------- compile errors


@pytest.mark.parametrize(
    ("condition", "path", "message"),
    [
        pytest.param(
            {"session.pageviews": {"$gtee": 3}},
            ("session.pageviews", "$gtee"),
            "unknown operator '$gtee'",
            id="unknown-operator",
        ),
        pytest.param(
            {"$and": [{"a": 1}, {"b": {"$or": [{"c": 1}]}}]},
            ("$and", 1, "b", "$or"),
            "unknown operator '$or'",
            id="logical-operator-on-a-value",
        ),
        pytest.param(
            {"tags": {"$in": "a"}},
            ("tags", "$in"),
            "$in needs a list",
            id="in-not-a-list",
        ),
        pytest.param(
            {"tags": {"$nini": [["nested"]]}},
            ("tags", "$nini", 0),
            "may only hold strings, numbers, booleans or null",
            id="in-non-scalar-member",
        ),
        pytest.param(
            {"tags": {"$size": "3"}},
            ("tags", "$size"),
            "$size needs a non-negative int",
            id="size-not-int",
        ),
        pytest.param(
            {"ua": {"$regex": 5}},
            ("ua", "$regex"),
            "$regex needs a string pattern",
            id="regex-not-string",
        ),
        pytest.param(
            {"$or": [{"ua": {"$notRegexi": "(unclosed"}}]},
            ("$or", 0, "ua", "$notRegexi"),
            "invalid regular expression '(unclosed'",
            id="regex-invalid",
        ),
        pytest.param(
            {"$and": {"a": 1}},
            ("$and",),
            "$and needs a list of conditions",
            id="and-not-a-list",
        ),
        pytest.param(
            {"$or": [{"a": 1}, "b"]},
            ("$or", 1),
            "a condition must be a mapping",
            id="or-item-not-a-mapping",
        ),
        pytest.param(
            {"$not": [{"a": 1}]},
            ("$not",),
            "a condition must be a mapping",
            id="not-not-a-mapping",
        ),
        pytest.param(
            {"$nor": []},
            ("$nor",),
            "$nor needs at least one condition",
            id="empty-nor",
        ),
        pytest.param(
            {"id": {"$inGroup": "beta_testers"}},
            ("id", "$inGroup"),
            "unknown saved group 'beta_testers'",
            id="unknown-saved-group",
        ),
        pytest.param(
            {"id": {"$notInGroup": 7}},
            ("id", "$notInGroup"),
            "needs a saved group id",
            id="group-id-not-a-string",
        ),
        pytest.param(
            {"a": {"$type": "integer"}},
            ("a", "$type"),
            "$type needs one of",
            id="unknown-type-name",
        ),
        pytest.param(
            {"a": {"$exists": "false"}},
            ("a", "$exists"),
            "$exists needs true or false",
            id="exists-string",
        ),
        pytest.param(
            {"a": {"$gt": [1]}},
            ("a", "$gt"),
            "$gt needs a number or a string",
            id="ordering-list",
        ),
        pytest.param(
            {"a": {"$eq": {"x": 1}}},
            ("a", "$eq"),
            "$eq needs a string, number, boolean or null",
            id="eq-mapping",
        ),
        pytest.param(
            {"v": {"$vgt": None}},
            ("v", "$vgt"),
            "$vgt needs a version string",
            id="version-null",
        ),
        pytest.param(
            {"items": {"$elemMatch": [1]}},
            ("items", "$elemMatch"),
            "$elemMatch needs a mapping",
            id="elem-match-list",
        ),
        pytest.param(
            {"items": {"$elemMatch": {"name": {"$gtee": 1}}}},
            ("items", "$elemMatch", "name", "$gtee"),
            "unknown operator '$gtee'",
            id="elem-match-nested-unknown-operator",
        ),
        pytest.param(
            {"a": {"$gt": 1, "b": 2}},
            ("a",),
            "mixes operators and plain keys",
            id="mixed-operator-object",
        ),
        pytest.param(
            {"$gte": 3},
            ("$gte",),
            "operator '$gte' must be applied to an attribute",
            id="operator-at-condition-level",
        ),
        pytest.param(
            {"a..b": 1},
            ("a..b",),
            "invalid attribute path",
            id="empty-path-segment",
        ),
        pytest.param(
            ["not", "a", "mapping"],
            (),
            "a condition must be a mapping",
            id="condition-not-a-mapping",
        ),
    ],
)
def test_compile_errors(condition: Any, path: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(condition)
    assert info.value.path == path
    assert message in info.value.message
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_saved_group_member_must_be_scalar() -> None:
    with pytest.raises(ConditionError, match="saved group 'g' may only hold") as info:
        compile_condition({"id": {"$inGroup": "g"}}, {"g": [1, {"x": 2}]})
    assert info.value.path == ("id", "$inGroup", 1)


# --------------------------------------------------------------------------- regex guard


def test_regex_length_guard() -> None:
    at_limit = "a" * MAX_REGEX_LENGTH
    assert MAX_REGEX_LENGTH == 256
    assert evaluate({"s": {"$regex": at_limit}}, {"s": at_limit})
    with pytest.raises(ConditionError, match="limit is 256") as info:
        compile_condition({"s": {"$regexi": at_limit + "a"}})
    assert info.value.path == ("s", "$regexi")


# Shapes with fast paths of their own beyond the suite's: plain-text regexes
# (``str.startswith`` / ``in``, and one search in the joined elements of a
# list) and ``$or`` / ``$nor`` of string literals on one attribute (a set).
FAST_SHAPES: list[dict[str, Any]] = [
    {"k": {"$regex": "^/demo/c/"}},
    {"k": {"$regex": "sale"}},
    {"k": {"$elemMatch": {"$regex": "^/demo/c/"}}},
    {"k": {"$elemMatch": {"$regex": "sale"}}},
    {"$or": [{"k": "search"}, {"k": "paid"}]},
    {"$nor": [{"k": "search"}, {"k": "paid"}, {"k": "email"}]},
]
FAST_VALUES: list[Any] = [
    "/demo/c/1",
    "/x/demo/c/",
    "on sale",
    "search",
    "paid",
    "Search",
    "",
    5,
    1.5,
    True,
    None,
    {"k": "search"},
    [],
    ["/demo/p/1", "/demo/c/2"],
    ["/demo/c/2", 3],
    ["/demo/p/1", "/x/demo/c/"],
    ["on sale"],
    ["x\x00/demo/c/"],  # a NUL in an element: the joined search cannot tell
    ["/demo/c/x\x00y"],
    ["sa", "le"],  # the text must not be found across two elements
    [["search"]],
    ["search"],
    [1, "sale"],
]


@pytest.mark.parametrize("condition", FAST_SHAPES, ids=json.dumps)
def test_fast_shapes_answer_as_the_general_form(condition: dict[str, Any]) -> None:
    """A top-level attribute takes the general form, ``ns.k`` the fast path:
    both must answer alike for every value, missing included."""
    general = compile_condition(condition)
    fast = compile_condition(_nest(condition))
    for value in FAST_VALUES:
        assert fast({"ns": {"k": value}}) is general({"k": value}), value
    assert fast({"ns": {}}) is general({})
    assert fast({}) is general({})


def test_plain_text_regexes_search_as_regexes() -> None:
    pages = {"session": {"pages": ["/demo/p/S1", "/demo/c/toys"]}}
    assert evaluate({"session.pages": {"$elemMatch": {"$regex": "^/demo/c/"}}}, pages)
    assert not evaluate({"session.pages": {"$elemMatch": {"$regex": "^/c/"}}}, pages)
    assert evaluate({"session.pages": {"$elemMatch": {"$regex": "toys"}}}, pages)
    assert not evaluate({"session.pages": {"$elemMatch": {"$regex": "S1/demo"}}}, pages)
    assert evaluate({"page.path": {"$regex": "^/demo"}}, {"page": {"path": "/demo/c/1"}})
    assert not evaluate({"page.path": {"$regex": "^/c"}}, {"page": {"path": "/demo/c/1"}})


def test_regexes_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    condition = {
        "ua": {"$regex": "Mobile"},
        "ref": {"$regexi": "GOOGLE\\."},
        "path": {"$notRegex": "^/admin"},
        "lang": {"$notRegexi": "^DE"},
        "version": {"$vgte": "1.2.0"},
    }
    predicate = compile_condition(condition)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"re used at evaluation time: {args!r}")

    for name in ("compile", "search", "match", "fullmatch", "sub", "split"):
        # conditions.py uses this very module object, so this covers it too.
        monkeypatch.setattr(re, name, forbidden)
    matching = {
        "ua": "Android Mobile",
        "ref": "https://google.com",
        "path": "/shop",
        "lang": "en-GB",
        "version": "v1.10.3",
    }
    for _ in range(3):
        assert predicate(matching) is True
        assert predicate({**matching, "ua": "Desktop"}) is False
        assert predicate({**matching, "lang": "de-DE"}) is False


# --------------------------------------------------------------------------- behaviour


def test_evaluation_never_mutates_attributes_or_depends_on_the_condition() -> None:
    condition: dict[str, Any] = {
        "$and": [
            {"visitor.tags": {"$alli": ["VIP"], "$elemMatch": {"$regexi": "^v"}}},
            {"visitor.profile": {"plan": "pro", "seats": [1, 2]}},
        ],
        "$or": [{"session.source": {"$ini": ["Social", "PAID"]}}, {"$not": {"x": 1}}],
        "session.pageviews": {"$gte": 3, "$size": {"$exists": False}},
        "app.version": {"$vlt": "2.0.0"},
        "id": {"$inGroup": "g"},
    }
    groups = {"g": ["u1", "u2"]}
    attributes = {
        "id": "u1",
        "visitor": {"tags": ["vip", "new"], "profile": {"plan": "pro", "seats": [1, 2]}},
        "session": {"pageviews": "4", "source": "paid"},
        "app": {"version": "1.9.9"},
    }
    snapshot = copy.deepcopy(attributes)
    predicate = compile_condition(condition, groups)
    assert predicate(attributes) is False  # $size on a non-array is false
    del condition["session.pageviews"]
    assert predicate(attributes) is False  # compiled once: later edits have no effect
    predicate = compile_condition(condition, groups)
    groups["g"].clear()
    condition["$and"][1]["visitor.profile"]["plan"] = "free"
    assert predicate(attributes) is True
    assert attributes == snapshot


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ({"a": {"$eq": 5}}, {"a": "5"}, False),
        ({"a": {"$eq": 1}}, {"a": True}, False),
        ({"a": {"$ne": 1}}, {"a": True}, True),
        ({"a": {"$in": [1]}}, {"a": True}, False),
        ({"a": {"$in": [True]}}, {"a": True}, True),
        ({"a": {"$in": [None]}}, {}, True),
        ({"a": {"$gt": "5"}}, {"a": 6}, True),
        ({"a": {"$gt": "x"}}, {"a": 6}, False),
        ({"a": {"$lt": 5}}, {"a": "abc"}, False),
        ({"a": {"$lt": 5}}, {"a": "1_000"}, False),
        ({"a": {"$gte": 0}}, {"a": float("nan")}, False),
        ({"a.b": 1}, {"a": "not a mapping"}, False),
        ({"a.b": None}, {"a": [1]}, True),
        ({"a": {"$regex": "1"}}, {"a": 1}, False),
        ({"a": {"$notRegex": "1"}}, {}, True),
        ({"a": {"$type": "number"}}, {"a": True}, False),
        ({"a": {"$type": "object"}}, {"a": {}}, True),
        ({"a": {"$exists": 1}}, {"a": 0}, True),
        ({"a": {"$all": []}}, {"a": []}, True),
        ({"a": {"$all": [{"$gt": 2}, 1]}}, {"a": [1, 3]}, True),
        ({"a": {"$elemMatch": {"b": 1}}}, {"a": [1, "x", {"b": 1}]}, True),
        ({"a": {"$size": {"$gte": 1}}}, {"a": ("x",)}, True),
        ({"a": {"$vgt": 1}}, {"a": "1.0.1"}, True),
        ({"a": {"$veq": "1.0.0"}}, {"a": 1.0}, False),
        ({"a": {}}, {"a": {}}, True),
        ({"a": {}}, {}, False),
    ],
)
def test_semantics_beyond_the_suite(
    condition: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    assert evaluate(condition, attributes) is expected


def test_not_in_unknown_group_is_everyone() -> None:
    assert evaluate({"id": {"$notInGroup": "missing"}}, {"id": 1}) is True
    assert evaluate({"id": {"$notInGroup": "missing"}}, {"id": 1}, {"g": [1]}) is True


def test_saved_group_array_attribute_and_null_group() -> None:
    groups: dict[str, Any] = {"g": [1, 2], "empty": None}
    assert evaluate({"ids": {"$inGroup": "g"}}, {"ids": [5, 2]}, groups) is True
    assert evaluate({"ids": {"$inGroup": "empty"}}, {"ids": [5, 2]}, groups) is False
