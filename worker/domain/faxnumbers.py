"""Fax numbers as one spelling (E.164), so a reply's sender finds the request that faxed it.

Vendors report an inbound fax's sender in E.164 (``+16175550101``), but not every one, and
not every gateway: ``16175550101``, ``(617) 555-0101``, ``+1 617-555-0101`` and
``001 617 555 0101`` are the same line. Requests store their numbers in E.164 already
(intake and campaign rows refuse anything else); both sides go through :func:`normalized`
before they are compared (``request_numbers``, services/inbound.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_SEPARATORS = re.compile(r"[\s().\-/]")


def normalized(number: str | None) -> str | None:
    """``number`` in E.164 (``+`` and 7 to 15 digits), or None when it is not a phone number.
    Ten digits without a country code are a North American number (+1): the jurisdictions
    served are all in the US."""
    if not number:
        return None
    text = _SEPARATORS.sub("", number.strip())
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):  # international call prefix
        digits = text[2:]
    elif len(text) == 10 and text.isdigit():
        digits = "1" + text
    else:
        digits = text
    if not digits.isdigit() or digits.startswith("0") or not 7 <= len(digits) <= 15:
        return None
    return "+" + digits


def request_fax_numbers(channels: Iterable[Mapping[str, Any]]) -> set[str]:
    """The distinct fax numbers a request's channels name (its provider's and its designee's),
    normalised: an unreferenced reply from any of them may be the request's."""
    numbers = set()
    for channel in channels:
        if channel.get("kind") == "fax":
            number = normalized(str(channel.get("destination") or ""))
            if number is not None:
                numbers.add(number)
    return numbers
