"""JSON from untrusted sources (Hub API bodies, safetensors headers, adapter configs), bounded.

``json.loads`` recurses once per nesting level: a document nested 100,000 levels deep raises
``RecursionError`` (not ``ValueError``), which callers would treat as an unexpected, retryable
failure, and a document that parses just under the interpreter's limit can still blow the stack
in any later recursive walk (``json.dumps`` into the store, a renderer). :func:`loads` turns both
into :class:`JSONLimitError`, a ``ValueError`` that every caller already records as "malformed":
a final per-item outcome, never a retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# Real Hub API bodies nest ~6 levels (cardData can hold a few more); adapter configs ~4,
# safetensors headers 3. 64 leaves room for every legitimate document.
MAX_JSON_DEPTH = 64


class JSONLimitError(ValueError):
    """A JSON document beyond a structural bound (nesting depth)."""


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (scalars 0, ``[]``/``{}`` 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children if isinstance(child, (dict, list)))
    return deepest


def check_depth(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Return ``value`` unchanged, or raise :class:`JSONLimitError` when it nests deeper than ``max_depth``."""
    if depth(value) > max_depth:
        raise JSONLimitError(f"JSON nested deeper than {max_depth} levels")
    return value


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH,
          object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
          parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads`` that raises :class:`JSONLimitError` (a ``ValueError``) for documents nested
    deeper than ``max_depth``, however deep, instead of ``RecursionError``."""
    try:
        value = json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=parse_constant)
    except RecursionError:
        raise JSONLimitError(f"JSON nested deeper than {max_depth} levels") from None
    return check_depth(value, max_depth)
