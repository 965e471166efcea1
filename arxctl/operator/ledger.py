"""The operator's state on its PersistentVolume: one embedded store (registry + audit chain) per namespace.

Layout: `<state>/namespaces/<namespace>/state.db` (SQLite, WAL) with its signing keys under `keys/`. Every
reconcile action is a chain record there; `operator_marks` remembers, in the same transaction, what was recorded
per object, so a restart never records one change twice.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arxctl.chain import store as chain
from arxctl.chain.records import Record as ChainRecord
from arxctl.chain.seal import seal
from arxctl.clock import now, now_ts
from arxctl.errors import InputError
from arxctl.operator.reconcile import REACTIVATE, SUSPEND, Hold, Record, Registered, RegistryView
from arxctl.registry import handles, lifecycle
from arxctl.registry import resources as registry
from arxctl.registry.config import ProjectConfig
from arxctl.registry.decommission import decommission
from arxctl.registry.lifecycle import DECOMMISSIONED, throttled_agents
from arxctl.resources.validation import Resource
from arxctl.resources.yamlio import Document
from arxctl.store.sqlite import Store

NAMESPACES_DIR = "namespaces"


def _body(line: str) -> dict[str, Any]:
    return ChainRecord.from_line(line).body


@dataclass(frozen=True, slots=True)
class Sealed:
    """What the store side of a decommission did."""

    handles: tuple[str, ...]
    record_seq: int | None
    seal_seq: int | None
    already: bool


@dataclass(frozen=True, slots=True)
class History:
    """What the chain says an agent's decommission did: when, which Secrets and handles, and its record's seq."""

    at: str | None = None
    secrets: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    record_seq: int | None = None


class Ledger:
    """The per-namespace stores, each used under its own lock (one connection per store, shared by threads)."""

    def __init__(self, root: Path, actor: str) -> None:
        self.root = root
        self.actor = actor
        self._stores: dict[str, Store] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def directory(self, namespace: str) -> Path:
        return self.root / NAMESPACES_DIR / namespace

    def lock(self, namespace: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(namespace, threading.RLock())

    def store(self, namespace: str) -> Store:
        """The namespace's store, opened (and migrated) on first use; call with `lock(namespace)` held."""
        with self._guard:
            found = self._stores.get(namespace)
            if found is None:
                found = Store(self.directory(namespace))
                self._stores[namespace] = found
            return found

    def namespaces(self) -> list[str]:
        """Every namespace with a store: those opened now and those found on the volume."""
        base = self.root / NAMESPACES_DIR
        on_disk = {p.name for p in base.iterdir() if (p / "state.db").exists()} if base.is_dir() else set()
        with self._guard:
            return sorted(on_disk | set(self._stores))

    def close(self) -> None:
        with self._guard:
            for found in self._stores.values():
                found.close()
            self._stores.clear()

    def view(self, namespace: str) -> RegistryView:
        """Registry heads (with status and throttle), revoked handles still unexpired, and the recorded marks."""
        store = self.store(namespace)
        throttled = throttled_agents(store.conn)
        heads: dict[tuple[str, str], Registered] = {}
        for kind in ("Agent", "Policy", "ConnectorCatalog"):
            for head, version in registry.current(store, kind):
                suspension = throttle = None
                if kind == "Agent" and (head.status == lifecycle.SUSPENDED or head.name in throttled):
                    held = lifecycle.status(store.conn, head.name)
                    if held.status == lifecycle.SUSPENDED:
                        suspension = {"by": held.suspended_by, "at": held.suspended_at,
                                      "reason": held.suspended_reason, "source": held.suspended_source}
                    if held.throttled:
                        throttle = {"by": held.throttled_by, "at": held.throttled_at, "reason": held.throttle_reason,
                                    "source": held.throttle_source}
                heads[(kind, head.name)] = Registered(version.version, version.digest, head.status, version.doc,
                                                      head.name in throttled, suspension, throttle)
        revoked = tuple(sorted(h.id for h in handles.revocation_list(store)))
        marks = dict(store.conn.execute("SELECT mark, value FROM operator_marks").fetchall())
        return RegistryView(heads, revoked, marks)

    def register(self, namespace: str, docs: Sequence[dict[str, Any]]) -> list[registry.Stored]:
        """Store new versions of valid resources (one transaction; a record per new version)."""
        if not docs:
            return []
        resources = [Resource(d["kind"], d["metadata"]["name"], d,
                              Document(f"{namespace}/{d['kind']}/{d['metadata']['name']}", 0, d, None)) for d in docs]
        return registry.register(self.store(namespace), resources, actor=self.actor,
                                 reason=f"reconciled from namespace {namespace}")

    def record(self, namespace: str, records: Iterable[Record]) -> list[int]:
        """Append records and their marks in one transaction; a sealed agent's records go outside its record."""
        records = list(records)
        if not records:
            return []
        store = self.store(namespace)
        ts = now_ts()
        with store.transaction() as conn:
            sealed = chain.sealed_agents(conn)
            appended = chain.append_many(conn, [
                chain.Entry(type=r.type, agent=None if r.agent in sealed else r.agent, actor=self.actor,
                            body={**r.body, "namespace": namespace}, ts=ts) for r in records])
            conn.executemany(
                "INSERT INTO operator_marks (mark, value, seq, ts) VALUES (?,?,?,?) "
                "ON CONFLICT (mark) DO UPDATE SET value = excluded.value, seq = excluded.seq, ts = excluded.ts",
                [(r.mark, r.mark_value, a.seq, ts) for r, a in zip(records, appended, strict=True)])
        return [a.seq for a in appended]

    def hold(self, namespace: str, holds: Iterable[Hold]) -> list[tuple[Hold, str]]:
        """Apply holds and reactivations through the lifecycle (each with its record and marks in one transaction);
        returns what each one did."""
        store = self.store(namespace)
        out = []
        for hold in holds:
            ts = now_ts()
            with store.transaction() as conn:
                outcome, seq = _apply_hold(conn, hold, ts)
                conn.executemany(
                    "INSERT INTO operator_marks (mark, value, seq, ts) VALUES (?,?,?,?) "
                    "ON CONFLICT (mark) DO UPDATE SET value = excluded.value, seq = excluded.seq, ts = excluded.ts",
                    [(mark, value, seq, ts) for mark, value in hold.marks])
            out.append((hold, outcome))
        return out

    def decommission_history(self, namespace: str, name: str) -> History:
        """Read back from the chain what decommissioning the agent did (so a rerun reports the first run's work)."""
        conn = self.store(namespace).conn
        secrets: set[str] = set()
        for (line,) in conn.execute("SELECT line FROM chain WHERE agent = ? AND type = 'agent.credentials_deleted' "
                                    "ORDER BY seq", (name,)):
            secrets.update(_body(line).get("secrets") or [])
        row = conn.execute("SELECT seq, ts, line FROM chain WHERE agent = ? AND type = 'agent.decommissioned' "
                           "ORDER BY seq DESC LIMIT 1", (name,)).fetchone()
        if row is None:
            return History(secrets=tuple(sorted(secrets)))
        revoked = _body(row[2]).get("revoked") or {}
        return History(row[1], tuple(sorted(secrets)), tuple(sorted(revoked.get("handles") or [])), row[0])

    def seal_agent(self, namespace: str, name: str, *, reason: str, retention_class: str) -> Sealed:
        """Decommission the agent in the store (handles revoked, record sealed), once; an agent that was never
        registered gets its decommission record and seal alone."""
        store = self.store(namespace)
        sealed = chain.sealed_agents(store.conn)
        head = registry.head(store, "Agent", name)
        if name in sealed:
            return Sealed((), None, sealed[name][0], True)
        config = ProjectConfig()
        table = config.retention_classes(store.directory)
        if retention_class not in table:
            raise InputError(f"unknown retention class {retention_class!r} for agent '{name}'; known: "
                             f"{', '.join(sorted(table))}")
        if head is not None and head.status != DECOMMISSIONED:
            done = decommission(store, name, actor=self.actor, reason=reason, retention_class=retention_class,
                                config=config, at=now())
            return Sealed(tuple(done.revoked["handles"]), done.record_seq, done.seal_seq, False)
        ts = now_ts()
        with store.transaction() as conn:
            written = chain.append(conn, chain.Entry(
                type="agent.decommissioned", agent=name, actor=self.actor, ts=ts,
                body={"reason": reason, "retention_class": retention_class, "registered": head is not None,
                      "namespace": namespace}))
            done_seal = seal(conn, name, retention_class, self.actor, reason, table, ts)
        return Sealed((), written.seq, done_seal.seq, False)


def _apply_hold(conn: sqlite3.Connection, hold: Hold, ts: str) -> tuple[str, int]:
    """One hold or reactivation, inside the caller's transaction: (what it did, the seq of its record).

    A reactivation's writer was authorised by the API server (RBAC on agents/status and the `arx-agent-status`
    admission policy let only members of arx:agent-admins write one, as themselves), so it is the admin here.
    """
    held = lifecycle.status(conn, hold.agent)
    body = {"status": hold.detail}
    if held.status == DECOMMISSIONED:
        outcome = f"ignored: agent '{hold.agent}' is decommissioned"
    elif hold.action == REACTIVATE:
        if not hold.actor or not hold.reason:
            outcome = "reactivation refused: status.reactivation needs `by` and `reason`"
            return outcome, chain.append(conn, chain.Entry("agent.reactivation_refused", hold.agent, hold.actor or
                                                           "unknown", {**body, "outcome": outcome}, ts)).seq
        admin = ProjectConfig(admins=frozenset({hold.actor}))
        seqs = []
        if held.status == lifecycle.SUSPENDED:
            seqs.append(lifecycle.reactivate(conn, hold.agent, actor=hold.actor, reason=hold.reason, config=admin,
                                             ts=ts).seq)
        if held.throttled:
            seqs.append(lifecycle.unthrottle(conn, hold.agent, actor=hold.actor, reason=hold.reason, ts=ts).seq)
        if seqs:
            lifted = " and ".join(w for w, on in (("suspension", held.status == lifecycle.SUSPENDED),
                                                 ("throttle", held.throttled)) if on)
            return f"reactivated: the {lifted} {'are' if len(seqs) > 1 else 'is'} lifted", seqs[-1]
        outcome = "nothing to lift: the agent is active and not throttled"
    elif hold.action == SUSPEND and held.status == lifecycle.ACTIVE:
        return "suspended: every call is denied", lifecycle.suspend(
            conn, hold.agent, actor=hold.actor, reason=hold.reason, source=_source(hold), ts=ts).seq
    elif hold.action != SUSPEND and held.status == lifecycle.ACTIVE and not held.throttled:
        return ("throttled: write, destructive and containment calls need approval", lifecycle.throttle(
            conn, hold.agent, actor=hold.actor, reason=hold.reason, source=_source(hold), ts=ts).seq)
    else:
        outcome = f"already {'throttled' if held.status == lifecycle.ACTIVE else held.status}"
    kind = "agent.reactivation_skipped" if hold.action == REACTIVATE else "agent.hold_reported"
    subject = None if held.status == DECOMMISSIONED else hold.agent
    return outcome, chain.append(conn, chain.Entry(kind, subject, hold.actor or "unknown",
                                                   {**body, "agent": hold.agent, "outcome": outcome}, ts)).seq


def _source(hold: Hold) -> str:
    """The lifecycle source: `drift` for a gateway replica's live-drift hold, else `manual`."""
    return "drift" if hold.actor.startswith("gateway/") else "manual"
