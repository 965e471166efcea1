"""Durations such as `15m`, `4h`, `1h30m`, `30s`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
DURATION_SYNTAX = re.compile(r"^(?:\d+(?:ms|s|m|h|d))+$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration; raise ValueError with a helpful message otherwise."""
    value = str(text).strip()
    if not value or not DURATION_SYNTAX.match(value):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 15m, 4h, 1h30m, 7d")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    total = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"
