"""YAML that remembers where each value came from.

Marketers' files (campaigns, segments, config.yaml) are loaded into plain dicts and lists whose
mappings also carry the line and column of every key, so a validation error can say
``campaigns/winback.yaml:12:5: ...`` instead of a path into a data structure.
``locate()`` turns a pydantic error location (``("steps", 0, "offer")``) into that line, and
``problems_from_validation()`` turns a whole pydantic ``ValidationError`` into located errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine.errors import InputError, did_you_mean


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


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds LocatedDict/LocatedList and refuses duplicate keys."""


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocatedDict:
    loader.flatten_mapping(node)
    result = LocatedDict()
    result.start = _mark(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            line, col = _mark(key_node)
            raise yaml.constructor.ConstructorError(
                None, None, f'the key "{key}" appears twice in the same mapping',
                key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = _mark(key_node)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.start = _mark(node)
    result.lines = [_mark(child) for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse(text: str, path: str | Path) -> Any:
    """Parse YAML text; a syntax error becomes an InputError at its line and column."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "invalid YAML"
        mark = exc.problem_mark or exc.context_mark
        if exc.context and exc.context_mark and exc.problem_mark and \
                exc.context_mark.line != exc.problem_mark.line:
            # "while scanning a quoted scalar" starts where the mistake is (an unclosed quote);
            # the problem mark is where the parser gave up, often the end of the file.
            problem = (f"{exc.context} that starts here, {problem} "
                       f"(line {exc.problem_mark.line + 1}); check quotes and brackets")
            mark = exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise InputError(f"invalid YAML: {problem}", path, line, column) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", path) from None


def load(path: str | Path) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is an InputError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file: {exc}", path) from None
    return parse(text, path)


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
    """Turn a pydantic ValidationError into one located InputError per problem.

    Pydantic reports unions and tagged unions with the variant's name inside ``loc``;
    those parts are dropped so the location points at the user's key. ``model`` (the class
    validated) lets an unknown key get a "did you mean" from the keys allowed beside it.
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
            text = error["msg"]
            if text.startswith("Value error, "):
                text = text[len("Value error, "):]
            # Pydantic's words for our tuples; a marketer writes lists.
            text = text.replace("Tuple should", "The list should").replace(
                " after validation", "")
            if kind in ("literal_error", "enum") and isinstance(error.get("input"), str | int):
                text += f', not "{error["input"]}"'
            message = f"{where}: {text}"
        problems.append(InputError(message, path, line, column))
    return problems
