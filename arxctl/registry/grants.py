"""Temporary scoped grants: request, approve, deny, revoke, expire; the engine reads them from here.

An approved grant allows exactly its actions, for payloads matching its scope, from approval until
approval + TTL (or its revocation, whichever comes first). Expiry is decided by the engine from those
timestamps; `expire` only records the `grant.expired` events.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from arxctl.canonical import canonical_str
from arxctl.chain.store import sealed_agents
from arxctl.clock import format_ts, now, parse_ts
from arxctl.durations import format_duration, parse_duration
from arxctl.errors import InputError, NotFoundError
from arxctl.policy.catalog import Catalog
from arxctl.policy.engine import Grant
from arxctl.policy.masking import mask
from arxctl.registry.config import NotPermitted, ProjectConfig
from arxctl.registry.lifecycle import Target, connection, need_reason, record, require_live, write

PENDING, APPROVED, DENIED, EXPIRED, REVOKED = "Pending", "Approved", "Denied", "Expired", "Revoked"
PHASES = (PENDING, APPROVED, DENIED, EXPIRED, REVOKED)
MAX_TTL = timedelta(hours=24)
_COLUMNS = (
    "id, agent, actions, scope, ttl_s, reason, requested_by, requested_ts, phase, decided_by, decided_ts, comment, "
    "approved_at, expires_at, revoked_by, revoked_ts, revoke_reason, expiry_recorded"
)


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A stored grant with its full history: who asked, who decided, when it runs out or was revoked."""

    id: str
    agent: str
    actions: tuple[str, ...]
    scope: dict[str, Any]
    ttl: timedelta
    reason: str
    requested_by: str
    requested_at: str
    phase: str
    decided_by: str | None
    decided_at: str | None
    comment: str | None
    approved_at: str | None
    expires_at: str | None
    revoked_by: str | None
    revoked_at: str | None
    revoke_reason: str | None
    expiry_recorded: bool

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> GrantRecord:
        return cls(
            row[0], row[1], tuple(orjson.loads(row[2])), orjson.loads(row[3]), timedelta(seconds=row[4]),
            *row[5:17], bool(row[17]),
        )

    def effective_phase(self, at: datetime) -> str:
        """The phase at `at`: an approved grant past its expiry is Expired whether or not that was recorded."""
        if self.phase == APPROVED and self.expires_at is not None and at >= parse_ts(self.expires_at):
            return EXPIRED
        return self.phase

    def active_at(self, at: datetime) -> bool:
        grant = self.engine_grant()
        return grant is not None and grant.active_at(at)

    def engine_grant(self) -> Grant | None:
        """The engine's view: live from approval until expiry or revocation; None when never approved."""
        if self.approved_at is None or self.expires_at is None:
            return None
        end = parse_ts(self.expires_at)
        if self.revoked_at is not None:
            end = min(end, parse_ts(self.revoked_at))
        return Grant(self.id, self.agent, frozenset(self.actions), self.scope, APPROVED, parse_ts(self.approved_at),
                     end)

    def to_dict(self, at: datetime) -> dict[str, Any]:
        """The grant as printed: the scope masked, the phase as of `at`."""
        return {
            "id": self.id, "agent": self.agent, "actions": list(self.actions), "scope": mask(self.scope),
            "ttl": format_duration(self.ttl), "reason": self.reason, "requestedBy": self.requested_by,
            "requestedAt": self.requested_at, "phase": self.effective_phase(at), "active": self.active_at(at),
            "decidedBy": self.decided_by, "decidedAt": self.decided_at, "comment": self.comment,
            "approvedAt": self.approved_at, "expiresAt": self.expires_at, "revokedBy": self.revoked_by,
            "revokedAt": self.revoked_at, "revokeReason": self.revoke_reason,
        }


def parse_scope(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` (a string) or `key:=json` (a typed JSON value, e.g. `count:=3`) into a scope mapping."""
    scope: dict[str, Any] = {}
    for item in items:
        eq = item.find("=")
        if eq > 0 and item[eq - 1] == ":":
            key, raw = item[: eq - 1], item[eq + 1:]
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"--scope {item!r}: the value after ':=' is not JSON: {exc.msg}") from None
        elif "=" in item:
            key, _, value = item.partition("=")
        else:
            raise InputError(f"--scope {item!r}: use key=value, or key:=json for a typed value")
        key = key.strip()
        if not key:
            raise InputError(f"--scope {item!r}: the key is empty")
        if key in scope:
            raise InputError(f"--scope: key {key!r} is given twice")
        scope[key] = value
    return scope


def parse_ttl(ttl: str | timedelta) -> timedelta:
    """A grant TTL: a duration above zero and at most 24h."""
    try:
        delta = ttl if isinstance(ttl, timedelta) else parse_duration(ttl)
    except ValueError as exc:
        raise InputError(f"--ttl: {exc}") from None
    if delta <= timedelta(0):
        raise InputError("--ttl must be greater than zero")
    if delta > MAX_TTL:
        raise InputError(f"--ttl {format_duration(delta)} exceeds the 24h maximum for a grant")
    return delta


def _load(conn: sqlite3.Connection, grant_id: str) -> GrantRecord:
    row = conn.execute(f"SELECT {_COLUMNS} FROM grants WHERE id = ?", (grant_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no grant '{grant_id}'")
    return GrantRecord.from_row(row)


def get(store: Target, grant_id: str) -> GrantRecord:
    return _load(connection(store), grant_id)


def list_grants(store: Target, *, agent: str | None = None) -> list[GrantRecord]:
    """Every grant (optionally one agent's), oldest request first."""
    where, args = ("WHERE agent = ?", (agent,)) if agent else ("", ())
    rows = connection(store).execute(f"SELECT {_COLUMNS} FROM grants {where} ORDER BY requested_ts, id", args)
    return [GrantRecord.from_row(r) for r in rows]


def engine_grants(conn: sqlite3.Connection, since: datetime | None = None) -> list[Grant]:
    """Approved grants in the engine's form (the engine decides from their timestamps): every one ever approved,
    or with `since` only those that can still be live at or after it."""
    if since is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM grants WHERE approved_at IS NOT NULL ORDER BY id")
    else:
        cutoff = format_ts(since.replace(microsecond=0) - timedelta(seconds=1))
        rows = conn.execute(f"SELECT {_COLUMNS} FROM grants WHERE approved_at IS NOT NULL AND expires_at >= ? "
                            "ORDER BY id", (cutoff,))
    return [g for g in (GrantRecord.from_row(r).engine_grant() for r in rows) if g is not None]


def request(
    store: Target, *, agent: str, actions: Sequence[str], scope: Mapping[str, Any], ttl: str | timedelta,
    reason: str, requested_by: str, catalog: Catalog, at: datetime | None = None,
) -> GrantRecord:
    """Record a pending grant request; nothing is allowed until someone else approves it."""
    reason = need_reason(reason, "a grant request")
    delta = parse_ttl(ttl)
    wanted = list(dict.fromkeys(a.strip() for a in actions if a.strip()))
    if not wanted:
        raise InputError("a grant needs at least one --action")
    for action in wanted:
        if catalog.lookup(action) is None:
            raise InputError(f"unknown action '{action}': not in the connector catalog (add it with a "
                             "ConnectorCatalog and `arxctl register`)")
    moment = at or now()
    ts = format_ts(moment)
    grant_id = "g-" + secrets.token_hex(5)
    with write(store) as conn:
        require_live(conn, agent, "grant to")
        conn.execute(
            "INSERT INTO grants (id, agent, actions, scope, ttl_s, reason, requested_by, requested_ts, phase) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (grant_id, agent, canonical_str(wanted), canonical_str(dict(scope)), int(delta.total_seconds()), reason,
             requested_by, ts, PENDING),
        )
        record(conn, "grant.requested", agent, requested_by, {
            "id": grant_id, "actions": wanted, "scope": mask(dict(scope)), "ttl": format_duration(delta),
            "reason": reason, "requested_by": requested_by,
        }, ts)
        return _load(conn, grant_id)


def _decide(store: Target, grant_id: str, *, actor: str, config: ProjectConfig, comment: str | None,
            approve: bool, at: datetime | None) -> GrantRecord:
    moment = at or now()
    ts = format_ts(moment)
    verb = "approve" if approve else "deny"
    with write(store) as conn:
        grant = _load(conn, grant_id)
        if grant.phase != PENDING:
            raise InputError(f"grant '{grant_id}' is {grant.phase}, not Pending")
        if approve and actor == grant.requested_by:
            raise NotPermitted(f"'{actor}' requested grant '{grant_id}' and cannot approve it (segregation of duties)")
        if approve and actor == grant.agent:
            raise NotPermitted(f"agent '{actor}' cannot approve its own grant '{grant_id}' (segregation of duties)")
        config.require_grant_approver(actor, f"{verb} grant '{grant_id}'")
        require_live(conn, grant.agent, f"{verb} a grant for")
        body: dict[str, Any] = {"id": grant_id, "actions": list(grant.actions), "scope": mask(grant.scope),
                                "comment": comment}
        if approve:
            expires = format_ts(moment + grant.ttl)
            conn.execute(
                "UPDATE grants SET phase = ?, decided_by = ?, decided_ts = ?, comment = ?, approved_at = ?, "
                "expires_at = ? WHERE id = ?", (APPROVED, actor, ts, comment, ts, expires, grant_id),
            )
            body.update(approved_at=ts, expires_at=expires)
        else:
            conn.execute("UPDATE grants SET phase = ?, decided_by = ?, decided_ts = ?, comment = ? WHERE id = ?",
                         (DENIED, actor, ts, comment, grant_id))
        record(conn, "grant.approved" if approve else "grant.denied", grant.agent, actor, body, ts)
        return _load(conn, grant_id)


def approve(store: Target, grant_id: str, *, actor: str, config: ProjectConfig, comment: str | None = None,
            at: datetime | None = None) -> GrantRecord:
    """Approve a pending grant: it is live from now for its TTL. The requester and the agent cannot approve."""
    return _decide(store, grant_id, actor=actor, config=config, comment=comment, approve=True, at=at)


def deny(store: Target, grant_id: str, *, actor: str, config: ProjectConfig, comment: str | None = None,
         at: datetime | None = None) -> GrantRecord:
    """Deny a pending grant."""
    return _decide(store, grant_id, actor=actor, config=config, comment=comment, approve=False, at=at)


def _revoke(conn: sqlite3.Connection, grant: GrantRecord, actor: str, reason: str, ts: str) -> None:
    conn.execute("UPDATE grants SET phase = ?, revoked_by = ?, revoked_ts = ?, revoke_reason = ? WHERE id = ?",
                 (REVOKED, actor, ts, reason, grant.id))
    record(conn, "grant.revoked", grant.agent, actor,
           {"id": grant.id, "reason": reason, "was": grant.phase, "expires_at": grant.expires_at}, ts)


def revoke(store: Target, grant_id: str, *, actor: str, reason: str, config: ProjectConfig,
           at: datetime | None = None) -> GrantRecord:
    """End a pending or live grant now; the grant approvers, an admin or the requester may."""
    reason = need_reason(reason, "a revocation")
    moment = at or now()
    with write(store) as conn:
        grant = _load(conn, grant_id)
        phase = grant.effective_phase(moment)
        if phase not in (PENDING, APPROVED):
            raise InputError(f"grant '{grant_id}' is {phase}; only Pending or Approved grants can be revoked")
        if actor != grant.requested_by:
            config.require_grant_approver(actor, f"revoke grant '{grant_id}'")
        _revoke(conn, grant, actor, reason, format_ts(moment))
        return _load(conn, grant_id)


def _record_expiry(conn: sqlite3.Connection, grant: GrantRecord, actor: str, ts: str) -> None:
    conn.execute("UPDATE grants SET phase = ?, expiry_recorded = 1 WHERE id = ?", (EXPIRED, grant.id))
    record(conn, "grant.expired", grant.agent, actor, {"id": grant.id, "expired_at": grant.expires_at}, ts)


def expire(store: Target, *, actor: str, at: datetime | None = None) -> list[GrantRecord]:
    """Record `grant.expired` for approved grants past their expiry (idempotent: each is recorded once)."""
    moment = at or now()
    ts = format_ts(moment)
    with write(store) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM grants WHERE phase = ? ORDER BY expires_at, id", (APPROVED,))
        sealed = sealed_agents(conn)
        due = [g for g in map(GrantRecord.from_row, rows.fetchall())
               if g.effective_phase(moment) == EXPIRED and g.agent not in sealed]
        for grant in due:
            _record_expiry(conn, grant, actor, ts)
        return [_load(conn, g.id) for g in due]


def end_all(conn: sqlite3.Connection, agent: str, *, actor: str, reason: str, at: datetime) -> dict[str, list[str]]:
    """For decommissioning: revoke every pending or live grant of an agent now and record lapsed ones as expired."""
    ts = format_ts(at)
    revoked: list[str] = []
    expired: list[str] = []
    rows = conn.execute(f"SELECT {_COLUMNS} FROM grants WHERE agent = ? AND phase IN (?, ?) ORDER BY id",
                        (agent, PENDING, APPROVED)).fetchall()
    for grant in map(GrantRecord.from_row, rows):
        if grant.effective_phase(at) == EXPIRED:
            _record_expiry(conn, grant, actor, ts)
            expired.append(grant.id)
        else:
            _revoke(conn, grant, actor, reason, ts)
            revoked.append(grant.id)
    return {"revoked": revoked, "expired": expired}


def open_grants(conn: sqlite3.Connection, agent: str, at: datetime) -> list[str]:
    """Ids of the agent's grants that are pending or live at `at` (the orphan check wants none)."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM grants WHERE agent = ? AND phase IN (?, ?) ORDER BY id",
                        (agent, PENDING, APPROVED)).fetchall()
    return [g.id for g in map(GrantRecord.from_row, rows) if g.effective_phase(at) in (PENDING, APPROVED)]
