"""What the router and gateway config files share: the duration field (ARX132) and loopback hosts."""

from __future__ import annotations

import ipaddress
from typing import Any

from arxctl.durations import DURATION_SYNTAX
from arxctl.resources.schema_errors import Wording

DURATION: dict[str, Any] = {"type": "string", "pattern": DURATION_SYNTAX.pattern}
"""JSON Schema of a duration field: 250ms, 30s, 2m, 1h30m."""

DURATION_WORDING: dict[str, Wording] = {
    DURATION["pattern"]: ("ARX132", "invalid duration: use a number and a unit, e.g. 250ms, 30s, 2m"),
}
"""`schema_diagnostics(patterns=...)` wording of a duration that does not match."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses: hosts plain http may reach without opting in."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
