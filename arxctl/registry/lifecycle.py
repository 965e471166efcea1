"""Agent lifecycle: suspension, reactivation, throttling and the status the engine reads.

Every function takes a `Store` (it opens its own write transaction) or a `sqlite3.Connection` already inside
one (so a caller can suspend in the same transaction as the record that caused it). Each change is a chain
record carrying the actor and the reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from arxctl.chain import store as chain
from arxctl.chain.records import Record
from arxctl.clock import now_ts
from arxctl.errors import InputError, NotFoundError
from arxctl.registry.config import ProjectConfig
from arxctl.store.sqlite import Store

ACTIVE, SUSPENDED, DECOMMISSIONED = "active", "suspended", "decommissioned"
SOURCES = frozenset({"manual", "drift", "operator"})
THROTTLE_EFFECT = "write, destructive and containment calls need approval; reads are unaffected"

Target = Store | sqlite3.Connection


@contextmanager
def write(target: Target) -> Iterator[sqlite3.Connection]:
    """The caller's open write transaction, or a new one on the store."""
    if isinstance(target, sqlite3.Connection):
        if not target.in_transaction:
            raise RuntimeError("lifecycle changes on a connection must run inside Store.transaction()")
        yield target
    else:
        with target.transaction() as conn:
            yield conn


def connection(target: Target) -> sqlite3.Connection:
    return target if isinstance(target, sqlite3.Connection) else target.conn


def need_reason(reason: str | None, what: str) -> str:
    """The stripped reason; an empty one is an input error (every step is recorded with a why)."""
    text = (reason or "").strip()
    if not text:
        raise InputError(f"{what} needs a --reason")
    return text


def record(conn: sqlite3.Connection, type_: str, agent: str | None, actor: str, body: dict[str, Any],
           ts: str) -> Record:
    """Append one lifecycle record inside the caller's transaction."""
    return chain.append(conn, chain.Entry(type=type_, agent=agent, actor=actor, body=body, ts=ts))


def agent_status(conn: sqlite3.Connection, name: str) -> str:
    """The agent's status from its registry head; NotFoundError when it was never registered."""
    row = conn.execute("SELECT status FROM heads WHERE kind = 'Agent' AND name = ?", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"no agent '{name}' (register it with `arxctl register`)")
    return str(row[0])


def require_live(conn: sqlite3.Connection, name: str, what: str) -> str:
    """The status of a registered, not decommissioned agent."""
    status = agent_status(conn, name)
    if status == DECOMMISSIONED:
        raise InputError(f"cannot {what} agent '{name}': it is decommissioned")
    return status


def _set_status(conn: sqlite3.Connection, name: str, status: str, ts: str) -> None:
    conn.execute("UPDATE heads SET status = ?, updated_ts = ? WHERE kind = 'Agent' AND name = ?", (status, ts, name))


def _ensure_row(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("INSERT INTO agent_lifecycle (agent) VALUES (?) ON CONFLICT (agent) DO NOTHING", (name,))


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; one of: {', '.join(sorted(SOURCES))}")
    return source


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """An agent's lifecycle state: status, throttle, and who changed them, when and why."""

    name: str
    status: str
    throttled: bool
    suspended_reason: str | None = None
    suspended_source: str | None = None
    suspended_at: str | None = None
    suspended_by: str | None = None
    throttle_reason: str | None = None
    throttle_source: str | None = None
    throttled_at: str | None = None
    throttled_by: str | None = None
    decommissioned_at: str | None = None
    decommissioned_by: str | None = None
    decommission_reason: str | None = None
    retention_class: str | None = None
    replaced_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_STATUS_COLUMNS = (
    "throttled, suspended_reason, suspended_source, suspended_ts, suspended_by, throttle_reason, throttle_source, "
    "throttled_ts, throttled_by, decommissioned_ts, decommissioned_by, decommission_reason, retention_class, "
    "replaced_by"
)


def status(store: Target, name: str) -> AgentStatus:
    """The lifecycle state of one registered agent."""
    conn = connection(store)
    current = agent_status(conn, name)
    row = conn.execute(f"SELECT {_STATUS_COLUMNS} FROM agent_lifecycle WHERE agent = ?", (name,)).fetchone()
    if row is None:
        return AgentStatus(name, current, False)
    return AgentStatus(name, current, bool(row[0]), *row[1:])


def throttled_agents(conn: sqlite3.Connection) -> set[str]:
    """Names of throttled agents (for the engine state)."""
    return {r[0] for r in conn.execute("SELECT agent FROM agent_lifecycle WHERE throttled = 1")}


def suspend(store: Target, name: str, *, actor: str, reason: str, source: str = "manual",
            ts: str | None = None) -> Record:
    """Suspend an agent: every later call is denied at the intercept (score 100, `agent-suspended`)."""
    reason = need_reason(reason, "a suspension")
    source = _check_source(source)
    ts = ts or now_ts()
    with write(store) as conn:
        current = require_live(conn, name, "suspend")
        if current == SUSPENDED:
            held = status(conn, name)
            raise InputError(f"agent '{name}' is already suspended (since {held.suspended_at} by "
                             f"{held.suspended_by}: {held.suspended_reason})")
        _set_status(conn, name, SUSPENDED, ts)
        _ensure_row(conn, name)
        conn.execute(
            "UPDATE agent_lifecycle SET suspended_reason = ?, suspended_source = ?, suspended_ts = ?, "
            "suspended_by = ? WHERE agent = ?", (reason, source, ts, actor, name),
        )
        return record(conn, "agent.suspended", name, actor, {"reason": reason, "source": source}, ts)


def reactivate(store: Target, name: str, *, actor: str, reason: str, config: ProjectConfig,
               ts: str | None = None) -> Record:
    """Lift a suspension; only an admin listed in the config may (there is no auto-resume)."""
    reason = need_reason(reason, "a reactivation")
    ts = ts or now_ts()
    with write(store) as conn:
        current = require_live(conn, name, "reactivate")
        if current != SUSPENDED:
            raise InputError(f"agent '{name}' is {current}, not suspended")
        config.require_admin(actor, f"reactivate agent '{name}'")
        held = status(conn, name)
        _set_status(conn, name, ACTIVE, ts)
        conn.execute(
            "UPDATE agent_lifecycle SET suspended_reason = NULL, suspended_source = NULL, suspended_ts = NULL, "
            "suspended_by = NULL WHERE agent = ?", (name,),
        )
        body = {"reason": reason, "suspended_at": held.suspended_at, "suspended_by": held.suspended_by,
                "suspended_reason": held.suspended_reason, "suspended_source": held.suspended_source}
        return record(conn, "agent.reactivated", name, actor, body, ts)


def throttle(store: Target, name: str, *, actor: str, reason: str, source: str = "manual",
             ts: str | None = None) -> Record:
    """Throttle an agent: the engine then requires approval for its write, destructive and containment calls."""
    reason = need_reason(reason, "a throttle")
    source = _check_source(source)
    ts = ts or now_ts()
    with write(store) as conn:
        require_live(conn, name, "throttle")
        if status(conn, name).throttled:
            raise InputError(f"agent '{name}' is already throttled")
        _ensure_row(conn, name)
        conn.execute(
            "UPDATE agent_lifecycle SET throttled = 1, throttle_reason = ?, throttle_source = ?, throttled_ts = ?, "
            "throttled_by = ? WHERE agent = ?", (reason, source, ts, actor, name),
        )
        body = {"reason": reason, "source": source, "effect": THROTTLE_EFFECT}
        return record(conn, "agent.throttled", name, actor, body, ts)


def unthrottle(store: Target, name: str, *, actor: str, reason: str, ts: str | None = None) -> Record:
    """Lift a throttle."""
    reason = need_reason(reason, "lifting a throttle")
    ts = ts or now_ts()
    with write(store) as conn:
        require_live(conn, name, "unthrottle")
        held = status(conn, name)
        if not held.throttled:
            raise InputError(f"agent '{name}' is not throttled")
        conn.execute(
            "UPDATE agent_lifecycle SET throttled = 0, throttle_reason = NULL, throttle_source = NULL, "
            "throttled_ts = NULL, throttled_by = NULL WHERE agent = ?", (name,),
        )
        body = {"reason": reason, "throttled_at": held.throttled_at, "throttled_by": held.throttled_by,
                "throttle_reason": held.throttle_reason}
        return record(conn, "agent.unthrottled", name, actor, body, ts)
