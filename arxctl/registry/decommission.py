"""Decommissioning an agent in one transaction, the orphan check that proves nothing is left, and lineage.

Decommissioning declines the agent's pending approvals, revokes its grants now (not at TTL), revokes its
live handles, deletes its bound credentials, marks it decommissioned, records who, when, why and what was
revoked, and seals its record with a retention class, all in one write transaction: a crash leaves either
nothing or all of it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from arxctl.chain.seal import seal
from arxctl.chain.store import sealed_agents
from arxctl.clock import format_ts, now
from arxctl.errors import InputError, NotFoundError, StateError
from arxctl.registry import approvals, credentials, grants, handles
from arxctl.registry.config import ProjectConfig
from arxctl.registry.lifecycle import DECOMMISSIONED, agent_status, need_reason, record, status
from arxctl.store.sqlite import Store


@dataclass(frozen=True, slots=True)
class Check:
    """One orphan check: what was looked for and what was found (nothing, when it passes)."""

    name: str
    description: str
    found: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.found

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "description": self.description, "ok": self.ok, "found": list(self.found)}


@dataclass(frozen=True, slots=True)
class OrphanCheck:
    """Everything an agent could still act through, checked after decommissioning."""

    agent: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


def orphan_check(conn: sqlite3.Connection, agent: str, at: datetime, *, sealed: bool = True) -> OrphanCheck:
    """No grant, handle, bound credential or approval left that could let the agent act; status and seal."""
    current = agent_status(conn, agent)
    checks = [
        Check("status", "agent status is decommissioned", () if current == DECOMMISSIONED else (current,)),
        Check("grants", "no pending or live grant", tuple(grants.open_grants(conn, agent, at))),
        Check("handles", "no live handle", tuple(handles.open_handles(conn, agent, at))),
        Check("credentials", "no credential bound to the agent",
              tuple(c.connector for c in credentials.list_credentials(conn, agent=agent))),
        Check("approvals", "no pending or usable approval", tuple(approvals.open_approvals(conn, agent, at))),
    ]
    if sealed:
        checks.append(Check("seal", "personnel record sealed",
                            () if agent in sealed_agents(conn) else ("not sealed",)))
    return OrphanCheck(agent, tuple(checks))


@dataclass(frozen=True, slots=True)
class Decommissioned:
    """What a decommission did: the records it wrote, what it revoked, and the orphan check afterwards."""

    agent: str
    actor: str
    ts: str
    reason: str
    retention_class: str
    replaced_by: str | None
    revoked: dict[str, Any]
    record_seq: int
    seal_seq: int
    orphans: OrphanCheck

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "actor": self.actor, "ts": self.ts, "reason": self.reason,
            "retention_class": self.retention_class, "replaced_by": self.replaced_by, "revoked": self.revoked,
            "record_seq": self.record_seq, "seal_seq": self.seal_seq, "orphan_check": self.orphans.to_dict(),
        }


def decommission(
    store: Store, name: str, *, actor: str, reason: str, retention_class: str, config: ProjectConfig,
    replaced_by: str | None = None, at: datetime | None = None,
) -> Decommissioned:
    """Terminate an agent's identity: everything revoked now, recorded, sealed; then verify nothing remains."""
    reason = need_reason(reason, "a decommission")
    moment = at or now()
    ts = format_ts(moment)
    table = config.retention_classes(store.directory)
    if retention_class not in table:
        raise InputError(f"unknown retention class {retention_class!r}; known: {', '.join(sorted(table))}")
    why = f"agent decommissioned: {reason}"
    with store.transaction() as conn:
        current = agent_status(conn, name)
        if current == DECOMMISSIONED:
            held = status(conn, name)
            raise InputError(f"agent '{name}' was already decommissioned at {held.decommissioned_at} by "
                             f"{held.decommissioned_by}")
        if name in sealed_agents(conn):
            raise InputError(f"agent '{name}' is sealed already; its record takes no decommission record")
        if replaced_by is not None:
            _check_replacement(conn, name, replaced_by)
        revoked: dict[str, Any] = {
            "approvals": approvals.end_all(conn, name, actor=actor, reason=why, at=moment),
            "grants": grants.end_all(conn, name, actor=actor, reason=why, at=moment),
            "handles": handles.revoke_all(conn, name, actor=actor, reason=why, at=moment),
            "credentials": credentials.delete_for_agent(conn, name, actor=actor, reason=why, at=moment),
        }
        conn.execute("UPDATE heads SET status = ?, updated_ts = ? WHERE kind = 'Agent' AND name = ?",
                     (DECOMMISSIONED, ts, name))
        conn.execute("INSERT INTO agent_lifecycle (agent) VALUES (?) ON CONFLICT (agent) DO NOTHING", (name,))
        conn.execute(
            "UPDATE agent_lifecycle SET decommissioned_ts = ?, decommissioned_by = ?, decommission_reason = ?, "
            "retention_class = ?, replaced_by = ? WHERE agent = ?",
            (ts, actor, reason, retention_class, replaced_by, name),
        )
        before_seal = orphan_check(conn, name, moment, sealed=False)
        if not before_seal.ok:
            left = "; ".join(f"{c.name}: {', '.join(c.found)}" for c in before_seal.checks if not c.ok)
            raise StateError(f"decommission of '{name}' left {left}; nothing was changed")
        body = {"reason": reason, "retention_class": retention_class, "replaced_by": replaced_by,
                "revoked": revoked, "orphan_check": before_seal.to_dict()}
        written = record(conn, "agent.decommissioned", name, actor, body, ts)
        sealed = seal(conn, name, retention_class, actor, reason, table, ts)
    return Decommissioned(name, actor, ts, reason, retention_class, replaced_by, revoked, written.seq, sealed.seq,
                          orphan_check(store.conn, name, moment))


def _check_replacement(conn: sqlite3.Connection, name: str, replaced_by: str) -> None:
    if replaced_by == name:
        raise InputError(f"agent '{name}' cannot replace itself")
    try:
        replacement = agent_status(conn, replaced_by)
    except NotFoundError:
        raise InputError(f"replacement agent '{replaced_by}' is not registered: register it first, or leave out "
                         f"--replaced-by and register it later with `spec.parent: {name}`") from None
    if replacement == DECOMMISSIONED:
        raise InputError(f"replacement agent '{replaced_by}' is decommissioned")


@dataclass(frozen=True, slots=True)
class Ancestor:
    """One agent in a lineage walk: how it links to its successor and why it was retired."""

    name: str
    depth: int
    via: str
    successor: str | None
    status: str
    registered_at: str | None = None
    retired_at: str | None = None
    retired_by: str | None = None
    reason: str | None = None
    retention_class: str | None = None
    replaced_by: str | None = None
    parents: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "depth": self.depth, "via": self.via, "successor": self.successor,
            "status": self.status, "registered_at": self.registered_at, "retired_at": self.retired_at,
            "retired_by": self.retired_by, "reason": self.reason, "retention_class": self.retention_class,
            "replaced_by": self.replaced_by, "parents": list(self.parents),
        }


def lineage(store: Store, name: str) -> list[Ancestor]:
    """The agent and every predecessor, breadth first: `spec.parent` pointers and `--replaced-by` links."""
    conn = store.conn
    agent_status(conn, name)
    heads = {r[0]: r[1] for r in conn.execute("SELECT name, status FROM heads WHERE kind = 'Agent'")}
    replaced: dict[str, list[str]] = {}
    for old, new in conn.execute("SELECT agent, replaced_by FROM agent_lifecycle WHERE replaced_by IS NOT NULL "
                                 "ORDER BY agent"):
        replaced.setdefault(new, []).append(old)
    out: list[Ancestor] = []
    seen = {name}
    queue: list[tuple[str, int, str, str | None]] = [(name, 0, "self", None)]
    while queue:
        current, depth, via, successor = queue.pop(0)
        if current not in heads:
            out.append(Ancestor(current, depth, via, successor, "unregistered"))
            continue
        doc, registered = _first_and_head(conn, current)
        parent = doc["spec"].get("parent")
        parents = [(p, "spec.parent") for p in ([parent] if parent else [])]
        parents += [(p, "replaced_by") for p in replaced.get(current, []) if p != parent]
        held = status(conn, current)
        out.append(Ancestor(
            current, depth, via, successor, heads[current], registered, held.decommissioned_at,
            held.decommissioned_by, held.decommission_reason, held.retention_class, held.replaced_by,
            tuple(p for p, _ in parents),
        ))
        for pred, link in parents:
            if pred not in seen:
                seen.add(pred)
                queue.append((pred, depth + 1, link, current))
    return out


def _first_and_head(conn: sqlite3.Connection, name: str) -> tuple[dict[str, Any], str]:
    row = conn.execute(
        "SELECT r.doc, (SELECT ts FROM resources WHERE kind = 'Agent' AND name = ? AND version = 1) "
        "FROM heads h JOIN resources r ON r.kind = h.kind AND r.name = h.name AND r.version = h.version "
        "WHERE h.kind = 'Agent' AND h.name = ?", (name, name),
    ).fetchone()
    return orjson.loads(row[0]), row[1]
