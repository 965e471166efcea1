"""The router's configuration (`router.yaml`): providers, order per org and per agent, breaker, Redis."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from arxctl.diagnostics import Diagnostic, Severity, sort_key
from arxctl.durations import parse_duration
from arxctl.errors import ValidationFailed
from arxctl.resources.config_fields import DURATION, DURATION_WORDING, is_loopback
from arxctl.resources.schema_errors import Wording, schema_diagnostics
from arxctl.resources.yamlio import Document, json_path_str, parse_text, read_file
from arxctl.store.sqlite import resolve_state_dir

CONFIG_NAME = "router.yaml"
KINDS = ("anthropic", "openai", "openai-compatible")
DEFAULT_BASE_URL = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com/v1"}
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
DEFAULT_MODELS = {
    "anthropic": {"frontier": "claude-sonnet-4-5", "fast": "claude-haiku-4-5"},
    "openai": {"frontier": "gpt-5", "fast": "gpt-5-mini"},
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}
_ORDER = {"type": "array", "minItems": 1, "items": {"type": "string"}}
_PATTERN_WORDING: dict[str, Wording] = {
    **DURATION_WORDING,
    _NAME["pattern"]: ("ARX103", "must be a DNS-1123 label (lowercase letters, digits and '-', at most 63)"),
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["providers"],
    "properties": {
        "providers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "kind"],
                "properties": {
                    "name": _NAME,
                    "kind": {"enum": list(KINDS)},
                    "base_url": {"type": "string"},
                    "api_key_env": {"type": "string"},
                    "models": {
                        "type": "object", "minProperties": 1,
                        "additionalProperties": {"type": "string", "minLength": 1},
                    },
                    "timeouts": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"connect": DURATION, "read": DURATION},
                    },
                    "insecure_http": {"type": "boolean"},
                },
            },
        },
        "order": _ORDER,
        "agents": {
            "type": "object",
            "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["order"],
                "properties": {"order": _ORDER},
            },
        },
        "breaker": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "failures": {"type": "integer", "minimum": 1},
                "window": DURATION,
                "open": DURATION,
                "probe_timeout": DURATION,
            },
        },
        "redis": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string"},
                "timeout": DURATION,
                "key_prefix": {"type": "string", "minLength": 1},
                "retry_after": DURATION,
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider endpoint; the key is read from `api_key_env` at call time and never stored here."""

    name: str
    kind: str
    base_url: str
    api_key_env: str | None
    models: Mapping[str, str]
    connect_timeout: float = 5.0
    read_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """`failures` within `window` seconds open a provider's circuit for `open` seconds."""

    failures: int = 5
    window: float = 60.0
    open: float = 120.0
    probe_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str | None = None
    timeout: float = 0.25
    key_prefix: str = "arx:breaker"
    retry_after: float = 5.0


@dataclass(frozen=True, slots=True)
class RouterConfig:
    providers: tuple[ProviderSpec, ...]
    order: tuple[str, ...]
    agents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    breaker: BreakerSettings = BreakerSettings()
    redis: RedisSettings = RedisSettings()
    source: str = "<defaults>"

    def order_for(self, agent: str | None) -> tuple[str, ...]:
        """The agent's own order when it has one, else the org's."""
        if agent is not None and agent in self.agents:
            return self.agents[agent]
        return self.order

    def provider(self, name: str) -> ProviderSpec:
        return next(p for p in self.providers if p.name == name)


def default_config() -> RouterConfig:
    """Anthropic first, then OpenAI, at their public endpoints, keys from ANTHROPIC_API_KEY / OPENAI_API_KEY."""
    providers = tuple(
        ProviderSpec(kind, kind, DEFAULT_BASE_URL[kind], DEFAULT_KEY_ENV[kind], dict(DEFAULT_MODELS[kind]))
        for kind in ("anthropic", "openai")
    )
    return RouterConfig(providers=providers, order=("anthropic", "openai"))


def redact_url(url: str) -> str:
    """A URL with any password replaced, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


@cache
def _validator():  # -> jsonschema.protocols.Validator
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(SCHEMA)
    return Draft202012Validator(SCHEMA)


def _diag(doc: Document, path: list[str | int], rule: str, message: str, *, key: bool = False) -> Diagnostic:
    line, col = doc.position(path, key=key)
    return Diagnostic(doc.path, line, col, rule, Severity.error, message, json_path_str(path))


def _check_order(doc: Document, path: list[str | int], order: list[str], names: list[str]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[str] = set()
    for i, name in enumerate(order):
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            out.append(_diag(doc, [*path, i], "ARX103",
                             f"unknown provider '{name}'{hint}; configured: {', '.join(names)}"))
        elif name in seen:
            out.append(_diag(doc, [*path, i], "ARX103", f"provider '{name}' is listed twice"))
        seen.add(name)
    return out


def _semantic_diagnostics(doc: Document) -> list[Diagnostic]:
    data = doc.data
    out: list[Diagnostic] = []
    names: list[str] = []
    for i, p in enumerate(data["providers"]):
        base: list[str | int] = ["providers", i]
        if p["name"] in names:
            out.append(_diag(doc, [*base, "name"], "ARX103", f"provider name '{p['name']}' is used twice"))
        names.append(p["name"])
        if "api_key_env" in p and not _ENV_NAME.match(p["api_key_env"]):
            out.append(_diag(doc, [*base, "api_key_env"], "ARX103",
                             "must name an environment variable (letters, digits, '_'); "
                             "never put a key itself in the config"))
        if p["kind"] == "openai-compatible" and "base_url" not in p:
            out.append(_diag(doc, base, "ARX102", "missing required field 'base_url' (openai-compatible)"))
        if p["kind"] == "openai-compatible" and "models" not in p:
            out.append(_diag(doc, base, "ARX102", "missing required field 'models' (openai-compatible)"))
        if "base_url" in p:
            parts = urlsplit(p["base_url"])
            if parts.scheme not in ("http", "https") or not parts.hostname:
                out.append(_diag(doc, [*base, "base_url"], "ARX103", "must be an http(s) URL with a host"))
            elif parts.username or parts.password:
                out.append(_diag(doc, [*base, "base_url"], "ARX103",
                                 "must not carry credentials; use api_key_env"))
            elif parts.scheme == "http" and not is_loopback(parts.hostname) and not p.get("insecure_http"):
                out.append(_diag(doc, [*base, "base_url"], "ARX103",
                                 "plain http to a non-loopback host would send the API key in clear text; "
                                 "use https (or set insecure_http: true)"))
    if "order" in data:
        out.extend(_check_order(doc, ["order"], data["order"], names))
    for agent, entry in (data.get("agents") or {}).items():
        out.extend(_check_order(doc, ["agents", agent, "order"], entry["order"], names))
    for section, keys in (("breaker", ("window", "open", "probe_timeout")), ("redis", ("timeout", "retry_after"))):
        for key in keys:
            value = (data.get(section) or {}).get(key)
            if value is not None:
                try:
                    parse_duration(value)
                except ValueError:
                    out.append(_diag(doc, [section, key], "ARX132", "duration must be greater than zero"))
    url = (data.get("redis") or {}).get("url")
    if url is not None and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        out.append(_diag(doc, ["redis", "url"], "ARX103", "must be a redis://, rediss:// or unix:// URL"))
    return out


def _seconds(value: str | None, default: float) -> float:
    return default if value is None else parse_duration(value).total_seconds()


def _build(data: dict[str, Any], source: str) -> RouterConfig:
    providers = []
    for p in data["providers"]:
        kind = p["kind"]
        timeouts = p.get("timeouts") or {}
        providers.append(ProviderSpec(
            name=p["name"], kind=kind,
            base_url=p.get("base_url", DEFAULT_BASE_URL.get(kind, "")).rstrip("/"),
            api_key_env=p.get("api_key_env", DEFAULT_KEY_ENV.get(kind)),
            models=dict(p.get("models") or DEFAULT_MODELS[kind]),
            connect_timeout=_seconds(timeouts.get("connect"), 5.0),
            read_timeout=_seconds(timeouts.get("read"), 60.0),
        ))
    breaker = data.get("breaker") or {}
    redis = data.get("redis") or {}
    defaults_b, defaults_r = BreakerSettings(), RedisSettings()
    return RouterConfig(
        providers=tuple(providers),
        order=tuple(data.get("order") or [p.name for p in providers]),
        agents={name: tuple(entry["order"]) for name, entry in (data.get("agents") or {}).items()},
        breaker=BreakerSettings(
            failures=breaker.get("failures", defaults_b.failures),
            window=_seconds(breaker.get("window"), defaults_b.window),
            open=_seconds(breaker.get("open"), defaults_b.open),
            probe_timeout=_seconds(breaker.get("probe_timeout"), defaults_b.probe_timeout),
        ),
        redis=RedisSettings(
            url=redis.get("url"),
            timeout=_seconds(redis.get("timeout"), defaults_r.timeout),
            key_prefix=redis.get("key_prefix", defaults_r.key_prefix),
            retry_after=_seconds(redis.get("retry_after"), defaults_r.retry_after),
        ),
        source=source,
    )


def _from_documents(docs: list[Document], diags: list[Diagnostic], path: str) -> RouterConfig:
    if not diags and len(docs) != 1:
        line = docs[1].start_line if len(docs) > 1 else 1
        diags = [Diagnostic(path, line, 1, "ARX003", Severity.error, "router config must be exactly one document")]
    if not diags and not isinstance(docs[0].data, dict):
        diags = [Diagnostic(path, docs[0].start_line, 1, "ARX003", Severity.error, "router config must be a mapping")]
    if not diags:
        diags = schema_diagnostics(docs[0], _validator(), patterns=_PATTERN_WORDING)
    if not diags:
        diags = _semantic_diagnostics(docs[0])
    if diags:
        raise ValidationFailed(sorted(diags, key=sort_key))
    return _build(docs[0].data, path)


def load_config(path: Path) -> RouterConfig:
    """Read and check a router config file; problems raise ValidationFailed with file:line:col."""
    docs, diags = read_file(path)
    return _from_documents(docs, diags, str(path))


def parse_config(text: str, path: str = "<string>") -> RouterConfig:
    docs, diags = parse_text(text, path)
    return _from_documents(docs, diags, path)


def resolve_config(path: Path | None, state: Path | None = None) -> RouterConfig:
    """`--config FILE`, else `router.yaml` in the state directory, else the defaults."""
    if path is not None:
        return load_config(path)
    candidate = resolve_state_dir(state) / CONFIG_NAME
    return load_config(candidate) if candidate.exists() else default_config()
