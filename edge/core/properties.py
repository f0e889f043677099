"""Custom profile properties and custom event properties (issue 14, item 3).

A site declares, in its YAML (docs/configuration.md, "properties" and
"events"):

* ``properties``: the shop's own facts about a visitor (loyalty points, plan,
  preferred store), each with a type and optional bounds. They are kept on
  the profile (``Profile.props``), set only by a verified server-side call
  (the admin API's ``PATCH .../properties``, never by the tracker), and
  conditions read them as ``props.<name>``;
* ``events``: the props a custom event of a given name carries. The tracker's
  ``{type: custom, name, props}`` is checked against them (an undeclared or
  mistyped prop refuses the event), and the decision the event triggers
  (``trigger: {event: <name>}``) reads them as ``event.<prop>``. They are not
  kept on the profile: they live for that decision only.

Pure: the models validate shapes, ``compile_declarations`` builds the
checkers, ``set_properties`` is the change the admin API queues on the
ledger (re-applied after a lost compare-and-set, so it is exactly-once with
concurrent tabs like any other change).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.core.profile import Profile, evolve

PROPERTY_NAME = r"^[a-z][a-z0-9_]{0,63}$"
EVENT_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"  # as a custom event's name (edge.tracker.protocol)
MAX_PROPERTIES = 100
MAX_EVENT_PROPS = 32  # a custom event carries at most 32 props (edge.tracker.protocol)
MAX_STRING = 1000  # the longest string property, whatever max_length says
DEFAULT_MAX_LENGTH = 256

PropType = Literal["str", "int", "float", "bool"]
Scalar = str | int | float | bool


class PropertyConfig(BaseModel):
    """One property: a ``type``, or an ``enum`` of allowed values (its type is
    theirs), with ``min`` / ``max`` for numbers and ``max_length`` for text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: PropType | None = None
    enum: Annotated[list[Scalar], Field(min_length=1, max_length=100)] | None = None
    min: Annotated[float, Field(allow_inf_nan=False)] | None = None
    max: Annotated[float, Field(allow_inf_nan=False)] | None = None
    max_length: Annotated[int, Field(ge=1, le=MAX_STRING)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PropertyConfig:
        if self.type is None and self.enum is None:
            raise ValueError("a property has a type (str, int, float, bool) or an enum")
        kind = self.type or _kind_of(self.enum or [])
        if self.enum is not None and any(_check(kind, v) for v in self.enum):
            raise ValueError(f"every enum value must be of type {kind}")
        if (self.min is not None or self.max is not None) and kind not in ("int", "float"):
            raise ValueError("min and max are for int and float properties")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError("max must not be below min")
        if self.max_length is not None and kind != "str":
            raise ValueError("max_length is for str properties")
        return self


# a property: its type alone (``plan: str``), or the full form
PropertySpec = PropType | PropertyConfig
PropertyName = Annotated[str, Field(pattern=PROPERTY_NAME)]
EventName = Annotated[str, Field(pattern=EVENT_NAME)]


class EventConfig(BaseModel):
    """The props a custom event of this name carries (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    props: Annotated[dict[PropertyName, PropertySpec], Field(max_length=MAX_EVENT_PROPS)] = {}


PropertiesConfig = Annotated[dict[PropertyName, PropertySpec], Field(max_length=MAX_PROPERTIES)]
EventsConfig = Annotated[dict[EventName, EventConfig], Field(max_length=1000)]


@dataclass(frozen=True, slots=True)
class Spec:
    """A compiled property: ``problem(value)`` says what is wrong with a value."""

    kind: PropType
    enum: tuple[Scalar, ...] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int = DEFAULT_MAX_LENGTH

    def problem(self, value: object) -> str | None:
        wrong = _check(self.kind, value)
        if wrong:
            return wrong
        if self.enum is not None and not any(_same(value, e) for e in self.enum):
            return "must be one of " + ", ".join(repr(e) for e in self.enum)
        if isinstance(value, str) and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        if self.min is not None and isinstance(value, int | float) and value < self.min:
            return f"must be at least {_number(self.min)}"
        if self.max is not None and isinstance(value, int | float) and value > self.max:
            return f"must be at most {_number(self.max)}"
        return None

    def normal(self, value: Scalar) -> Scalar:
        """``value`` as stored and compared: an int given for a float is a float."""
        return float(value) if self.kind == "float" else value


@dataclass(frozen=True, slots=True)
class Declarations:
    """A site's declared profile properties and custom event props."""

    properties: Mapping[str, Spec] = field(default_factory=dict)
    events: Mapping[str, Mapping[str, Spec]] = field(default_factory=dict)


NO_DECLARATIONS = Declarations()


def compile_declarations(properties: PropertiesConfig, events: EventsConfig) -> Declarations:
    return Declarations(
        {name: _spec(spec) for name, spec in properties.items()},
        {name: {p: _spec(s) for p, s in e.props.items()} for name, e in events.items()},
    )


def _spec(spec: PropertySpec) -> Spec:
    if isinstance(spec, str):
        return Spec(spec)
    kind = spec.type or _kind_of(spec.enum or [])
    return Spec(
        kind,
        tuple(spec.enum) if spec.enum is not None else None,
        spec.min,
        spec.max,
        spec.max_length or DEFAULT_MAX_LENGTH,
    )


def _kind_of(values: list[Scalar]) -> PropType:
    first = values[0] if values else ""
    if isinstance(first, bool):
        return "bool"
    if isinstance(first, int):
        return "float" if any(isinstance(v, float) for v in values) else "int"
    return "float" if isinstance(first, float) else "str"


def _check(kind: PropType, value: object) -> str | None:
    """What is wrong with ``value``'s type for ``kind``, or None."""
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53
    else:
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and abs(value) < 1e15
        )
    return None if ok else f"must be {_A[kind]}"


_A = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false"}


def _same(value: object, allowed: Scalar) -> bool:
    return value == allowed and isinstance(value, bool) == isinstance(allowed, bool)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


class PropertyError(ValueError):
    """A value the declaration refuses; the message names the property."""


def checked_values(values: object, declared: Mapping[str, Spec]) -> dict[str, Scalar | None]:
    """``values`` (property -> value, None deleting it) as stored, or a
    ``PropertyError`` naming the first property refused."""
    if not isinstance(values, Mapping) or not values:
        raise PropertyError("the body is a JSON object of property -> value (null deletes)")
    out: dict[str, Scalar | None] = {}
    for name, value in values.items():
        spec = declared.get(name) if isinstance(name, str) else None
        if spec is None:
            known = ", ".join(sorted(declared)) or "none are declared"
            raise PropertyError(f"unknown property {str(name)[:64]!r} (declared: {known})")
        if value is None:
            out[name] = None
            continue
        problem = spec.problem(value)
        if problem:
            raise PropertyError(f"property {name!r}: {problem}")
        out[name] = spec.normal(value)
    return out


def set_properties(profile: Profile, values: Mapping[str, Scalar | None]) -> Profile:
    """``profile`` with ``values`` set (None deletes), properties sorted by
    name; the same object when nothing changes. Pure: the ledger re-applies
    it to a newer stored profile after a lost compare-and-set."""
    props = dict(profile.props)
    for name, value in values.items():
        if value is None:
            props.pop(name, None)
        else:
            props[name] = value
    updated = tuple(sorted(props.items()))
    if updated == profile.props:
        return profile
    return evolve(profile, {"props": updated})


def checked_event_props(
    name: str, props: Mapping[str, Any], declared: Mapping[str, Mapping[str, Spec]]
) -> str | None:
    """Why a custom event's props are refused, or None. Events of a name not
    declared pass (their props are not read by anything)."""
    specs = declared.get(name)
    if specs is None:
        return None
    for prop, value in props.items():
        spec = specs.get(prop)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            return f"event {name!r}: undeclared prop {prop[:64]!r} (declared: {known})"
        if value is not None:
            problem = spec.problem(value)
            if problem:
                return f"event {name!r}: prop {prop!r} {problem}"
    return None


def event_attributes(props: Mapping[str, Any], specs: Mapping[str, Spec]) -> dict[str, Any]:
    """The ``event.*`` attributes of a declared event: every declared prop,
    null when the event did not carry it."""
    return {
        prop: (spec.normal(props[prop]) if props.get(prop) is not None else None)
        for prop, spec in specs.items()
    }
