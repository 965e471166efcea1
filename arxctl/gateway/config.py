"""The gateway config (`gateway.yaml`): where each connector lives and extra REST drivers declared as data.

    connectors:
      servicenow: {base_url: "https://bank.service-now.com"}
      slack: {}                                   # https://slack.com/api by default
      pagerduty: {headers: {From: "arx-bot@bank.example"}}
      aws: {region: us-east-1}
      llm: {router: router.yaml}
    drivers: [drivers/acme-ticketing.yaml]        # more REST connectors, same format as the built-in ones
    cluster: {status_every: 30s}                  # with --bundle: live-drift holds and health into Agent statuses

No secret goes in this file: credentials are the platform's (`arxctl credentials set`). Mistakes are reported
with their file, line and column, and nothing starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from arxctl.diagnostics import Diagnostic, Severity, sort_key
from arxctl.durations import parse_duration
from arxctl.errors import ValidationFailed
from arxctl.gateway.drivers import rest
from arxctl.resources.config_fields import DURATION, DURATION_WORDING, is_loopback
from arxctl.resources.schema_errors import schema_diagnostics
from arxctl.resources.yamlio import Document, json_path_str, parse_text, read_file

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "connectors": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "base_url": {"type": "string"},
                    "auth": {"enum": list(rest.SCHEMES)},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "insecure_http": {"type": "boolean"},
                    "timeouts": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"connect": DURATION, "read": DURATION},
                    },
                    "region": {"type": "string"},
                    "endpoint_url": {"type": "string"},
                    "router": {"type": "string"},
                },
            },
        },
        "drivers": {"type": "array", "items": {"type": "string"}},
        "cluster": {
            "type": "object", "additionalProperties": False,
            "properties": {"kubeconfig": {"type": "string"}, "context": {"type": "string"},
                           "status_every": DURATION},
        },
    },
}
MIN_STATUS_EVERY_S = 1.0
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    """Where one connector is reached and how long to wait for it."""

    base_url: str | None = None
    auth: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    region: str | None = None
    endpoint_url: str | None = None
    router: Path | None = None


@dataclass(frozen=True, slots=True)
class DriverFile:
    """A driver declaration: its document (as data) and where it was read."""

    data: Mapping[str, Any]
    source: str

    @property
    def connector(self) -> str:
        return str(self.data["connector"])

    @property
    def kind(self) -> str:
        return str(self.data.get("kind") or "rest")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How a bundle-mode replica reaches the Kubernetes API to write Agent statuses (None: in-cluster
    ServiceAccount, else $KUBECONFIG) and how often it reports health there."""

    kubeconfig: Path | None = None
    context: str | None = None
    status_every_s: float = 30.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Connector settings and every driver declaration (built-in first, then the config's)."""

    connectors: Mapping[str, ConnectorSettings] = field(default_factory=dict)
    drivers: Mapping[str, DriverFile] = field(default_factory=dict)
    source: str = "<defaults>"
    cluster: ClusterSettings | None = None

    def settings(self, connector: str) -> ConnectorSettings:
        return self.connectors.get(connector) or ConnectorSettings()


def _diag(doc: Document, path: list[str | int], rule: str, message: str, *, key: bool = False) -> Diagnostic:
    line, col = doc.position(path, key=key)
    return Diagnostic(doc.path, line, col, rule, Severity.error, message, json_path_str(path))


@cache
def _validator(which: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = SCHEMA if which == "config" else rest.SCHEMA
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _schema_diagnostics(doc: Document, which: str) -> list[Diagnostic]:
    """Schema errors of the gateway config or a driver file; values are never echoed (they may be secrets)."""
    return schema_diagnostics(doc, _validator(which), patterns=DURATION_WORDING)


def _check_url(doc: Document, path: list[str | int], url: str, insecure: bool) -> list[Diagnostic]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [_diag(doc, path, "ARX103", "must be an http(s) URL with a host")]
    if parts.username or parts.password:
        return [_diag(doc, path, "ARX103", "must not carry credentials; store them with `arxctl credentials set`")]
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not insecure:
        return [_diag(doc, path, "ARX103", "plain http to a non-loopback host would send the credential in clear "
                                           "text; use https (or set insecure_http: true)")]
    return []


def _one_document(docs: list[Document], diags: list[Diagnostic], path: str, what: str) -> Document:
    if not diags and len(docs) != 1:
        line = docs[1].start_line if len(docs) > 1 else 1
        diags = [Diagnostic(path, line, 1, "ARX003", Severity.error, f"{what} must be exactly one document")]
    if not diags and not isinstance(docs[0].data, dict):
        diags = [Diagnostic(path, docs[0].start_line, 1, "ARX003", Severity.error, f"{what} must be a mapping")]
    if diags:
        raise ValidationFailed(sorted(diags, key=sort_key))
    return docs[0]


def _driver_document(doc: Document) -> DriverFile:
    diags = _schema_diagnostics(doc, "driver")
    if not diags:
        for name, spec in doc.data["actions"].items():
            if spec.get("foreach") and "{item" not in spec["path"]:
                diags.append(_diag(doc, ["actions", name, "path"], "ARX103",
                                   "a foreach action's path must use {item}"))
    if diags:
        raise ValidationFailed(sorted(diags, key=sort_key))
    return DriverFile(doc.data, doc.path)


def read_driver(path: Path) -> DriverFile:
    """A REST driver file, checked against the driver schema; problems raise ValidationFailed."""
    docs, diags = read_file(path)
    return _driver_document(_one_document(docs, diags, str(path), "a driver file"))


@cache
def builtin_drivers() -> tuple[DriverFile, ...]:
    """The drivers shipped in `arxctl/data/drivers/`: ServiceNow, Slack, GitHub, Jira, PagerDuty, AWS, LLM."""
    folder = resources.files("arxctl.data").joinpath("drivers")
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            docs, diags = parse_text(entry.read_text(encoding="utf-8"), f"arxctl/data/drivers/{entry.name}")
            doc = _one_document(docs, diags, entry.name, "a driver file")
            out.append(_driver_document(doc) if doc.data.get("kind", "rest") == "rest" else DriverFile(doc.data,
                                                                                                      doc.path))
    return tuple(out)


def _seconds(value: str | None, default: float) -> float:
    return default if value is None else parse_duration(value).total_seconds()


def _semantic(doc: Document, drivers: Mapping[str, DriverFile], base: Path) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for name, entry in (doc.data.get("connectors") or {}).items():
        where: list[str | int] = ["connectors", name]
        driver = drivers.get(name)
        if driver is None:
            close = difflib.get_close_matches(name, list(drivers), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            out.append(_diag(doc, where, "ARX103", f"no driver for connector '{name}'{hint}; known: "
                                                   f"{', '.join(sorted(drivers))}", key=True))
            continue
        insecure = bool(entry.get("insecure_http"))
        for key in ("base_url", "endpoint_url"):
            if key in entry:
                out.extend(_check_url(doc, [*where, key], entry[key], insecure))
        for header in entry.get("headers") or {}:
            if header.lower() in _SECRET_HEADERS:
                out.append(_diag(doc, [*where, "headers", header], "ARX103",
                                 "credentials never go in the config; the driver sends the stored credential",
                                 key=True))
        for key in ("connect", "read"):
            value = (entry.get("timeouts") or {}).get(key)
            if value is not None:
                try:
                    parse_duration(value)
                except ValueError:
                    out.append(_diag(doc, [*where, "timeouts", key], "ARX132", "duration must be greater than zero"))
        if "router" in entry and not (base / entry["router"]).is_file():
            out.append(_diag(doc, [*where, "router"], "ARX103", f"no router config at {base / entry['router']}"))
        kind_keys = {"rest": ("region", "endpoint_url", "router"), "boto3": ("base_url", "auth", "headers", "router"),
                     "router": ("base_url", "auth", "headers", "region", "endpoint_url")}
        for key in kind_keys.get(driver.kind, ()):
            if key in entry:
                out.append(_diag(doc, [*where, key], "ARX101", f"'{key}' does not apply to the {driver.kind} "
                                                               f"driver of '{name}'", key=True))
    return out


def _cluster_diagnostics(doc: Document, base: Path) -> list[Diagnostic]:
    cluster = doc.data.get("cluster")
    if cluster is None:
        return []
    out = []
    if "kubeconfig" in cluster and not (base / cluster["kubeconfig"]).is_file():
        out.append(_diag(doc, ["cluster", "kubeconfig"], "ARX103", f"no kubeconfig at {base / cluster['kubeconfig']}"))
    every = cluster.get("status_every")
    if every is not None:
        try:
            seconds = parse_duration(every).total_seconds()
        except ValueError:
            seconds = 0.0
        if seconds < MIN_STATUS_EVERY_S:
            out.append(_diag(doc, ["cluster", "status_every"], "ARX132",
                             f"must be at least {MIN_STATUS_EVERY_S:g}s (each report is a write to the API server)"))
    return out


def _cluster(data: Mapping[str, Any] | None, base: Path) -> ClusterSettings | None:
    if data is None:
        return None
    return ClusterSettings(kubeconfig=(base / data["kubeconfig"]) if data.get("kubeconfig") else None,
                           context=data.get("context"), status_every_s=_seconds(data.get("status_every"), 30.0))


def _settings(entry: Mapping[str, Any], base: Path) -> ConnectorSettings:
    timeouts = entry.get("timeouts") or {}
    return ConnectorSettings(
        base_url=entry.get("base_url"), auth=entry.get("auth"), headers=dict(entry.get("headers") or {}),
        connect_timeout=_seconds(timeouts.get("connect"), 5.0), read_timeout=_seconds(timeouts.get("read"), 30.0),
        region=entry.get("region"), endpoint_url=entry.get("endpoint_url"),
        router=(base / entry["router"]) if entry.get("router") else None,
    )


def _build(doc: Document | None, base: Path) -> GatewayConfig:
    drivers: dict[str, DriverFile] = {d.connector: d for d in builtin_drivers()}
    data = doc.data if doc is not None else {}
    extra_diags: list[Diagnostic] = []
    for i, name in enumerate(data.get("drivers") or []):
        path = base / name
        if not path.is_file():
            assert doc is not None
            extra_diags.append(_diag(doc, ["drivers", i], "ARX103", f"no driver file at {path}"))
            continue
        extra = read_driver(path)
        drivers[extra.connector] = extra
    if doc is not None:
        extra_diags.extend(_semantic(doc, drivers, base))
        extra_diags.extend(_cluster_diagnostics(doc, base))
    if extra_diags:
        raise ValidationFailed(sorted(extra_diags, key=sort_key))
    connectors = {name: _settings(entry, base) for name, entry in (data.get("connectors") or {}).items()}
    return GatewayConfig(connectors, drivers, doc.path if doc is not None else "<defaults>",
                         _cluster(data.get("cluster"), base))


def load_config(path: Path | None) -> GatewayConfig:
    """The gateway config at `path` (None: the built-in drivers with their defaults); problems raise
    ValidationFailed with file:line:col."""
    if path is None:
        return _build(None, Path.cwd())
    docs, diags = read_file(path)
    doc = _one_document(docs, diags, str(path), "the gateway config")
    schema = _schema_diagnostics(doc, "config")
    if schema:
        raise ValidationFailed(sorted(schema, key=sort_key))
    return _build(doc, path.parent)


def parse_config(text: str, path: str = "<string>", base: Path | None = None) -> GatewayConfig:
    docs, diags = parse_text(text, path)
    doc = _one_document(docs, diags, path, "the gateway config")
    schema = _schema_diagnostics(doc, "config")
    if schema:
        raise ValidationFailed(sorted(schema, key=sort_key))
    return _build(doc, base or Path.cwd())
