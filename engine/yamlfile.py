"""YAML that remembers where each value came from, and that a hostile file cannot blow up.

Marketers' files (campaigns, segments, config.yaml) are loaded into plain dicts and lists whose
mappings also carry the line and column of every key, so a validation error can say
``campaigns/winback.yaml:12:5: ...`` instead of a path into a data structure.
``locate()`` turns a pydantic error location (``("steps", 0, "offer")``) into that line, and
``problems_from_validation()`` turns a whole pydantic ``ValidationError`` into located errors.

Limits, checked while the file is read, each refused at the line where it is passed:
- MAX_BYTES of file: a campaign, a segment or config.yaml is a few kilobytes;
- MAX_DEPTH levels of nesting: a deeper file would exhaust Python's stack in the parser;
- MAX_NODES values once every alias (``*name``) is expanded: ten aliases of ten aliases of a
  list are billions of values to whoever walks the data ("billion laughs"), though PyYAML
  itself shares them.
Bytes that are not UTF-8, control characters YAML forbids (NUL), keys that are not names
(lists, mappings, and ``yes:``/``1:``/``null:``, which YAML reads as other types) and values
PyYAML cannot build (``2025-02-30``) are refused with their line too.
"""

from __future__ import annotations

import codecs
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from engine import display, money
from engine.errors import InputError, did_you_mean

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000


class LocatedDict(dict):
    """A dict loaded from YAML; ``lines[key]`` is the (line, column) of that key, 1-based."""

    start: tuple[int, int] = (1, 1)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, tuple[int, int]] = {}


class LocatedList(list):
    """A list loaded from YAML; ``lines[i]`` is the (line, column) of item i."""

    start: tuple[int, int] = (1, 1)

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.lines: list[tuple[int, int]] = []


class _Limit(yaml.MarkedYAMLError):
    """A limit or rule of ours broken at a mark; its problem is the whole message (the YAML
    itself is valid, so the message does not say "invalid YAML")."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem=problem, problem_mark=mark)


class _Refused(yaml.constructor.ConstructorError):
    """A refusal of ours while loading (its problem is already in the marketer's words)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds LocatedDict/LocatedList, refuses duplicate and non-scalar keys,
    and counts nesting and expanded values as it composes (see the module's limits)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0                      # values so far, aliases counted expanded
        self._sizes: dict[str, int] = {}     # anchor -> values it expands to

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count(self._sizes.get(event.anchor, 1), event.start_mark, event.anchor)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Limit(f"nested more than {MAX_DEPTH} levels deep; a campaign, segment or "
                         "config.yaml needs a few levels: flatten it", event.start_mark)
        before = self._nodes
        self._count(1, event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._sizes[anchor] = self._nodes - before
        return node

    def _count(self, size: int, mark: yaml.Mark, alias: str | None = None) -> None:
        self._nodes += size
        if self._nodes <= MAX_NODES:
            return
        if alias is not None:
            raise _Limit(f'the alias "*{alias}" repeats so much that the file would expand to '
                         f"more than {MAX_NODES:,} values; write the values out instead of "
                         "nesting aliases", mark)
        raise _Limit(f"the file holds more than {MAX_NODES:,} values; split it or shorten "
                     "its lists", mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError, LookupError) as exc:
            # A value PyYAML's own constructors choke on: "2025-02-30", "!!int 0x", ...
            raise _Refused(
                None, None, f"cannot read the value {node.value!r} ({exc}); quote it to "
                "keep it as text" if isinstance(node, yaml.ScalarNode) else
                f"cannot read this value ({exc})", node.start_mark) from None


_KINDS = {bool: "true/false value", int: "number", float: "number", type(None): "null"}


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocatedDict:
    loader.flatten_mapping(node)
    result = LocatedDict()
    result.start = _mark(node)
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Limit('a key must be a name, not a list or a mapping (a "?" or a bracket '
                         "starts one)", key_node.start_mark)
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, bool) and key_node.value.lower() not in ("true", "false"):
            key = key_node.value  # YAML 1.1 reads on:, off:, yes:, no: as true/false: a name here
        if not isinstance(key, str):  # true:, 1:, null: or a date are not names
            _amount_with_a_comma(result, key, key_node)
            kind = _KINDS.get(type(key), "value")
            raise _Limit(f'the key "{key_node.value}" is read as a {kind}, not a name; write it '
                         f'in quotes ("{key_node.value}") if you meant it', key_node.start_mark)
        if key in result:
            raise _Refused(None, None, f'the key "{key}" appears twice in the same mapping; '
                           "keep one of them", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = _mark(key_node)
    return result


def _amount_with_a_comma(result: LocatedDict, key: Any, key_node: yaml.Node) -> None:
    """{min_spend: 12,50}: inside { } the comma separates keys, so a decimal comma reads as
    the amount 12 and a key 50. Said as such, with the fix."""
    before = list(result.values())[-1] if result else None
    if isinstance(key, int) and isinstance(before, int | float) and \
            not isinstance(before, bool) and not isinstance(key, bool):
        raise _Limit(f'"{before},{key_node.value}" reads as {before} and a key '
                     f'"{key_node.value}" (inside {{ }} a comma separates keys); write '
                     f"{before}.{key_node.value}", key_node.start_mark)


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.start = _mark(node)
    result.lines = [_mark(child) for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse(text: str, path: str | Path) -> Any:
    """Parse YAML text; a syntax error or a passed limit becomes an InputError at its line
    and column, saying in the marketer's words what is wrong and how to fix it (``_syntax``)."""
    if len(text) > MAX_BYTES:
        _too_large(text.count("\n", 0, MAX_BYTES) + 1, path)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except _Limit as exc:
        mark = exc.problem_mark
        raise InputError(exc.problem, path, mark.line + 1, mark.column + 1) from None
    except yaml.MarkedYAMLError as exc:
        message, mark = _syntax(exc)
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise InputError(message, path, line, column) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML forbids (NUL, other control characters); position is in ``text``.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        name = " (NUL)" if code == 0 else ""
        raise InputError(f"the control character U+{code:04X}{name} is not allowed in a YAML "
                         "file; delete it (pasting from another program can bring one in)",
                         path, line, column) from None
    except yaml.YAMLError:
        raise InputError(_NOT_YAML, path, 1) from None


_NOT_YAML = ("this is not valid YAML; check the indentation (spaces only), the colon after each "
             "key, and that every quote and bracket is closed")
_CLOSING = {"sequence": ("[", "]"), "mapping": ("{", "}")}


def _syntax(exc: yaml.MarkedYAMLError) -> tuple[str, Any]:
    """PyYAML's words ("while parsing a block mapping ... expected <block end>") → what is wrong
    and the fix, and the mark that points at the mistake (where an unclosed quote or bracket
    starts, or where the parser stopped)."""
    problem, context = exc.problem or "", exc.context or ""
    where, start = exc.problem_mark or exc.context_mark, exc.context_mark or exc.problem_mark
    if isinstance(exc, _Refused):
        return problem, where
    if "constructor for the tag" in problem:
        tag = problem.rsplit(" ", 1)[-1].strip("'").replace("tag:yaml.org,2002:", "!!")
        return (f"the tag {tag} is not allowed here; write a plain value (text, a number, a "
                "list or keys and values)"), where
    if "undefined alias" in problem:
        name = _word_at(where)
        return (f'"{name}" names no anchor above it; a value starting with * must be in '
                "quotes"), where
    if "recursive node" in problem:
        return ("this value contains itself (an alias inside its own anchor); write it out "
                "instead"), where
    if "for merging" in problem or "merge" in context:
        return ("<<: merges the keys of a mapping (like <<: *defaults) into this one; what "
                "follows it here is not a mapping: remove the line or point it at one"), where
    if "single document" in context:
        return ("a second document (after a line ---) in the file; a file holds one: remove "
                "the --- line and what follows it, or put that in a file of its own"), where
    if "quoted scalar" in context:
        quote = _char_at(start) or '"'
        return f"this quote is never closed; end the value with the same quote ({quote})", start
    if "flow sequence" in context or "flow mapping" in context:
        opening, closing = _CLOSING["sequence" if "sequence" in context else "mapping"]
        return (f"this {opening} is never closed; add the closing {closing} (and separate its "
                "items with commas)"), start
    if "mapping values are not allowed" in problem:
        if _first_colon_of_an_indented_line(where):  # "  template: x" under "kind: winback"
            return ("this line is indented more than the key above it; indent it with spaces "
                    "like the key it belongs beside"), where
        return ("a colon followed by a space inside a value; put the whole value in quotes, "
                'like subject: "Hi: 10% off"'), where
    if "'\\t'" in problem:
        return "a tab character; indent with spaces only", where
    if "cannot start any token" in problem or "alias" in context or "anchor" in context:
        char = _char_at(where) or problem.partition("'")[2][:1]
        return f"a value cannot start with {char}; put the whole value in quotes", where
    if "escape" in problem:
        return ("an unknown escape after \\ inside double quotes; use single quotes around "
                "this value instead"), where
    if "could not find expected ':'" in problem:
        return ("a line without a colon; write key: value, or put a value that goes on "
                "over several lines in quotes"), start
    if "<block end>" in problem or "expected key" in problem or "indicator" in problem:
        return ("this line is indented differently from the lines above it; indent it with "
                "spaces like the key it belongs beside"), where
    return _NOT_YAML, where


def _first_colon_of_an_indented_line(mark: Any) -> bool:
    buffer, pointer = getattr(mark, "buffer", None), getattr(mark, "pointer", None)
    if buffer is None or pointer is None:
        return False
    before = buffer[buffer.rfind("\n", 0, pointer) + 1:pointer]
    return before[:1] == " " and ":" not in before and not before.lstrip().startswith("-")


def _word_at(mark: Any) -> str:
    """The alias or word that starts at ``mark`` ("*nowhere")."""
    buffer, pointer = getattr(mark, "buffer", None), getattr(mark, "pointer", None)
    if buffer is None or pointer is None:
        return "this alias"
    end = pointer
    while end < len(buffer) and not buffer[end].isspace() and buffer[end] not in ",]}":
        end += 1
    return buffer[pointer:end]


def _char_at(mark: Any) -> str | None:
    buffer, pointer = getattr(mark, "buffer", None), getattr(mark, "pointer", None)
    if buffer is None or pointer is None or pointer >= len(buffer):
        return None
    return buffer[pointer]


def load(path: str | Path) -> Any:
    """Read and parse a YAML file; a missing, oversized or non-UTF-8 file is an InputError."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror}); check the path and its "
                         "permissions", path) from None
    if len(data) > MAX_BYTES:
        _too_large(data.count(b"\n", 0, MAX_BYTES) + 1, path)
    return parse(decode(data, path), path)


def decode(data: bytes, path: str | Path) -> str:
    """UTF-8 bytes (a BOM is dropped) → text; other bytes are an InputError at their line."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError("the file is saved as UTF-16; save it as UTF-8 in your editor", path, 1)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} cannot be "
                         "read); save it as UTF-8 in your editor", path, line, column) from None


def _too_large(line: int, path: str | Path) -> None:
    raise InputError(f"the file is larger than {MAX_BYTES // 1024} KiB from here on; a "
                     "campaign, segment or config.yaml is a few kilobytes: split it", path, line)


def locate(root: Any, loc: tuple[Any, ...]) -> tuple[int | None, int | None]:
    """Line and column of the deepest part of ``loc`` that exists in ``root``."""
    node = root
    found: tuple[int | None, int | None] = getattr(root, "start", (None, None))
    for part in loc:
        if isinstance(node, LocatedDict) and part in node:
            found = node.lines.get(part, found)
            node = node[part]
        elif isinstance(node, LocatedList) and isinstance(part, int) and part < len(node):
            found = node.lines[part]
            node = node[part]
        else:
            break
    return found


def dotted(loc: tuple[Any, ...]) -> str:
    """('steps', 0, 'offer') -> 'steps[0].offer'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic model class that validates the mapping at ``loc`` under ``model``."""
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        model = _first_model(fields[part].annotation)
    return model


def _first_model(annotation: Any) -> Any:
    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def problems_from_validation(exc: Exception, root: Any, path: str | Path,
                             model: Any = None) -> list[InputError]:
    """Turn a pydantic ValidationError into one located InputError per problem, each in the
    marketer's words with the fix (``_say``), never pydantic's own ("Input should be ...").

    Pydantic reports unions and tagged unions with the variant's name inside ``loc``;
    those parts are dropped so the location points at the user's key. ``model`` (the class
    validated) lets an unknown key get a "did you mean" from the keys allowed beside it, and a
    value that does not match a pattern be described by its field's ``description``.
    """
    problems: list[InputError] = []
    errors = exc.errors()  # type: ignore[attr-defined]
    deeper = [e["loc"] for e in errors]
    for error in errors:
        # A list whose only item is invalid is also reported "too short": say the real thing.
        if error["type"] == "too_short" and any(
                len(other) > len(error["loc"]) and other[:len(error["loc"])] == error["loc"]
                for other in deeper):
            continue
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and
                                                   (p.startswith("function-") or
                                                    p[:1].isupper() or "[" in p)))
        line, column = locate(root, loc)
        where = dotted(loc) or "(top level)"
        kind = error["type"]
        if kind == "extra_forbidden":
            key = loc[-1] if loc else ""
            owner = _model_at(model, loc[:-1]) if model is not None else None
            allowed = list(owner.model_fields) if owner is not None else None
            hint = did_you_mean(str(key), allowed) if allowed else ""
            message = f'unknown key "{where}"{hint}'
        elif kind == "missing":
            message = f'"{where}" is required'
        else:
            field = _field_at(model, loc) if model is not None else None
            said = _say(error, field)
            message = f"{dotted(loc)}: {said}" if loc else said
        problems.append(InputError(message, path, line, column))
    return problems


def _say(error: dict, field: Any) -> str:
    """One pydantic error as what is wrong and the fix."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    shown = _shown(value)
    if kind in ("int_parsing", "int_type"):
        default = getattr(field, "default", None)
        like = default if isinstance(default, int) and not isinstance(default, bool) and \
            default > 0 else 10
        return f"{shown} is not a whole number; write a number like {like}"
    if kind == "int_from_float":
        return f"{shown} is not a whole number; write a whole number like {round(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"{shown} is not a number; write a number like 0.1"
    if kind in ("decimal_parsing", "decimal_type"):
        return _not_an_amount(value)
    if kind == "decimal_max_places":
        return (f"{shown} has more than two decimals; write at most two, like "
                f"{money.decimal_text(money.cents(Decimal(str(value))))}")
    if kind == "decimal_max_digits":
        return f"{shown} is too large an amount; write at most 10 digits before the point"
    if kind in ("bool_parsing", "bool_type"):
        return f"{shown} is not yes or no; write true or false"
    if kind == "string_unicode" or isinstance(value, bytes):
        return "expected text, found binary data (a !!binary tag); write plain text"
    if kind == "string_type":
        return f"expected text, found {_kind_of(value)}; put text that starts with [ or {{ in " \
            "quotes"
    if kind == "string_too_short":
        return "is empty; write some text"
    if kind == "string_too_long":
        return (f"is {len(value)} characters long; write at most "
                f"{ctx.get('max_length')}")
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type"):
        return f'expected a list (one "- " item a line, or [a, b]), found {_kind_of(value)}'
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        inner = _first_model(getattr(field, "annotation", None))
        keys = ", ".join(list(getattr(inner, "model_fields", {}))[:3])
        return f"expected keys and values{f' ({keys})' if keys else ''}, found {_kind_of(value)}"
    bounds = {"greater_than": ("small", "more than", "gt"),
              "greater_than_equal": ("small", "of at least", "ge"),
              "less_than": ("large", "less than", "lt"),
              "less_than_equal": ("large", "of at most", "le")}
    if kind in bounds:
        size, words, key = bounds[kind]
        limit = ctx.get(key)
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        if isinstance(value, int) and isinstance(limit, int) and not isinstance(value, bool):
            shown, limit = f"{value:,}", f"{limit:,}"
        return f"{shown} is too {size}; write a number {words} {limit}"
    if kind in ("too_short", "too_long"):
        least = "at least" if kind == "too_short" else "at most"
        limit = ctx.get("min_length" if kind == "too_short" else "max_length")
        return f"has {display.count(ctx.get('actual_length', 0), 'item')}; list {least} {limit}"
    if kind == "string_pattern_mismatch":
        description = getattr(field, "description", None) or "written as expected here"
        return f"{shown} is not {description}"
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(str(value), choices) if choices else ""
        close = hint if hint.startswith(" (did you mean") else ""
        return f"{shown} is not one of {', '.join(choices)}{close}"
    text = error["msg"]
    if text.startswith("Value error, "):
        return text[len("Value error, "):]  # our own validators speak the marketer's words
    return f"{shown} cannot be used here ({text[:1].lower()}{text[1:]})"


def _not_an_amount(value: Any) -> str:
    if not isinstance(value, str | int | float):
        return f"expected an amount like 12.50, found {_kind_of(value)}"
    try:
        money.parse(str(value))
    except money.AmountError as exc:
        return str(exc)
    return f'"{value}" is not an amount; write it without separators, like 1234.50'


def _field_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic field that validates the value at ``loc`` under ``model``, if known."""
    names = [p for p in loc if not isinstance(p, int)]
    if not names:
        return None
    owner = _model_at(model, tuple(names[:-1]))
    fields = getattr(owner, "model_fields", None) or {}
    return fields.get(names[-1])


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "keys and values"
    return "nothing" if value is None else str(value)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "yes or no"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "keys and values"
    return "nothing" if value is None else "something else"
