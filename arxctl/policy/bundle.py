"""The enforcement bundle: everything a gateway or sidecar needs to decide calls, as one canonical JSON document.

The operator builds one bundle per namespace from the cluster's Agent, Policy, ConnectorCatalog and Grant
resources and writes it to the ConfigMap `arx-enforcement-bundle` under the key `bundle.json`; a gateway mounts
that ConfigMap and turns it into the engine's state with `state_from_bundle`. A bundle that is missing, unreadable,
inconsistent or tampered with raises `BundleError`: the caller must then deny every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from arxctl import API_VERSION
from arxctl.canonical import canonical_bytes, digest
from arxctl.clock import format_ts, parse_ts
from arxctl.errors import StateError
from arxctl.policy.catalog import Catalog, CatalogConflict, builtin
from arxctl.policy.compiler import compile_policies, revision
from arxctl.policy.engine import AgentInfo, EngineState, Grant, SessionWindow
from arxctl.policy.risk import RiskModel

BUNDLE_KEY = "bundle.json"
BUNDLE_KIND = "EnforcementBundle"
CONFIGMAP_NAME = "arx-enforcement-bundle"
AGENT_STATUSES = ("active", "suspended", "decommissioned")
APPROVED = "Approved"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
_UNHASHED = ("generated", "revision")
_TOP_KEYS = frozenset({
    "apiVersion", "kind", "namespace", "revision", "generated", "agents", "policies", "catalogs", "grants",
    "revoked_handles", "policy_revision",
})
_AGENT_KEYS = frozenset({"name", "status", "throttled", "version", "digest", "doc"})
_GRANT_KEYS = frozenset({"id", "agent", "actions", "scope", "phase", "approved_at", "expires_at"})


class BundleError(StateError):
    """No valid enforcement bundle could be loaded or built: every call must be denied."""


def resource_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A resource as the bundle carries it: apiVersion, kind, metadata (name, labels) and spec; nothing else."""
    metadata = doc.get("metadata") or {}
    meta: dict[str, Any] = {"name": str(metadata["name"])}
    if metadata.get("labels"):
        meta["labels"] = {str(k): str(v) for k, v in metadata["labels"].items()}
    return {"apiVersion": doc.get("apiVersion", API_VERSION), "kind": doc["kind"], "metadata": meta,
            "spec": dict(doc.get("spec") or {})}


def agent_entry(doc: Mapping[str, Any], *, status: str, throttled: bool, version: int, digest: str) -> dict[str, Any]:
    """One `agents` entry: the Agent resource with its registry status, throttle, version and digest."""
    return {"name": str(doc["metadata"]["name"]), "status": status, "throttled": throttled, "version": version,
            "digest": digest, "doc": resource_doc(doc)}


def _grant_entry(grant: Mapping[str, Any]) -> dict[str, Any]:
    def ts(value: Any) -> str | None:
        if value is None:
            return None
        return format_ts(value) if isinstance(value, datetime) else format_ts(parse_ts(str(value)))

    return {
        "id": str(grant["id"]), "agent": str(grant["agent"]), "actions": sorted({str(a) for a in grant["actions"]}),
        "scope": dict(grant.get("scope") or {}), "phase": str(grant.get("phase") or ""),
        "approved_at": ts(grant.get("approved_at")), "expires_at": ts(grant.get("expires_at")),
    }


def _sorted_unique(items: Iterable[dict[str, Any]], key: str, what: str) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name = str(item[key]) if key in item else str(item["metadata"]["name"])
        if name in out:
            raise BundleError(f"the bundle would hold {what} '{name}' twice")
        out[name] = item
    return [out[name] for name in sorted(out)]


def build_bundle(
    *, namespace: str, agents: list[dict[str, Any]], policies: list[dict[str, Any]], catalogs: list[dict[str, Any]],
    grants: list[dict[str, Any]], revoked_handles: list[str], generated: str,
) -> dict[str, Any]:
    """The bundle for one namespace (pure). Only grants that are Approved and unexpired at `generated` are carried:
    no other grant can ever allow a call."""
    at = parse_ts(generated)
    agent_entries = []
    for entry in agents:
        if entry["status"] not in AGENT_STATUSES:
            raise BundleError(f"agent '{entry['name']}' has unknown status {entry['status']!r}")
        agent_entries.append(agent_entry(entry["doc"], status=entry["status"], throttled=bool(entry["throttled"]),
                                         version=int(entry["version"]), digest=str(entry["digest"])))
    policy_docs = _sorted_unique((resource_doc(p) for p in policies), "name", "policy")
    live = [g for g in (_grant_entry(g) for g in grants)
            if g["phase"] == APPROVED and g["approved_at"] is not None and g["expires_at"] is not None
            and at < parse_ts(g["expires_at"])]
    bundle: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": BUNDLE_KIND,
        "namespace": namespace,
        "generated": format_ts(at),
        "agents": _sorted_unique(agent_entries, "name", "agent"),
        "policies": policy_docs,
        "catalogs": _sorted_unique((resource_doc(c) for c in catalogs), "name", "catalog"),
        "grants": _sorted_unique(live, "id", "grant"),
        "revoked_handles": sorted(set(revoked_handles)),
        "policy_revision": revision(((p["metadata"]["name"], p["spec"]) for p in policy_docs), RiskModel()),
    }
    bundle["revision"] = bundle_revision(bundle)
    return bundle


def bundle_revision(bundle: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of the canonical bundle without `generated` and `revision`: equal content, equal revision."""
    return digest({k: v for k, v in bundle.items() if k not in _UNHASHED})


def bundle_bytes(bundle: Mapping[str, Any]) -> bytes:
    """The bundle as stored in the ConfigMap: canonical JSON (sorted keys, no spaces, UTF-8)."""
    return canonical_bytes(bundle)


def _require(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise BundleError(f"{source}: {message}")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_bundle(bundle: Any, source: str = "bundle") -> dict[str, Any]:
    """The bundle when its shape is right and its revision matches its content; BundleError otherwise."""
    _require(isinstance(bundle, dict), source, "a bundle is a JSON object")
    missing = sorted(_TOP_KEYS - set(bundle))
    _require(not missing, source, f"missing {', '.join(missing)}")
    _require(bundle["apiVersion"] == API_VERSION and bundle["kind"] == BUNDLE_KIND, source,
             f"expected apiVersion {API_VERSION} and kind {BUNDLE_KIND}")
    for key in ("agents", "policies", "catalogs", "grants"):
        _require(isinstance(bundle[key], list) and all(isinstance(i, dict) for i in bundle[key]), source,
                 f"`{key}` is not a list of objects")
    _require(_is_str_list(bundle["revoked_handles"]), source, "`revoked_handles` is not a list of strings")
    for i, agent in enumerate(bundle["agents"]):
        _require(set(agent) >= _AGENT_KEYS, source, f"agents[{i}] lacks {', '.join(sorted(_AGENT_KEYS - set(agent)))}")
        _require(agent["status"] in AGENT_STATUSES, source, f"agents[{i}] has unknown status {agent['status']!r}")
        _require(isinstance(agent["doc"], dict) and isinstance(agent["doc"].get("spec"), dict)
                 and (agent["doc"].get("metadata") or {}).get("name") == agent["name"], source,
                 f"agents[{i}].doc is not the Agent resource named {agent['name']!r}")
    for i, grant in enumerate(bundle["grants"]):
        _require(set(grant) >= _GRANT_KEYS, source, f"grants[{i}] lacks {', '.join(sorted(_GRANT_KEYS - set(grant)))}")
        _require(_is_str_list(grant["actions"]) and isinstance(grant["scope"], dict), source,
                 f"grants[{i}] has malformed actions or scope")
    for key in ("policies", "catalogs"):
        for i, doc in enumerate(bundle[key]):
            _require(isinstance(doc.get("spec"), dict) and isinstance((doc.get("metadata") or {}).get("name"), str),
                     source, f"{key}[{i}] is not a resource with metadata.name and spec")
    found = bundle_revision(bundle)
    _require(bundle["revision"] == found, source, f"revision {bundle['revision']!r} does not match its content "
                                                  f"({found}): the bundle was altered or truncated")
    return bundle


def parse_bundle(data: bytes, source: str = "bundle") -> dict[str, Any]:
    """Decode and check bundle bytes; BundleError names the line and column of a JSON error."""
    _require(len(data) <= MAX_BUNDLE_BYTES, source, f"larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    return check_bundle(value, source)


def state_from_bundle(bundle: Mapping[str, Any], *, window: SessionWindow | None = None) -> EngineState:
    """The engine's state from a checked bundle; BundleError when its catalogs conflict or its policy revision
    does not match its policies."""
    try:
        catalog: Catalog = builtin().extend_all((c["spec"], c["metadata"]["name"]) for c in bundle["catalogs"])
    except CatalogConflict as exc:
        raise BundleError(f"bundle catalogs conflict: {exc}") from None
    policies = compile_policies(bundle["policies"])
    if policies.revision != bundle["policy_revision"]:
        raise BundleError(f"bundle policy_revision {bundle['policy_revision']!r} does not match its policies "
                          f"({policies.revision})")
    agents = [AgentInfo.from_doc(a["doc"], status=a["status"], throttled=bool(a["throttled"]))
              for a in bundle["agents"]]
    grants = [Grant.from_dict(g) for g in bundle["grants"]]
    return EngineState.build(agents, policies, catalog, grants=grants, window=window)


def load_bundle_dir(path: Path) -> dict[str, Any]:
    """Read and check `<path>/bundle.json` (or `path` itself when it is a file).

    A mounted ConfigMap updates by swapping its `..data` symlink atomically, so one open-and-read sees either
    the old bundle or the new one, never a mix; callers reload when the revision changes.
    """
    target = path / BUNDLE_KEY if path.is_dir() else path
    try:
        with target.open("rb") as handle:
            data = handle.read(MAX_BUNDLE_BYTES + 1)
    except FileNotFoundError:
        raise BundleError(f"{target}: no enforcement bundle (is the {CONFIGMAP_NAME} ConfigMap mounted?)") from None
    except OSError as exc:
        raise BundleError(f"{target}: cannot read the enforcement bundle: {exc.strerror or exc}") from None
    return parse_bundle(data, str(target))
