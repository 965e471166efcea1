"""Wall-clock access in one place, so time can be injected in tests and demos."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (a trailing `Z` allowed) into an aware UTC datetime."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_ts(moment: datetime) -> str:
    """Format as RFC 3339 UTC with a `Z`, microseconds only when present."""
    moment = moment.astimezone(UTC)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def now() -> datetime:
    """The current time; `ARX_NOW` (RFC 3339) pins it for reproducible runs and tests."""
    pinned = os.environ.get("ARX_NOW")
    if pinned:
        return parse_ts(pinned)
    return datetime.now(UTC)


def now_ts() -> str:
    return format_ts(now())


__all__ = ["format_ts", "now", "now_ts", "parse_ts", "timedelta"]
