"""Bounded parsing of JSON and TOML that came from outside: node answers, manifests, config.

Why this exists: a dependency raises Python's recursion limit to 100,000 at import, so the C
JSON decoder no longer stops a deeply nested document with RecursionError; it recurses until
the C stack overflows and the process dies with SIGSEGV (a node answering `[[[[...` 200,000
deep did exactly that). The nesting depth is therefore measured BEFORE parsing, by a linear
scan with no recursion at all: strings are cut out by one regular expression (so brackets
inside them do not count), the remaining brackets become +1/-1 steps, and a running sum gives
the depth. Only then does `json.loads` run, on a document known to be shallow.

TOML gets the same scan (strings and comments cut out) plus a check of the parsed result,
because dotted keys (`a.b.c.d = 1`) nest tables without any bracket.
"""

from __future__ import annotations

import json
import re
import tomllib
from itertools import accumulate
from typing import Any

# Deeper than any answer, manifest or config the keeper reads (a receipt with logs is ~5).
MAX_DEPTH = 64

# A string runs to its closing quote or to the end of the input (an unterminated string must
# not make the engine retry from every later quote: that would be quadratic). Possessive
# quantifiers: no backtracking.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
_TOML_STRINGS_AND_COMMENTS = re.compile(
    rb'"""(?:[^\\]|\\.)*?(?:"""|\Z)'  # multi-line basic
    rb"|'''[\s\S]*?(?:'''|\Z)"  # multi-line literal
    rb'|"(?:[^"\\\n]++|\\.)*+(?:"|\\?$)'  # basic
    rb"|'[^'\n]*+(?:'|$)"  # literal
    rb"|#[^\n]*+",  # comment
    re.S | re.M,
)
_OPENERS, _CLOSERS = b"[{", b"]}"
_STEP = [0] * 256
for _b in _OPENERS:
    _STEP[_b] = 1
for _b in _CLOSERS:
    _STEP[_b] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _OPENERS + _CLOSERS)


class TooDeepError(ValueError):
    """Nesting deeper than allowed; the message says how deep and the limit."""


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data


def bracket_depth(data: str | bytes, strings: re.Pattern[bytes] = _JSON_STRING) -> int:
    """Deepest bracket nesting outside strings; linear time, no recursion, C-speed loops."""
    brackets = strings.sub(b"", _as_bytes(data)).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(data: str | bytes, max_depth: int = MAX_DEPTH, what: str = "JSON") -> None:
    depth = bracket_depth(data)
    if depth > max_depth:
        raise TooDeepError(f"{what} nested {depth} deep (at most {max_depth} allowed)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: str | bytes, max_depth: int = MAX_DEPTH, what: str = "JSON") -> Any:
    """json.loads after the depth check; NaN and Infinity are refused. Raises ValueError
    (TooDeepError, json.JSONDecodeError, UnicodeDecodeError) for anything unusable."""
    check_depth(data, max_depth, what)
    return json.loads(data, parse_constant=_reject_constant)


def structure_depth(value: Any, max_depth: int = MAX_DEPTH) -> int:
    """Depth of parsed dicts and lists, iteratively; stops counting past max_depth + 1."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if depth > max_depth:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return deepest


def loads_toml(text: str, max_depth: int = MAX_DEPTH, what: str = "TOML") -> dict[str, Any]:
    """tomllib.loads, bounded like `loads`. Raises ValueError (TooDeepError, TOMLDecodeError)."""
    depth = bracket_depth(text, _TOML_STRINGS_AND_COMMENTS)
    if depth > max_depth:
        raise TooDeepError(f"{what} nested {depth} deep (at most {max_depth} allowed)")
    data = tomllib.loads(text)
    depth = structure_depth(data, max_depth)
    if depth > max_depth:
        raise TooDeepError(f"{what} nested more than {max_depth} deep (dotted keys)")
    return data
