"""What every connector driver returns and raises, and the helpers the REST, AWS and LLM drivers share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from arxctl.policy.masking import MASK, MIN_REDACT_LENGTH

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_ERROR_CHARS = 200
MAX_FOREACH = 100
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Downstream:
    """The downstream system's answer to one call, passed back to the agent as it came and never cached."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    ok: bool = True
    error: str | None = None
    requests: int = 1
    detail: Mapping[str, Any] | None = None

    def audit(self) -> dict[str, Any]:
        """What the audit record keeps of the answer: status, success, the API's error code and the driver's
        own evidence (the router's attempts), never the body."""
        out: dict[str, Any] = {"status": self.status, "ok": self.ok, "error": self.error, "requests": self.requests}
        if self.detail is not None:
            out["detail"] = dict(self.detail)
        return out


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the call is made for: drivers that keep their own evidence (the LLM router) record it."""

    agent: str
    session: str


class DriverError(Exception):
    """The call could not be made: a payload this action cannot carry (400), or no answer from downstream (502/504)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Current:
    """The downstream record a call would change, shaped like the payload for the approver's diff."""

    state: Any
    note: str

    @property
    def fetched(self) -> bool:
        return self.state is not None


NOT_SUPPORTED = Current(None, "the driver cannot read the current state for this action")


class Driver(Protocol):
    """A connector the gateway can call with the credential it holds."""

    connector: str

    def supports(self, action: str) -> bool:
        """Whether the driver knows how to make this call."""
        ...

    async def call(self, action: str, payload: Mapping[str, Any], secret: bytes, caller: Caller) -> Downstream:
        """Make the call; DriverError when it cannot be made."""
        ...

    async def current(self, action: str, payload: Mapping[str, Any], secret: bytes) -> Current:
        """The state the call would change, for an approver; never raises."""
        ...

    def blast(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """How many objects of which kind the call touches."""
        ...

    async def close(self) -> None:
        """Release clients and connections."""
        ...


def select(data: Any, dotted: str | None) -> Any:
    """The value at a dotted path (`result`, `messages.0`, `error.message`); None when any step is missing."""
    if not dotted:
        return data
    for part in dotted.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
        if data is None:
            return None
    return data


def project(current: Any, payload: Any) -> Any:
    """The current record cut to the payload's shape: only the fields the call would write, nested alike."""
    if not isinstance(payload, Mapping) or not isinstance(current, Mapping):
        return current
    out: dict[str, Any] = {}
    for key, wanted in payload.items():
        if key in current:
            out[key] = project(current[key], wanted)
    return out


def _values(value: Any, out: list[str]) -> None:
    if isinstance(value, Mapping):
        for item in value.values():
            _values(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _values(item, out)
    elif value is not None and not isinstance(value, bool):
        out.append(str(value))


def redact_values(text: str, payload: Any) -> str:
    """The text with every payload value of 4+ characters masked (field names are kept): the chain keeps only
    the payload's digest, so nothing the agent sent may come back in through an error message."""
    found: list[str] = []
    _values(payload, found)
    for value in sorted({v for v in found if len(v) >= MIN_REDACT_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def error_text(body: Any, paths: Sequence[str], payload: Any) -> str | None:
    """The API's error code or message at the first path that holds a string, short and with payload values
    redacted (an error message can echo what was sent)."""
    for path in paths:
        found = select(body, path)
        if isinstance(found, str) and found:
            return redact_values(found[:MAX_ERROR_CHARS], payload)
    return None


def foreach_items(payload: Mapping[str, Any], field: str) -> list[str | int]:
    """The list a `foreach` action runs over: 1 to 100 strings or integers."""
    items = payload.get(field)
    if not isinstance(items, list) or not items:
        raise DriverError(400, "bad-payload", f"payload.{field} must be a non-empty list")
    if len(items) > MAX_FOREACH:
        raise DriverError(400, "bad-payload", f"payload.{field} has {len(items)} items; at most {MAX_FOREACH}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise DriverError(400, "bad-payload", f"payload.{field} must hold strings or integers")
    return list(items)
