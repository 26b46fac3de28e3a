"""Websocket event arguments, parsed by the handler's declared types before Reflex sees them.

Reflex hands a handler whatever JSON a websocket client sent: it converts only what it
knows how to convert (and builds dataclasses from dicts), logs a warning with the raw value
when that fails, then calls the handler with the raw value anyway. A `str` where an `int`
goes, 10**30, a lone surrogate or a 100 kB string then reached SQL and came back as a
traceback. So every client event is parsed here first, against the handler's own
annotations, with a readable reason when it does not fit: the way FastAPI validates a route's
parameters from their types. Only a few plain types are supported, on purpose: a handler
cannot declare a dataclass, a model or a `Principal` parameter for a client to fill in.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reflex_base.utils.form import FORM_DATA_ENTRIES_KEY

# Limits for any one value a client sends, well above what a page of ours sends (a message
# is at most 4,000 characters, which the use case says readably when it is longer).
MAX_TEXT = 16_384
MAX_KEY = 256
MAX_ITEMS = 200
MAX_DEPTH = 5
# SQLite and PostgreSQL integers are 64-bit: a bigger id is an OverflowError inside SQL.
MAX_INT = 2**63 - 1
# A whole number sent as text (an HTML select's value): at most 19 digits.
_INT_TEXT = re.compile(r"-?[0-9]{1,19}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
# UTF-16 halves that only JSON can carry: no database or encoder accepts them alone.
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadArguments(ValueError):
    """What was wrong with a client's arguments, in words its user can read."""


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    annotation: Any
    required: bool


def parameters_of(fn: Callable[..., Any]) -> tuple[Parameter, ...]:
    """A handler's parameters after `self`; TypeError for a type a client may not fill in."""
    hints = typing.get_type_hints(fn)
    found = []
    for index, param in enumerate(inspect.signature(fn).parameters.values()):
        if index == 0:
            continue  # self
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(f"{fn.__qualname__}: *args and **kwargs cannot be checked")
        annotation = hints.get(param.name, Any)
        _check_supported(annotation, f"{fn.__qualname__}({param.name})")
        found.append(Parameter(param.name, annotation, param.default is param.empty))
    return tuple(found)


def parse_arguments(params: tuple[Parameter, ...], payload: object) -> dict[str, Any]:
    """The payload as the handler's declared types, or BadArguments saying what is wrong."""
    if not isinstance(payload, dict):
        raise BadArguments("the arguments must be named.")
    names = {p.name for p in params}
    for key in payload:
        if key not in names:
            raise BadArguments(f"unexpected argument {_shown(key)}.")
    parsed = {}
    for param in params:
        if param.name in payload:
            parsed[param.name] = parse_value(payload[param.name], param.annotation, param.name)
        elif param.required:
            raise BadArguments(f"{param.name} is missing.")
    return parsed


def parse_value(value: object, annotation: Any, where: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise BadArguments(f"{where} is nested too deeply.")
    if annotation is Any:
        return _json_value(value, where, depth)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return parse_value(value, _without_none(annotation), where, depth)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise BadArguments(f"{where} must be true or false.")
    if annotation is int:
        return _whole_number(value, where)
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise BadArguments(f"{where} must be a number.")
    if annotation is str:
        return _text(value, where, MAX_TEXT)
    if origin is dict:
        _, value_type = typing.get_args(annotation)
        if depth == 0 and isinstance(value, dict) and FORM_DATA_ENTRIES_KEY in value:
            value = _form_entries(value, where)
        if not isinstance(value, dict):
            raise BadArguments(f"{where} must be a set of named values.")
        if len(value) > MAX_ITEMS:
            raise BadArguments(f"{where} has more than {MAX_ITEMS} entries.")
        return {
            _text(k, f"a name in {where}", MAX_KEY): parse_value(
                v, value_type, _member(where, k), depth + 1
            )
            for k, v in value.items()
        }
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise BadArguments(f"{where} must be a list.")
        if len(value) > MAX_ITEMS:
            raise BadArguments(f"{where} has more than {MAX_ITEMS} entries.")
        return [parse_value(v, item_type, where, depth + 1) for v in value]
    raise TypeError(f"unsupported annotation {annotation!r}")  # _check_supported ran first


def parse_id(text: str) -> int | None:
    """A positive id written as text (a form field named `person-12`), or None."""
    if not _INT_TEXT.fullmatch(text):
        return None
    number = int(text)
    return number if 0 < number <= MAX_INT else None


def _whole_number(value: object, where: str) -> int:
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadArguments(f"{where} must be a whole number.")
    if not -MAX_INT <= value <= MAX_INT:
        raise BadArguments(f"{where} is out of range.")
    return value


def _form_entries(value: dict[str, Any], where: str) -> dict[str, Any]:
    """A submitted form, as the page sends it: `{FORM_DATA_ENTRIES_KEY: [[name, value], ..]}`
    (reflex_base/utils/form.py). As Reflex would, the last value of a repeated name wins;
    done here so that the handler gets exactly the dict that was checked."""
    entries = value[FORM_DATA_ENTRIES_KEY]
    if len(value) != 1 or not isinstance(entries, list) or len(entries) > MAX_ITEMS:
        raise BadArguments(f"{where} is not a form.")
    if not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) for e in entries):
        raise BadArguments(f"{where} is not a form.")
    return dict(entries)


def _member(where: str, key: object) -> str:
    """`form_data.content` when the name is plain, else something that quotes no client text."""
    if isinstance(key, str) and _PLAIN_NAME.fullmatch(key):
        return f"{where}.{key}"
    return f"a value in {where}"


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise BadArguments(f"{where} must be text.")
    if len(value) > limit:
        raise BadArguments(f"{where} is too long (at most {limit} characters).")
    if _SURROGATE.search(value):
        raise BadArguments(f"{where} is not valid text.")
    return value


def _json_value(value: object, where: str, depth: int) -> Any:
    """Any JSON value, within the same limits as the typed ones."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _whole_number(value, where)
    if isinstance(value, float):
        return parse_value(value, float, where, depth)
    if isinstance(value, str):
        return _text(value, where, MAX_TEXT)
    if isinstance(value, list):
        return parse_value(value, list[Any], where, depth)
    if isinstance(value, dict):
        return parse_value(value, dict[str, Any], where, depth)
    raise BadArguments(f"{where} has a value of an unknown kind.")


def _check_supported(annotation: Any, where: str) -> None:
    if annotation in (Any, bool, int, float, str):
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        _check_supported(_without_none(annotation), where)
    elif origin is dict and args and args[0] is str:
        _check_supported(args[1], where)
    elif origin is list and args:
        _check_supported(args[0], where)
    else:
        raise TypeError(
            f"{where}: a websocket client cannot be trusted to fill in {annotation!r}; "
            "declare plain values (int, str, bool, float, dict[str, ...], list[...])"
        )


def _without_none(annotation: Any) -> Any:
    rest = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(rest) != 1:
        raise TypeError(f"unsupported union {annotation!r}")
    return rest[0]


def _shown(text: object) -> str:
    """A client's text, short and printable, for a message or a log line."""
    return ascii(text if not isinstance(text, str) else text[:40])
