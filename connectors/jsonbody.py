"""JSON from other people, read with a nesting limit: ``json.loads`` recurses once per level,
so 100,000 nested ``[`` raise ``RecursionError`` (not a ``ValueError``) deep inside the
parser. :func:`nesting_depth` counts levels without recursion (brackets outside strings) and
:func:`loads` refuses a document deeper than ``max_depth`` before parsing it.

Used by the webhook parsers (connectors/fax/) and by the API's body reader (api/limits.py).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

__all__ = ["MAX_DEPTH", "TooDeep", "loads", "nesting_depth", "unstorable"]

#: Levels of ``[``/``{`` a document may nest. Our own documents nest at most 5 levels (a
#: notification: providers[].designee.channels[]); vendors' webhooks fewer than 8.
MAX_DEPTH = 64

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    """The JSON document nests deeper than allowed (a ``ValueError``: callers that refuse
    malformed JSON refuse this too)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"JSON nests deeper than {limit} levels")


def nesting_depth(data: bytes | str) -> int:
    """How many levels of ``[``/``{`` ``data`` nests (brackets inside strings do not count).

    Counts without parsing or recursion, at C speed (strings removed by one regex, then a
    running sum over the brackets left). For text that is not JSON the figure is an upper
    bound of how deep ``json.loads`` would go before it fails: the parser stops at the first
    complete value or the first error, and up to there the running sum is exact."""
    # latin-1 maps each byte to one character: the ASCII tokens stay where they are, and
    # UTF-8's multi-byte sequences (bytes >= 0x80) never look like one
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` of UTF-8 ``data`` nesting at most ``max_depth`` levels.

    Raises ``ValueError`` for anything that is not such a document: :class:`TooDeep` when it
    nests deeper, ``UnicodeDecodeError`` when the bytes are not UTF-8 (RFC 8259 §8.1: JSON
    between systems is UTF-8; ``json.loads`` would also guess UTF-16/32, which the depth scan
    cannot read), ``json.JSONDecodeError`` otherwise."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if nesting_depth(text) > max_depth:
        raise TooDeep(max_depth)
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen below the limit; refused all the same if it does
        raise TooDeep(max_depth) from None


def unstorable(value: object) -> bool:
    """Whether ``value`` (text, or lists, tuples and dicts of it) holds text a database cannot
    store: a NUL character (PostgreSQL's text refuses it; psycopg raises DataError) or a lone
    surrogate (no UTF-8 encodes it). Decoded JSON may carry either as a ``\\u`` escape."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list | tuple):
        return any(unstorable(v) for v in value)
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    return False
