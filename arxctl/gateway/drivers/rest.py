"""REST connectors declared as data: a base URL, an auth scheme, and a method and path template per action.

A driver file (`arxctl/data/drivers/<connector>.yaml`, or one named in the gateway config) maps each action to
one HTTP request. `{field}` in a path takes a payload field (URL-encoded; `{field*}` keeps `/` for file paths);
`foreach: field` makes one request per element of a payload list, bound to `{item}`. Fields the path does not
use go to the query string for GET and DELETE, else to a JSON body, with `set` merged over them. `current`
names the request that reads what the call would change, for an approver's diff.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from arxctl.gateway.drivers.base import (
    JSON,
    MAX_BODY_BYTES,
    NOT_SUPPORTED,
    Caller,
    Current,
    Downstream,
    DriverError,
    error_text,
    foreach_items,
    project,
    select,
)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SCHEMES = ("basic", "bearer", "header")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
PASSED_HEADERS = ("content-type", "retry-after", "link", "x-total-count")
PASSED_PREFIXES = ("x-ratelimit-", "ratelimit-")
_CHUNK = 65536
_NAME = {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}
_DOTTED = {"type": "string", "pattern": r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["connector", "actions"],
    "properties": {
        "connector": _NAME,
        "kind": {"enum": ["rest"]},
        "description": {"type": "string"},
        "base_url": {"type": ["string", "null"]},
        "auth": {
            "type": "object", "additionalProperties": False, "required": ["scheme"],
            "properties": {
                "scheme": {"enum": list(SCHEMES)},
                "header": {"type": "string", "pattern": r"^[A-Za-z0-9-]+$"},
                "format": {"type": "string", "pattern": r"\{secret\}"},
            },
        },
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "ok_field": _DOTTED,
        "error_field": {"type": "array", "items": _DOTTED},
        "actions": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": r"^[a-z0-9_]+\.[a-z0-9_]+$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["method", "path"],
                "properties": {
                    "method": {"enum": list(METHODS)},
                    "path": {"type": "string", "pattern": r"^/"},
                    "foreach": {"type": "string"},
                    "query": {"type": "array", "items": {"type": "string"}},
                    "set": {"type": "object"},
                    "body": {"enum": ["json", "none"]},
                    "objects": {"type": "string"},
                    "count": _DOTTED,
                    "current": {
                        "type": "object", "additionalProperties": False, "required": ["path"],
                        "properties": {
                            "path": {"type": "string", "pattern": r"^/"},
                            "query": {"type": "object", "additionalProperties": {"type": "string"}},
                            "record": _DOTTED,
                        },
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class CurrentSpec:
    """The GET that reads the record an action would change, and where the record sits in the answer."""

    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    record: str | None = None


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action's request: method, path template, and how the payload is carried."""

    method: str
    path: str
    foreach: str | None = None
    query: tuple[str, ...] = ()
    set: Mapping[str, Any] = field(default_factory=dict)
    body: str | None = None
    current: CurrentSpec | None = None
    objects: str | None = None
    count: str | None = None

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(m.group(1) for m in PLACEHOLDER.finditer(self.path)) - {"item"}

    @property
    def json_body(self) -> bool:
        return self.body == "json" or (self.body is None and self.method not in ("GET", "DELETE"))


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """How the credential travels: HTTP basic (`user:password`), a bearer token, or a named header."""

    scheme: str
    header: str = "Authorization"
    format: str = "{secret}"


@dataclass(frozen=True, slots=True)
class RestSpec:
    """A REST connector as declared in its driver file."""

    connector: str
    description: str
    base_url: str | None
    auth: AuthSpec
    headers: Mapping[str, str]
    ok_field: str | None
    error_fields: tuple[str, ...]
    actions: Mapping[str, ActionSpec]
    source: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> RestSpec:
        """From a schema-checked driver document."""
        connector = data["connector"]
        auth = data.get("auth") or {"scheme": "bearer"}
        actions = {}
        for name, spec in data["actions"].items():
            current = spec.get("current")
            actions[f"{connector}.{name}"] = ActionSpec(
                method=spec["method"], path=spec["path"], foreach=spec.get("foreach"),
                query=tuple(spec.get("query") or ()), set=dict(spec.get("set") or {}), body=spec.get("body"),
                current=CurrentSpec(current["path"], dict(current.get("query") or {}), current.get("record"))
                if current else None,
                objects=spec.get("objects"), count=spec.get("count"),
            )
        return cls(
            connector=connector, description=data.get("description", ""), base_url=data.get("base_url"),
            auth=AuthSpec(auth["scheme"], auth.get("header", "Authorization"), auth.get("format", "{secret}")),
            headers=dict(data.get("headers") or {}), ok_field=data.get("ok_field"),
            error_fields=tuple(data.get("error_field") or ()), actions=actions, source=source,
        )


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _segment(name: str, value: Any, keep_slashes: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DriverError(400, "bad-payload", f"payload.{name} must be a string or an integer")
    text = str(value)
    parts = text.split("/") if keep_slashes else [text]
    if any(p in ("", ".", "..") for p in parts):
        raise DriverError(400, "bad-payload", f"payload.{name} must not be empty or hold '.' or '..' segments")
    return "/".join(quote(p, safe="") for p in parts)


def fill(template: str, payload: Mapping[str, Any], item: str | int | None) -> str:
    """A path (or query value) with its placeholders taken from the payload and `{item}` from `foreach`."""

    def sub(match: re.Match[str]) -> str:
        name, star = match.group(1), match.group(2)
        if name == "item" and item is not None:
            return _segment("item", item, bool(star))
        if name not in payload:
            raise DriverError(400, "bad-payload", f"payload.{name} is required")
        return _segment(name, payload[name], bool(star))

    return PLACEHOLDER.sub(sub, template)


def _query_pairs(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool):
                pairs.append((key, "true" if v else "false"))
            elif isinstance(v, str | int | float):
                pairs.append((key, str(v)))
            else:
                raise DriverError(400, "bad-payload", f"payload.{key} must be a scalar or a list of scalars here")
    return pairs


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


class RestDriver:
    """Makes the calls of one REST connector through the gateway's shared HTTP client session."""

    def __init__(self, spec: RestSpec, *, base_url: str, auth: str | None = None,
                 headers: Mapping[str, str] | None = None, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0) -> None:
        self.spec = spec
        self.connector = spec.connector
        self.base_url = base_url.rstrip("/")
        self.auth = AuthSpec(auth) if auth is not None and auth != spec.auth.scheme else spec.auth
        self.headers = {**spec.headers, **(headers or {})}
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.session: Any = None

    def supports(self, action: str) -> bool:
        return action in self.spec.actions

    def _auth_header(self, secret: bytes) -> tuple[str, str]:
        try:
            text = secret.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DriverError(502, "credential-unusable",
                              f"the {self.connector} credential is not UTF-8 text") from None
        if "\r" in text or "\n" in text:
            raise DriverError(502, "credential-unusable", f"the {self.connector} credential holds a line break")
        if self.auth.scheme == "bearer":
            return "Authorization", f"Bearer {text}"
        if self.auth.scheme == "basic":
            if ":" not in text:
                raise DriverError(502, "credential-unusable",
                                  f"the {self.connector} credential must be user:password for basic auth")
            return "Authorization", "Basic " + base64.b64encode(text.encode("utf-8")).decode("ascii")
        return self.auth.header, self.auth.format.replace("{secret}", text)

    def _timeout(self, read: float | None = None) -> Any:
        import aiohttp

        return aiohttp.ClientTimeout(total=read or self.read_timeout, sock_connect=self.connect_timeout)

    def requests(self, action: str, payload: Mapping[str, Any]) -> list[tuple[str, str, list[tuple[str, str]],
                                                                          bytes | None]]:
        """(method, url, query, JSON body) of each request the call makes; DriverError on a bad payload."""
        spec = self.spec.actions[action]
        used = set(spec.placeholders)
        items: list[str | int | None] = [None]
        if spec.foreach:
            items = list(foreach_items(payload, spec.foreach))
            used.add(spec.foreach)
        rest = {k: v for k, v in payload.items() if k not in used}
        query_fields = {k: rest.pop(k) for k in spec.query if k in rest}
        body: bytes | None = None
        if spec.json_body:
            body = orjson.dumps(_deep_merge(rest, spec.set))
        else:
            query_fields.update(_deep_merge(rest, spec.set))
        query = _query_pairs(query_fields)
        return [(spec.method, self.base_url + fill(spec.path, payload, item), query, body) for item in items]

    async def _send(self, method: str, url: str, query: list[tuple[str, str]], body: bytes | None,
                    secret: bytes, timeout: Any = None) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
        import aiohttp

        name, value = self._auth_header(secret)
        headers = {**self.headers, name: value}
        if body is not None:
            headers["Content-Type"] = JSON
        try:
            async with self.session.request(method, url, params=query, data=body, headers=headers,
                                            allow_redirects=False, timeout=timeout or self._timeout()) as resp:
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise DriverError(502, "downstream-too-large",
                                          f"{self.connector} answered more than {MAX_BODY_BYTES} bytes")
                    chunks.append(chunk)
                passed = tuple((k.lower(), v) for k, v in resp.headers.items()
                               if k.lower() in PASSED_HEADERS or k.lower().startswith(PASSED_PREFIXES))
                return resp.status, b"".join(chunks), resp.headers.get("Content-Type", JSON), passed
        except TimeoutError:
            raise DriverError(504, "downstream-timeout", f"{self.connector} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise DriverError(502, "downstream-unreachable",
                              f"{self.connector} could not be reached: {type(exc).__name__}") from None

    def _outcome(self, status: int, body: bytes, payload: Mapping[str, Any]) -> tuple[bool, str | None]:
        ok = 200 <= status < 300
        parsed = None
        if self.spec.ok_field is not None or not ok:
            parsed = _parse(body)
        if ok and self.spec.ok_field is not None:
            ok = select(parsed, self.spec.ok_field) is True
        if ok:
            return True, None
        return False, error_text(parsed, self.spec.error_fields, payload) or f"HTTP {status}"

    async def call(self, action: str, payload: Mapping[str, Any], secret: bytes, caller: Caller) -> Downstream:
        planned = self.requests(action, payload)
        spec = self.spec.actions[action]
        if not spec.foreach:
            method, url, query, body = planned[0]
            status, data, content_type, headers = await self._send(method, url, query, body, secret)
            ok, error = self._outcome(status, data, payload)
            return Downstream(status, data, content_type, headers, ok, error)
        items = foreach_items(payload, spec.foreach)
        results: list[dict[str, Any]] = []
        outcomes: list[tuple[int, bool, str | None]] = []
        for item, (method, url, query, body) in zip(items, planned, strict=True):
            status, data, _, _ = await self._send(method, url, query, body, secret)
            ok, error = self._outcome(status, data, payload)
            parsed = _parse(data)
            results.append({"item": item, "status": status,
                            "body": parsed if parsed is not None else data.decode("utf-8", "replace")})
            outcomes.append((status, ok, error))
        failed = [o for o in outcomes if not o[1]]
        status = failed[0][0] if failed else outcomes[-1][0]
        error = failed[0][2] if failed else None
        return Downstream(status, orjson.dumps({"results": results}), JSON, (), not failed, error, len(results))

    async def current(self, action: str, payload: Mapping[str, Any], secret: bytes) -> Current:
        import aiohttp

        spec = self.spec.actions.get(action)
        if spec is None or spec.current is None:
            return NOT_SUPPORTED
        reading = spec.current
        identity = set(spec.placeholders) | ({spec.foreach} if spec.foreach else set())
        written = {k: v for k, v in payload.items() if k not in identity}
        try:
            items: list[str | int | None] = list(foreach_items(payload, spec.foreach)) if spec.foreach else [None]
            records = []
            for item in items:
                url = self.base_url + fill(reading.path, payload, item)
                query = [(k, fill(v, payload, item)) for k, v in reading.query.items()]
                status, data, _, _ = await self._send("GET", url, query, None, secret,
                                                      self._timeout(min(5.0, self.read_timeout)))
                ok, error = self._outcome(status, data, payload)
                if not ok:
                    return Current(None, f"unavailable: {self.connector} answered HTTP {status} ({error})")
                record = select(_parse(data), reading.record)
                if not isinstance(record, Mapping):
                    return Current(None, f"unavailable: no record in the {self.connector} answer")
                records.append(project(record, written))
        except DriverError as exc:
            return Current(None, f"unavailable: {exc.message}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Current(None, f"unavailable: {type(exc).__name__}")
        state: dict[str, Any] = {k: payload[k] for k in identity if k in payload}
        state.update(_combine(records))
        return Current(state, "fetched")

    def blast(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        spec = self.spec.actions[action]
        counted = spec.foreach or spec.count
        found = select(payload, counted) if counted else None
        count = len(found) if isinstance(found, list) else 1
        return {"objects": count, "object": spec.objects or "record", "requests": count if spec.foreach else 1}

    async def close(self) -> None:
        self.session = None


def _combine(records: list[Any]) -> dict[str, Any]:
    """One payload-shaped current state from the records of a `foreach` call: a value the records share, else
    the list of each record's value."""
    if len(records) == 1:
        return dict(records[0])
    keys: list[str] = []
    for record in records:
        keys.extend(k for k in record if k not in keys)
    out: dict[str, Any] = {}
    for key in keys:
        values = [r.get(key) for r in records]
        out[key] = values[0] if all(v == values[0] for v in values) else values
    return out
