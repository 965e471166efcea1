"""Storing resources as immutable versions, with a chain record in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from arxctl.canonical import canonical_str, digest
from arxctl.chain import store as chain
from arxctl.clock import now_ts
from arxctl.errors import InputError, NotFoundError
from arxctl.policy.catalog import Catalog, builtin
from arxctl.registry.diff import diff
from arxctl.resources.validation import Resource
from arxctl.store.sqlite import Store

# Chain record types per kind: (first version, later version).
RECORD_TYPES = {
    "Agent": ("agent.registered", "agent.version"),
    "Policy": ("policy.registered", "policy.updated"),
    "ConnectorCatalog": ("catalog.registered", "catalog.updated"),
    "Grant": ("grant.registered", "grant.updated"),
}
ACTIVE, SUSPENDED, DECOMMISSIONED = "active", "suspended", "decommissioned"


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of registering one resource."""

    kind: str
    name: str
    version: int
    changed: bool
    digest: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Version:
    kind: str
    name: str
    version: int
    digest: str
    doc: dict[str, Any]
    ts: str
    actor: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Head:
    kind: str
    name: str
    version: int
    status: str
    updated_ts: str


def normalize(doc: dict[str, Any]) -> dict[str, Any]:
    """The stored content: apiVersion, kind, metadata (name, labels) and spec; status is never stored."""
    metadata = doc.get("metadata") or {}
    meta: dict[str, Any] = {"name": metadata["name"]}
    if metadata.get("labels"):
        meta["labels"] = dict(metadata["labels"])
    if metadata.get("annotations"):
        meta["annotations"] = dict(metadata["annotations"])
    return {"apiVersion": doc["apiVersion"], "kind": doc["kind"], "metadata": meta, "spec": doc["spec"]}


def _head(conn: sqlite3.Connection, kind: str, name: str) -> Head | None:
    row = conn.execute(
        "SELECT kind, name, version, status, updated_ts FROM heads WHERE kind = ? AND name = ?", (kind, name)
    ).fetchone()
    return Head(*row) if row else None


def _version_row(conn: sqlite3.Connection, kind: str, name: str, version: int) -> Version | None:
    row = conn.execute(
        "SELECT kind, name, version, digest, doc, ts, actor, reason FROM resources "
        "WHERE kind = ? AND name = ? AND version = ?",
        (kind, name, version),
    ).fetchone()
    if not row:
        return None
    return Version(row[0], row[1], row[2], row[3], orjson.loads(row[4]), row[5], row[6], row[7])


def _write_version(
    conn: sqlite3.Connection, doc: dict[str, Any], *, actor: str, reason: str | None, ts: str,
    record_type: str | None = None, extra_body: dict[str, Any] | None = None,
) -> Stored:
    kind, name = doc["kind"], doc["metadata"]["name"]
    content_digest = digest(doc)
    head = _head(conn, kind, name)
    if head is not None:
        current = _version_row(conn, kind, name, head.version)
        if record_type is None and current is not None and current.digest == content_digest:
            return Stored(kind, name, head.version, False, content_digest)
        if kind == "Agent" and head.status == DECOMMISSIONED:
            raise InputError(f"agent '{name}' is decommissioned; its identity cannot be reused")
    version = 1 if head is None else head.version + 1
    conn.execute(
        "INSERT INTO resources (kind, name, version, digest, doc, ts, actor, reason) VALUES (?,?,?,?,?,?,?,?)",
        (kind, name, version, content_digest, canonical_str(doc), ts, actor, reason),
    )
    status = head.status if head else ACTIVE
    conn.execute(
        "INSERT INTO heads (kind, name, version, status, updated_ts) VALUES (?,?,?,?,?) "
        "ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, updated_ts = excluded.updated_ts",
        (kind, name, version, status, ts),
    )
    first, later = RECORD_TYPES[kind]
    body: dict[str, Any] = {"kind": kind, "name": name, "version": version, "digest": content_digest, "doc": doc}
    if reason:
        body["reason"] = reason
    body.update(extra_body or {})
    record = chain.append(
        conn,
        chain.Entry(
            type=record_type or (first if head is None else later),
            agent=name if kind == "Agent" else None,
            actor=actor,
            body=body,
            ts=ts,
        ),
    )
    return Stored(kind, name, version, True, content_digest, record.seq)


def register(store: Store, resources: Sequence[Resource], *, actor: str, reason: str | None = None) -> list[Stored]:
    """Store validated resources: all of them in one transaction, or none."""
    ts = now_ts()
    with store.transaction() as conn:
        return [_write_version(conn, normalize(r.doc), actor=actor, reason=reason, ts=ts) for r in resources]


def rollback(store: Store, name: str, to: int, *, actor: str, reason: str) -> tuple[Stored, list[dict[str, Any]]]:
    """Make a new Agent version equal to version `to`; the record carries who, why and the diff."""
    if not reason.strip():
        raise InputError("a rollback needs a --reason")
    ts = now_ts()
    with store.transaction() as conn:
        head = _head(conn, "Agent", name)
        if head is None:
            raise NotFoundError(f"no agent '{name}'")
        target = _version_row(conn, "Agent", name, to)
        if target is None:
            raise NotFoundError(f"agent '{name}' has no version {to} (versions 1..{head.version})")
        current = _version_row(conn, "Agent", name, head.version)
        assert current is not None
        if current.digest == target.digest:
            raise InputError(f"agent '{name}' version {head.version} already has the content of version {to}")
        changes = diff(current.doc, target.doc)
        stored = _write_version(
            conn, target.doc, actor=actor, reason=reason, ts=ts, record_type="agent.rolled_back",
            extra_body={"from_version": head.version, "to_version": to, "diff": changes},
        )
        return stored, changes


# ---------------------------------------------------------------- queries

def head(store: Store, kind: str, name: str) -> Head | None:
    return _head(store.conn, kind, name)


def get(store: Store, kind: str, name: str, version: int | None = None) -> Version:
    h = _head(store.conn, kind, name)
    if h is None:
        raise NotFoundError(f"no {kind.lower()} '{name}'")
    v = _version_row(store.conn, kind, name, version or h.version)
    if v is None:
        raise NotFoundError(f"{kind.lower()} '{name}' has no version {version} (versions 1..{h.version})")
    return v


def versions(store: Store, kind: str, name: str) -> list[Version]:
    rows = store.conn.execute(
        "SELECT kind, name, version, digest, doc, ts, actor, reason FROM resources "
        "WHERE kind = ? AND name = ? ORDER BY version",
        (kind, name),
    ).fetchall()
    if not rows:
        raise NotFoundError(f"no {kind.lower()} '{name}'")
    return [Version(r[0], r[1], r[2], r[3], orjson.loads(r[4]), r[5], r[6], r[7]) for r in rows]


def current(store: Store, kind: str) -> list[tuple[Head, Version]]:
    """Every resource of a kind at its head version, by name."""
    rows = store.conn.execute(
        "SELECT h.kind, h.name, h.version, h.status, h.updated_ts, r.digest, r.doc, r.ts, r.actor, r.reason "
        "FROM heads h JOIN resources r ON r.kind = h.kind AND r.name = h.name AND r.version = h.version "
        "WHERE h.kind = ? ORDER BY h.name",
        (kind,),
    ).fetchall()
    return [
        (Head(*r[:5]), Version(r[0], r[1], r[2], r[5], orjson.loads(r[6]), r[7], r[8], r[9])) for r in rows
    ]


def catalog(store: Store | None, base: Catalog | None = None) -> Catalog:
    """The built-in catalog extended by every registered ConnectorCatalog."""
    result = base or builtin()
    if store is None:
        return result
    return result.extend_all((v.doc["spec"], v.name) for _, v in current(store, "ConnectorCatalog"))
