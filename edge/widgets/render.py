"""Widget HTML, rendered on the server in Jinja2's sandbox.

Every template (ours in ``edge/widgets/templates``, and a site's own under
``profiles/<site>/templates``, which take precedence) renders in a
``SandboxedEnvironment`` with autoescape on, so a product name such as
``<img src=x onerror=alert(1)>`` in the catalog, or anything a visitor typed,
arrives as text. Nothing is ever marked safe; links and image sources go
through the ``url`` filter, which lets only http(s) and site-relative URLs
through. The tracker places the result in a Shadow DOM root, behind the stylesheet
it got once in ``welcome``.

A template is configuration, and no configuration may stop or freeze the
server (docs/configuration.md, "Limits"), so the sandbox is bounded too
(``BoundedSandbox``): a template file is at most ``MAX_TEMPLATE_BYTES``;
``range`` gives at most ``MAX_RANGE`` numbers; lists and dicts cannot be
changed in place; every value a template builds (with an operator, a filter,
a call, a literal list, tuple or dict, or ``~``) is weighed and refused above
``MAX_VALUE`` (characters of a string, items of a container, a shared one
counted each time it is reached, as ``str()`` or ``==`` would walk it), and
where one step can multiply (``'x' * n``, ``2 ** n``, ``'%9999s'``,
``center(n)``, ``join``, ``replace``, ``indent``...) the size is estimated and
refused *before* it is built; one rendering writes at most
``MAX_OUTPUT_CHARS``. Whatever a rendering raises (``OverflowError``,
``RecursionError``, ``MemoryError`` ...) becomes a ``RenderError``. At load time
the checks also run ``within_budget``, of wall-clock time and memory.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import resource
import string
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, Template, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from edge.widgets.text import money, safe_url, text

TEMPLATES = Path(__file__).parent / "templates"
KIND_TEMPLATES = {
    "popup": "popup.html",
    "bar": "bar.html",
    "coupon": "coupon.html",
    "banner": "banner.html",
    "recommendations": "recommendations.html",
}
COUPON_CODE_TEMPLATE = "coupon_code.html"
T = TypeVar("T")

# A widget template is a few kilobytes, loops over at most a few dozen
# products and renders a few kilobytes: these are far above that, and far
# below what could hold a CPU for a noticeable time or use much memory.
MAX_TEMPLATE_BYTES = 256 * 1024
MAX_RANGE = 10_000  # Jinja's own sandbox allows 100,000
MAX_VALUE = 100_000  # characters or items in one value a template builds
MAX_OUTPUT_CHARS = 1_000_000  # one rendering's HTML
MAX_INT_BITS = 4_096  # integers a template computes (2 ** 4096 has 1,234 digits)
MAX_CHECK_MEMORY_BYTES = 256 * 1024 * 1024  # growth of the process during check renderings


class RenderError(ValueError):
    """A template failed; raised at load time for every campaign's widget."""


class TemplateLimit(SecurityError):
    """A template went over one of this module's limits."""


def weigh(value: object, limit: int = MAX_VALUE) -> int:
    """Characters of strings plus items of containers in ``value``, a shared
    container counted every time it is reached; stops counting past ``limit``
    (so weighing costs at most ``limit`` steps, however large the value)."""
    total = 0
    stack: list[object] = [value]
    while stack and total <= limit:
        item = stack.pop()
        total += 1
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
    return total


def bounded(value: Any) -> Any:
    """``value`` itself, or ``TemplateLimit`` when it weighs more than ``MAX_VALUE``."""
    if weigh(value) > MAX_VALUE:
        raise TemplateLimit(f"a template value of more than {MAX_VALUE} characters or items")
    return value


def _room(size: int) -> None:
    """Refuse a step that would build a value of ``size`` (estimated before)."""
    if size > MAX_VALUE:
        raise TemplateLimit(f"a template value of more than {MAX_VALUE} characters or items")


def _int(value: Any) -> int:
    # Not an int: the operation itself raises its TypeError.
    return value if isinstance(value, int) else len(value) if isinstance(value, str) else 0


def _metered(items: Iterator[Any]) -> Iterator[Any]:
    """A lazy sequence (``map``, ``select`` ...) as a filter consumes it: all
    its items together weigh at most ``MAX_VALUE``."""
    total = 0
    for item in items:
        total += weigh(item)
        _room(total)
        yield item


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = MAX_RANGE + 1
    if count > MAX_RANGE:
        raise TemplateLimit(f"range() of more than {MAX_RANGE} numbers")
    return numbers


# --- sizes of the steps that multiply -------------------------------------------------

_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _printf_size(fmt: str, values: Any) -> int:
    size = len(fmt) + weigh(values)
    for match in _PRINTF.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise TemplateLimit("'*' widths are not allowed in templates")
            size += int(number or 0)
    return size


def _format_size(fmt: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    size = len(fmt) + weigh(list(args)) + weigh(dict(kwargs))
    with contextlib.suppress(ValueError):  # a malformed format: str.format says so itself
        for _, _, spec, _ in string.Formatter().parse(fmt):
            if spec and "{" in spec:
                raise TemplateLimit("nested format fields are not allowed in templates")
            size += sum(int(n) for n in re.findall(r"\d+", spec or ""))
    return size


def _replace_size(text: str, old: Any, new: Any, count: Any = None) -> int:
    old, new = str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(text) + times * len(new)


def _join_size(separator: str, items: list[Any]) -> int:
    return weigh(items) + len(separator) * len(items)


def _taken(items: Any) -> Any:
    """A lazy sequence as a list, metered; anything else as it is."""
    return list(_metered(items)) if isinstance(items, types.GeneratorType) else items


def _check_str_method(owner: str, name: str, args: tuple[Any, ...], kwargs: Any) -> tuple[Any, ...]:
    if name in {"center", "ljust", "rjust", "zfill"} and args:
        _room(_int(args[0]))
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        _room(len(owner) + owner.count("\t") * _int(tabsize))
    elif name == "join" and args:
        items = _taken(args[0])
        if isinstance(items, list | tuple):
            _room(_join_size(owner, list(items)))
        args = (items, *args[1:])
    elif name == "replace" and len(args) >= 2:
        _room(_replace_size(owner, *args[:3]))
    elif name in {"format", "format_map"}:
        _room(_format_size(owner, args, kwargs))
    return args


# Filters whose result can be much larger than their input: the size, from
# the filter's own arguments (as Jinja names them), before it runs.
def _join_filter(a: dict[str, Any]) -> None:
    a["value"] = _taken(a["value"])
    if isinstance(a["value"], list | tuple):
        _room(_join_size(str(a.get("d", "")), list(a["value"])))


def _indent_filter(a: dict[str, Any]) -> None:
    text = str(a["s"])
    _room(len(text) + (text.count("\n") + 1) * _int(a.get("width", 4)))


def _wordwrap_filter(a: dict[str, Any]) -> None:
    text, width = str(a["s"]), max(_int(a.get("width", 79)), 1)
    _room(len(text) + (len(text) // width + 1) * len(str(a.get("wrapstring") or "\n")))


def _urlize_filter(a: dict[str, Any]) -> None:
    extra = len(str(a.get("target") or "")) + len(str(a.get("rel") or ""))
    _room(len(str(a["value"])) * (1 + extra))


def _sum_filter(a: dict[str, Any]) -> None:
    # Numbers only: adding up lists or strings copies them over and over.
    if not isinstance(a.get("start", 0), int | float):
        raise TemplateLimit("sum() adds numbers only in templates")


_FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": lambda a: _room(_int(a.get("width", 80))),
    "format": lambda a: _room(_printf_size(str(a["value"]), a.get("kwargs") or a.get("args"))),
    "indent": _indent_filter,
    "join": _join_filter,
    "replace": lambda a: _room(_replace_size(str(a["s"]), a["old"], a["new"], a.get("count"))),
    "wordwrap": _wordwrap_filter,
    "batch": lambda a: _room(_int(a["linecount"]) if a.get("fill_with") is not None else 0),
    "slice": lambda a: _room(_int(a["slices"])),
    "tojson": lambda a: _room(weigh(a["value"]) * (1 + _int(a.get("indent") or 0))),
    "urlize": _urlize_filter,
    "sum": _sum_filter,
}


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    signature = inspect.signature(function)  # the sync function's, for Jinja's async variants
    # An async variant of a filter that takes no context is called with the
    # eval context first anyway, and drops it (jinja2.async_utils).
    sync = getattr(function, "__wrapped__", function)
    skip = int(bool(getattr(function, "jinja_async_variant", False)) and not _passes(sync))

    @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marks
    def filter_(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_metered(a) if isinstance(a, types.GeneratorType) else a for a in args)
        if check is not None:
            bound = signature.bind(*args[skip:], **kwargs)
            bound.apply_defaults()
            check(bound.arguments)
            args, kwargs = (*args[:skip], *bound.args), bound.kwargs
        return bounded(function(*args, **kwargs))

    return filter_


def _passes(function: Callable[..., Any]) -> bool:
    return hasattr(function, "jinja_pass_arg")


# --- literals and ~: weighed where they are built ---------------------------------------


BOUNDED_FILTER = "edge_bounded"  # a filter, so that no template variable can shadow it


def _weigh_literals(node: nodes.Node) -> nodes.Node:
    """Pass every list, tuple, dict and ``~`` through the ``edge_bounded``
    filter: they are the only ways to build a value that no hook of the
    sandbox sees, and ``[a, a]`` doubles what ``a`` stands for at no cost,
    forty times in forty lines."""
    for name in node.fields:
        value = getattr(node, name, None)
        if isinstance(value, nodes.Node):
            setattr(node, name, _weigh_literals(value))
        elif isinstance(value, list):
            setattr(
                node, name, [_weigh_literals(v) if isinstance(v, nodes.Node) else v for v in value]
            )
    literal = isinstance(node, nodes.List | nodes.Dict | nodes.Concat)
    if literal or (isinstance(node, nodes.Tuple) and node.ctx == "load"):
        weighed = nodes.Filter(node, BOUNDED_FILTER, [], [], None, None, lineno=node.lineno)
        if node.environment is not None:
            weighed.set_environment(node.environment)
        return weighed
    return node


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(  # noqa: N802 (Jinja's visitor names)
        self, node: nodes.Template, frame: Frame | None = None
    ) -> None:
        _weigh_literals(node)
        super().visit_Template(node, frame)


class _BoundedLoader(FileSystemLoader):
    """Refuses a template file larger than ``MAX_TEMPLATE_BYTES`` before reading it."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        for folder in self.searchpath:
            path = Path(folder, *split_template_path(template))
            if path.is_file():
                if path.stat().st_size > MAX_TEMPLATE_BYTES:
                    raise TemplateLimit(
                        f"{template}: more than the {MAX_TEMPLATE_BYTES} bytes a template may have"
                    )
                break
        return super().get_source(environment, template)


# Values a record field or a helper argument may hold for the fast paths of
# ``BoundedSandbox``: none of them is a method, a container or a generator.
_PLAIN = frozenset({str, int, float, bool, type(None)})
# What ``getattr`` finds on a plain dict: its methods and object's internals.
# Any other name of a dict is an item, which Jinja's sandbox returns unchecked.
_DICT_ATTRIBUTES = frozenset(dir(dict))
_MISSING = object()
# What Jinja's generated code passes a call inside a loop or a block, for
# functions that take the context (ours do not).
_LOOP_KWARGS = frozenset({"_loop_vars", "_block_vars"})


class Helper:
    """A function of ours a template calls (``t``, ``money``): it takes and
    returns plain values, so ``BoundedSandbox.call`` calls it without the
    checks a callable from elsewhere needs."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., str]) -> None:
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        return self.function(*args, **kwargs)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with the bounds of this module.

    Two fast paths give the sandbox's own answers without its checks, which
    were most of a recommendation block's rendering (about 35 lookups, each
    some 30 ``isinstance`` tests): a name of a plain dict that is not one of
    dict's own attributes is an item (as Jinja's ``getattr`` finds it), and
    a declared field of a record type (``records``: a catalog product's
    ``name``, ``price``...) holding a plain value is that value. Everything
    else (``product.__class__``, ``widget.items``, a method) goes through
    the sandbox as before."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(
        self, *, records: Mapping[type, frozenset[str]] | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.records: Mapping[type, frozenset[str]] = records or {}
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)  # generates as much text as it is asked for
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[BOUNDED_FILTER] = bounded

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                    _room(weigh(sequence) * times)
            if isinstance(left, int) and isinstance(right, int):
                _room_bits(left.bit_length() + right.bit_length())
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1:
                _room_bits(right * left.bit_length())
        elif operator == "%" and isinstance(left, str):
            _room(_printf_size(left, right))
        return bounded(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is dict:
            if attribute not in _DICT_ATTRIBUTES:
                value = obj.get(attribute, _MISSING)
                return self.undefined(obj=obj, name=attribute) if value is _MISSING else value
        else:
            fields = self.records.get(kind)
            if fields is not None and attribute in fields:
                value = getattr(obj, attribute)
                if type(value) in _PLAIN:
                    return value
        return super().getattr(obj, attribute)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if (
            type(obj) is Helper
            and kwargs.keys() <= _LOOP_KWARGS
            and all(type(a) in _PLAIN for a in args)
        ):
            return bounded(obj.function(*args))  # (Jinja's Context.call drops those kwargs too)
        target = getattr(obj, "__wrapped__", obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(owner, getattr(target, "__name__", ""), args, kwargs)
        args = tuple(_metered(a) if isinstance(a, types.GeneratorType) else a for a in args)
        return bounded(super().call(context, obj, *args, **kwargs))


def _room_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimit(f"a number of more than {MAX_INT_BITS} bits")


def _render(template: Template, context: Mapping[str, Any]) -> str:
    """The template's output, refused past ``MAX_OUTPUT_CHARS`` while it is written."""
    parts: list[str] = []
    size = 0
    stream = template.generate(**context)
    try:
        for part in stream:
            size += len(part)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimit(f"more than {MAX_OUTPUT_CHARS} characters of output")
            parts.append(part)
    finally:
        if isinstance(stream, types.GeneratorType):
            stream.close()
    return "".join(parts)


class Renderer:
    """One per site: the site's templates first, then edge's."""

    def __init__(
        self,
        site_folder: Path | None,
        *,
        currency: str,
        locale: str,
        records: Mapping[type, Iterable[str]] | None = None,
    ) -> None:
        """``records``: the record types templates read (the catalog's
        products) with their data fields, read without the sandbox's checks
        (``BoundedSandbox``)."""
        loaders = []
        if site_folder is not None and (site_folder / "templates").is_dir():
            loaders.append(_BoundedLoader(site_folder / "templates"))
        loaders.append(_BoundedLoader(TEMPLATES))
        self.env = BoundedSandbox(
            loader=ChoiceLoader(loaders),
            autoescape=True,
            auto_reload=False,
            records={kind: frozenset(fields) for kind, fields in (records or {}).items()},
        )
        self.env.filters["url"] = _bounded_filter("url", safe_url)
        self.currency = currency
        self.locale = locale
        self._stylesheet: str | None = None

    def stylesheet(self) -> str:
        """The widgets' CSS (``_style.html``, a site may override it), sent once
        per connection in ``welcome`` and put by the tracker into every widget's
        Shadow DOM root, so decisions carry markup only."""
        if self._stylesheet is None:
            try:
                self._stylesheet = _render(self.env.get_template("_style.html"), {})
            except Exception as exc:  # whatever a template raises: a RenderError
                raise RenderError(f"_style.html: {_describe(exc)}") from exc
        return self._stylesheet

    def money(self, amount: Any, lang: str) -> str:
        """A price as widgets show it: the site's currency, formatted for the
        page's language (``page_language``). The demo shop's pages use this
        too, so a product costs the same string on the page and in a widget."""
        return money(amount, self.currency, lang or self.locale)

    def template_name(self, widget: Mapping[str, Any], *, revealed: bool = False) -> str:
        if revealed:
            return COUPON_CODE_TEMPLATE
        kind = widget.get("kind", "")
        if kind == "html":
            return str(widget.get("template", ""))
        return KIND_TEMPLATES[kind]

    def render(
        self,
        widget: Mapping[str, Any],
        *,
        lang: str,
        campaign: str,
        variant: str,
        placement: str,
        products: Sequence[Any] = (),
        code: str | None = None,
        revealed: bool = False,
    ) -> str:
        default = self.locale.split("-")[0].split("_")[0]

        def t(key: str) -> str:
            return text(widget, key, lang, default)

        def price(amount: Any) -> str:
            return self.money(amount, lang)

        try:
            template = self.env.get_template(self.template_name(widget, revealed=revealed))
            return _render(
                template,
                {
                    "widget": widget,
                    "t": Helper(t),
                    "money": Helper(price),
                    "campaign": campaign,
                    "variant": variant,
                    "placement": placement,
                    "products": list(products),
                    "code": code,
                    "lang": lang,
                },
            )
        except Exception as exc:  # OverflowError, RecursionError ... too: a RenderError
            raise RenderError(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


# --- the load-time budget ---------------------------------------------------------------


class _OverBudget(BaseException):
    """Raised into the rendering thread's Python code by ``within_budget``. A
    BaseException, so that no ``except Exception`` on the way (Jinja's own,
    Babel's) can swallow it and let the rendering run on."""


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux counts KiB


def within_budget(
    render: Callable[[], T], deadline: float, memory_bytes: int = MAX_CHECK_MEMORY_BYTES
) -> T:
    """``render()`` (a check rendering), stopped with a ``RenderError`` once
    ``time.monotonic()`` passes ``deadline`` or the process's peak memory has
    grown by ``memory_bytes``.

    A trace function (``sys.settrace``: this thread only) sees every line the
    template, Jinja and our helpers run, from the first frame ``render`` opens
    (this function's own frame is not traced, so its clean-up always runs); a
    single C-level step is not interrupted, which is why the sandbox refuses
    large steps before they start. The previous trace function (a debugger,
    coverage) is restored."""
    start = _peak_rss_bytes()
    seconds = max(deadline - time.monotonic(), 0.0)
    lines = 0

    def trace(frame: types.FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        lines += 1
        if time.monotonic() > deadline:
            raise _OverBudget(f"took longer than its time budget ({seconds:.2g} s)")
        if lines % 1024 == 0 and _peak_rss_bytes() - start > memory_bytes:
            raise _OverBudget(f"used more than {memory_bytes // (1024 * 1024)} MiB")
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        return render()
    except _OverBudget as exc:
        raise RenderError(f"the check rendering {exc}") from None
    finally:
        sys.settrace(previous)
