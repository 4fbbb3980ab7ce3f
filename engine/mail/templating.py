"""The hardened Jinja environment every email template and subject is compiled in.

Owns: ``Sandbox`` (Jinja's ``ImmutableSandboxedEnvironment`` + ``StrictUndefined`` + HTML
autoescape for ``*.html``; strings compiled with ``from_string`` are not escaped; Jinja's i18n
extension with Babel's translations for singular and plural forms), the ``money``
filter (engine/money.py does the formatting) and the ``date`` filter, and ``located()``, which
turns any failure of a template into a TemplateError naming the template file and line. What a
campaign kind may use, and ``lint()``, live in contract.py; rendering whole emails in render.py.
Must not: know campaign kinds, inline CSS, open a session or read the clock.

Marketer templates are untrusted code. Besides Jinja's own refusals (attributes starting with
"_" such as ``__class__``/``__subclasses__``, methods that mutate lists and dicts, one ``range()``
over 100,000 items) the sandbox refuses, each as a SecurityError that ``located()`` reports:
- a string or list longer than MAX_SIZE built with ``*``, ``+``, ``~``, ``%``, ``**`` or a filter,
  refused before it is built wherever its size is known in advance (``'x' * 10**9``);
- width arguments over MAX_ITEMS to center/indent/wordwrap/truncate/batch/slice, ``ljust`` and
  friends, and format widths (``'%999999999s'``, ``'{:>999999999}'``);
- more than MAX_ITEMS ``range()`` items in one render (nested loops over big ranges);
- a rendered template longer than MAX_SIZE characters.
Every render goes through ``Sandbox.render`` (a fresh loop budget). For speed, ``a.b`` on a dict
looks the key up first, so a key named like a dict method (``items``) wins over the method.

Compiling is bounded too: Jinja's parser and Python's compiler recurse, so a template nested
more than MAX_NESTING tags or brackets deep, or a tag of more than MAX_TAG_TOKENS tokens, is a
TemplateSyntaxError at its line before either runs; what Python still refuses in the generated
code (nested blocks, parentheses) is one too. A macro or include that calls itself without end
is a RecursionError at render time, one of RENDER_ERRORS.
Not covered: CPU spent in nested loops over long strings or lists that are each under the caps;
run workers under a memory/CPU limit if templates come from people you do not trust.
"""

from __future__ import annotations

import math
import re
from contextvars import ContextVar
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
from babel.support import NullTranslations
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import TemplateError
from engine.money import DEFAULT_CURRENCY, DEFAULT_LOCALE, Money

MAX_SIZE = 1_000_000  # characters of a string or a rendered template (Gmail clips at ~100 KB)
MAX_ITEMS = 100_000  # range() items per render, list items, width arguments (Jinja's MAX_RANGE)
MAX_NESTING = 15  # tags ({% for %}, {% if %}, ...) or brackets inside each other (Python: 20)
MAX_TAG_TOKENS = 150  # names, operators and values in one {{ }} or {% %}
_NESTING_TAGS = frozenset({"for", "if", "macro", "call", "filter", "with", "block",
                           "autoescape", "trans"})
_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")
# A printf or str.format width/precision of a million or more, or one taken from an argument.
_BIG_WIDTH = re.compile(r"%[-#0 +]*(\*|\d{6,}|\d*\.(\*|\d{6,}))|\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")
_WIDTH_FILTERS = ("center", "indent", "wordwrap", "truncate", "batch", "slice")
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_range_left: ContextVar[list[int]] = ContextVar("range_left")


def _refuse(what: str) -> SecurityError:
    return SecurityError(f"the sandbox refused {what}; templates may not build values over "
                         f"{MAX_SIZE:,} characters or loop over {MAX_ITEMS:,} items")


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_SIZE:
        raise _refuse(f"a value of {len(value):,} characters or items")
    return value


def _check_widths(args: tuple, kwargs: dict, what: str) -> None:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and abs(arg) > MAX_ITEMS:
            raise _refuse(f"{what} with a width of {arg:,}")


class _SizedCodeGenerator(CodeGenerator):
    """Checks the result of every ``~`` concatenation: Jinja gives no hook for it."""

    def visit_Concat(self, node: Any, frame: Any) -> None:
        self.write("environment.check_size(")
        super().visit_Concat(node, frame)
        self.write(")")


class Sandbox(ImmutableSandboxedEnvironment):
    """The one environment for templates and subjects; ``currency`` and ``locale`` are what the
    ``money`` filter uses for integer cents."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _SizedCodeGenerator
    check_size = staticmethod(_check_size)

    def __init__(self, templates_dir: str | Path | None = None,
                 currency: str = DEFAULT_CURRENCY, locale: str = DEFAULT_LOCALE):
        loader = jinja2.FileSystemLoader(str(templates_dir)) if templates_dir else None
        super().__init__(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html", "htm"], default_for_string=False),
            auto_reload=False,
            extensions=["jinja2.ext.i18n"],
        )
        # Singular and plural through {% trans count=n %}...{% pluralize %}...{% endtrans %}
        # (and ngettext): Babel's translations, English rules until a shop installs its own.
        self.install_gettext_translations(NullTranslations(), newstyle=True)
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) would build a huge text
        self.globals["range"] = _budgeted_range
        self.filters["money"] = money_filter(currency, locale)
        self.filters["date"] = format_date
        for name in _WIDTH_FILTERS:
            self.filters[name] = _width_checked(name, self.filters[name])
        self.filters["format"] = _format_checked(self.filters["format"])
        for name in ("replace", "join", "center", "indent", "wordwrap"):
            self.filters[name] = _result_checked(self.filters[name])

    @staticmethod
    def concat(chunks: Any) -> str:  # type: ignore[override]
        """Join a template's output, refusing it once it passes MAX_SIZE characters."""
        parts, size = [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_SIZE:
                raise _refuse(f"an output of more than {MAX_SIZE:,} characters")
            parts.append(chunk)
        return "".join(parts)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Contexts are dicts: look the key up first, skipping the AttributeError that Jinja's
        # attribute-first lookup raises for every ``product.name`` (a third of render time).
        # A key named like a dict method (``items``) therefore wins over the method.
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > MAX_SIZE:
                        raise _refuse(f"repeating a value {times:,} times")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if right * math.log2(abs(left) or 1) > 4096:
                    raise _refuse(f"the power {left}**{right}")
        elif operator == "%" and isinstance(left, str):
            if _BIG_WIDTH.search(left):
                raise _refuse("a format width over 99,999")
        return _check_size(self.binop_table[operator](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        # str methods reach here bound to their string; the sandbox wraps str.format.
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str):
            name = getattr(method, "__name__", "")
            if name in _WIDTH_METHODS:
                _check_widths(args, kwargs, f"str.{name}()")
            elif name in ("format", "format_map") and _BIG_WIDTH.search(owner):
                raise _refuse("a format width over 99,999")
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def render(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        """Render with a fresh loop budget; every render of the engine goes through here."""
        _range_left.set([MAX_ITEMS])
        return template.render(context)

    def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
        _check_nesting(self, source, name, filename)
        return super()._parse(source, name, filename)

    def compile(self, source: Any, name: str | None = None, filename: str | None = None,
                raw: bool = False, defer_init: bool = False) -> Any:
        try:
            return super().compile(source, name, filename, raw, defer_init)
        except (RecursionError, SyntaxError, MemoryError) as exc:
            # Python's own limits on the code Jinja generates; _check_nesting keeps templates
            # well inside them, this is the backstop.
            raise jinja2.TemplateSyntaxError(
                f"the template is too deeply nested to compile ({type(exc).__name__}); "
                "simplify it", getattr(exc, "lineno", None) or 1, name, filename) from None


def _check_nesting(env: jinja2.Environment, source: str, name: str | None,
                   filename: str | None) -> None:
    """Refuse, at its line, a tag or bracket nested over MAX_NESTING deep or a tag of more than
    MAX_TAG_TOKENS tokens: Jinja's parser and Python's compiler would overflow their stacks."""
    tags = brackets = tokens = 0
    first_name = False
    for lineno, kind, value in env.lex(source, name, filename):
        if kind in ("block_begin", "variable_begin"):
            tokens, first_name = 0, kind == "block_begin"
            continue
        if kind == "whitespace":
            continue
        tokens += 1
        if tokens > MAX_TAG_TOKENS:
            raise jinja2.TemplateSyntaxError(
                f"a tag holds more than {MAX_TAG_TOKENS} names, values and signs; split it "
                "into several", lineno, name, filename)
        if first_name and kind == "name":
            if value in _NESTING_TAGS:
                tags += 1
            elif value.startswith("end") and value[3:] in _NESTING_TAGS:
                tags -= 1
        first_name = False
        if kind == "operator" and value in _OPEN:
            brackets += 1
        elif kind == "operator" and value in _CLOSE:
            brackets -= 1
        if tags > MAX_NESTING or brackets > MAX_NESTING:
            raise jinja2.TemplateSyntaxError(
                f"tags or brackets are nested more than {MAX_NESTING} levels deep here; "
                "simplify the template", lineno, name, filename)


def _budgeted_range(*args: int) -> range:
    """range() that shares MAX_ITEMS items between all the loops of one render."""
    numbers = range(*args)
    left = _range_left.get(None)
    if left is None:  # rendered outside Sandbox.render: this call alone is the budget
        left = [MAX_ITEMS]
    left[0] -= len(numbers)
    if left[0] < 0:
        raise _refuse(f"range() loops over more than {MAX_ITEMS:,} items in one email")
    return numbers


def _width_checked(name: str, func: Any) -> Any:
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_widths(args, kwargs, f"the {name} filter")
        return func(value, *args, **kwargs)
    return _same_flags(checked, func)


def _format_checked(func: Any) -> Any:
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and _BIG_WIDTH.search(value):
            raise _refuse("a format width over 99,999")
        return _check_size(func(value, *args, **kwargs))
    return _same_flags(checked, func)


def _result_checked(func: Any) -> Any:
    def checked(*args: Any, **kwargs: Any) -> Any:
        return _check_size(func(*args, **kwargs))
    return _same_flags(checked, func)


def _same_flags(wrapper: Any, func: Any) -> Any:
    """Keep Jinja's pass_context/pass_eval_context marker of the wrapped filter."""
    if hasattr(func, "jinja_pass_arg"):
        wrapper.jinja_pass_arg = func.jinja_pass_arg
    return wrapper


def money_filter(currency: str, locale: str) -> Any:
    """The ``money`` filter: a Money prints as it is (it already prints formatted); integer
    cents, as contexts held before money became Money, print in ``currency`` and ``locale``.
    ``|money("USD")`` names another currency. None → ""."""
    def money(value: Money | int | None, code: str | None = None) -> str:
        if value is None:
            return ""
        if isinstance(value, Money):
            return str(value if code is None else Money(value.cents, code, value.locale))
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"money expects an amount (Money or integer cents), got {value!r}")
        return str(Money(value, code or currency, locale))
    return money


def format_date(value: str | date | None, fmt: str | None = None) -> str:
    """ISO date/datetime string or date → "1 July 2026" (or ``fmt`` for strftime); None → ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if not isinstance(value, date):
        raise TypeError(f"date expects a date or an ISO date text, got {type(value).__name__}")
    if fmt:
        return value.strftime(fmt)
    return f"{value.day} {value.strftime('%B %Y')}"


def located(exc: BaseException, path: str | Path | None = None,
            line: int | None = None) -> TemplateError:
    """A TemplateError for ``exc`` at the deepest template line of its traceback.

    Jinja rewrites tracebacks so that template code shows as frames of the template file;
    ``path``/``line`` are used when there is none (a subject string, whose frames say
    "<template>").
    """
    if isinstance(exc, jinja2.TemplateSyntaxError):
        message = f"syntax error: {_PLAIN.get(exc.message or '', exc.message)}"
        # "<introspection>" and "<template>" name no file: Jinja's own passes over a tree.
        if exc.filename and not exc.filename.startswith("<"):
            return TemplateError(message, exc.filename, exc.lineno)
        return TemplateError(message, path, exc.lineno if line is None else line)
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name in _TEMPLATE_FRAMES or code.co_name.startswith("block '"):
            if code.co_filename != "<template>":
                path = code.co_filename
            line = tb.tb_lineno if code.co_filename != "<template>" else line
        tb = tb.tb_next
    if isinstance(exc, jinja2.UndefinedError):
        message = f"{exc.message}: check the spelling against the variables this template gets"
    elif isinstance(exc, RecursionError):
        message = ("a macro, include or extends calls itself without end; make sure the "
                   "recursion stops")
    elif isinstance(exc, SecurityError | OverflowError):
        message = f"{exc}: remove it from the template"
    elif isinstance(exc, jinja2.TemplateError) and exc.message:
        message = exc.message  # "No test named 'vip' found."
    else:
        message = f"{type(exc).__name__}: {exc}"
    return TemplateError(message, path, line)


_TEMPLATE_FRAMES = frozenset({"template", "top-level template code"})
# Jinja's words where a marketer needs other ones.
_PLAIN = {"cannot use extend from a non top-level scope":
          "{% extends %} must stand at the top of the template, outside any block or tag"}


# Errors a template can cause while rendering (AttributeError: a filter given the wrong kind of
# value); anything else is a bug in the engine.
RENDER_ERRORS = (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError,
                 AttributeError, RecursionError)
