"""The operator's effects: observe a namespace, register what is valid, apply the reconcile plan, decommission
agents, expire grants on time and publish checkpoints. Kopf handlers only call `request` and `decommission`."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from arxctl import API_VERSION
from arxctl.canonical import digest
from arxctl.clock import format_ts, now
from arxctl.errors import NotFoundError
from arxctl.operator import reconcile
from arxctl.operator.k8s import KINDS, Kube, modify
from arxctl.operator.ledger import Ledger
from arxctl.operator.reconcile import AGENT_LABEL, Observed, Plan, Record, StatusChange
from arxctl.policy.bundle import CONFIGMAP_NAME

FIELD_MANAGER = "arx-operator"
RETRY_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
EXPIRY_SLACK_S = 0.005

log = logging.getLogger("arxctl.operator")


@dataclass(frozen=True, slots=True)
class Settings:
    """How the operator runs: where its store lives, who it records as, and its timers."""

    state: Path
    actor: str = "arx-operator"
    retention_class: str = "standard-1yr"
    resync_s: float = 300.0
    witness: str | None = None
    publish_every_s: float = 300.0
    kms_key_id: str | None = None


@dataclass(slots=True)
class _Schedule:
    dirty: set[str] = field(default_factory=set)
    due: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)


class Controller:
    """Reconciles namespaces on request, at grant expiry deadlines and on a resync period, in one worker thread."""

    def __init__(self, kube: Kube, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.settings = settings
        self.ledger = Ledger(settings.state, settings.actor)
        self._clock = clock
        self._cond = threading.Condition()
        self._schedule = _Schedule()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._instance = socket.gethostname()
        self._seen: dict[tuple[str, str, str], str] = {}
        self.reconciled: dict[str, str] = {}

    def start(self) -> None:
        """Start the reconcile worker, and the checkpoint publisher when a witness is set."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._work, name="arx-reconcile", daemon=True)]
        if self.settings.witness:
            self._threads.append(threading.Thread(target=self._publish_loop, name="arx-publish", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, deadline_s: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=deadline_s)
        self.ledger.close()

    def request(self, namespace: str) -> None:
        """Ask for a reconcile of the namespace (coalesced: many requests, one reconcile)."""
        with self._cond:
            self._schedule.dirty.add(namespace)
            self._schedule.known.add(namespace)
            self._cond.notify_all()

    def changed(self, namespace: str, kind: str, obj: dict[str, Any] | None, deleted: bool) -> None:
        """A watch event: ask for a reconcile unless all that changed is what the operator never reads (the
        resourceVersion, managed fields, gateways' health reports), so health writes cause no reconciles."""
        if obj is None:
            self.request(namespace)
            return
        ident = (namespace, kind, reconcile.name_of(obj))
        key = reconcile.trigger_key(obj)
        with self._cond:
            if deleted:
                self._seen.pop(ident, None)
            elif self._seen.get(ident) == key:
                return
            else:
                self._seen[ident] = key
        self.request(namespace)

    def _at(self, namespace: str, delay_s: float) -> None:
        with self._cond:
            when = self._clock() + max(delay_s, 0.0)
            self._schedule.due[namespace] = min(self._schedule.due.get(namespace, when), when)
            self._cond.notify_all()

    def _next_batch(self, next_resync: float) -> tuple[set[str], float]:
        with self._cond:
            while not self._stop.is_set():
                moment = self._clock()
                ready = set(self._schedule.dirty)
                ready |= {ns for ns, when in self._schedule.due.items() if when <= moment}
                if moment >= next_resync:
                    ready |= self._schedule.known | set(self.ledger.namespaces())
                    next_resync = moment + self.settings.resync_s
                if ready:
                    self._schedule.dirty -= ready
                    for ns in ready:
                        self._schedule.due.pop(ns, None)
                    return ready, next_resync
                wake = min([*self._schedule.due.values(), next_resync]) - moment
                self._cond.wait(timeout=max(wake, 0.0))
            return set(), next_resync

    def _work(self) -> None:
        next_resync = self._clock() + self.settings.resync_s
        while not self._stop.is_set():
            ready, next_resync = self._next_batch(next_resync)
            for namespace in sorted(ready):
                try:
                    plan = self.refresh(namespace)
                except Exception as exc:
                    failures = self._schedule.failures.get(namespace, 0)
                    self._schedule.failures[namespace] = failures + 1
                    delay = RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S) - 1)]
                    log.error("reconcile of namespace %s failed (retry in %gs): %s", namespace, delay, exc)
                    self._at(namespace, delay)
                    continue
                self._schedule.failures.pop(namespace, None)
                if plan.next_deadline is not None:
                    self._at(namespace, (plan.next_deadline - now()).total_seconds() + EXPIRY_SLACK_S)

    def observe(self, namespace: str) -> Observed:
        """The namespace's Agents, Policies, ConnectorCatalogs, Grants and bundle ConfigMap, as the server has them."""
        def items(kind: str) -> list[dict[str, Any]]:
            return self.kube.list(KINDS[kind].path(namespace))

        return Observed(namespace, items("Agent"), items("Policy"), items("ConnectorCatalog"), items("Grant"),
                        self.kube.get(KINDS["ConfigMap"].path(namespace, CONFIGMAP_NAME)))

    def refresh(self, namespace: str, *, decommission: bool = True) -> Plan:
        """One level-based reconcile of a namespace; idempotent, so running it again after a crash converges."""
        with self.ledger.lock(namespace):
            observed = self.observe(namespace)
            checked = reconcile.check(observed)
            view = self.ledger.view(namespace)
            new = reconcile.to_register(observed, checked, view)
            if new:
                self.ledger.register(namespace, new)
                view = self.ledger.view(namespace)
            holds = self.ledger.hold(namespace, reconcile.lifecycle_changes(observed, view))
            if holds:
                view = self.ledger.view(namespace)
            at = now()
            plan = reconcile.plan_namespace(observed, checked, view, at)
            if plan.configmap is not None:
                self.kube.apply(plan.configmap, field_manager=FIELD_MANAGER, force=True)
            for hold, outcome in holds:
                log.info("agent %s/%s: %s by %s: %s", namespace, hold.agent, hold.action, hold.actor, outcome)
                self.post_event(namespace, reconcile.hold_event(hold, outcome))
            for event in plan.events:
                self.post_event(namespace, event)
            self.ledger.record(namespace, [r for r in plan.records if not _is_grant(r)])
            written: dict[tuple[str, str], dict[str, Any]] = {}
            for change in plan.statuses:
                result = self.write_status(namespace, change, at)
                if result is not None:
                    written[(change.kind, change.name)] = result
            self.ledger.record(namespace, [r for r in plan.records if _is_grant(r) and _still_true(r, plan, written)])
            self.reconciled[namespace] = plan.bundle["revision"]
            if decommission:
                for name in plan.decommission:
                    self.decommission(namespace, name, reason="spec.lifecycle set to decommissioned")
            log.info("namespace %s reconciled: bundle %s", namespace, plan.bundle["revision"])
            return plan

    def write_status(self, namespace: str, change: StatusChange, at: datetime) -> dict[str, Any] | None:
        """Merge the status, guarded by resourceVersion and retried on conflict; None when the object is gone."""
        path = KINDS[change.kind].path(namespace, change.name, "status")
        events: list[reconcile.Event] = []

        def compute(current: dict[str, Any]) -> dict[str, Any] | None:
            events.clear()
            if change.kind == "Grant":
                patch, event = reconcile.grant_change(current, change.problems, change.agent, at)
                if event is not None:
                    events.append(event)
            else:
                status = current.get("status") or {}
                patch = dict(change.status) if reconcile.changed(status, change.status) else {}
                for key, handled in change.clear:
                    if key in status and digest(status[key]) == handled:
                        patch[key] = None
            return {"status": patch} if patch else None

        try:
            result, conflicts = modify(self.kube, path, compute)
        except NotFoundError:
            return None
        if conflicts:
            log.info("%s %s/%s: status written after %d conflict(s)", change.kind, namespace, change.name, conflicts)
        for event in events:
            self.post_event(namespace, event)
        return result

    def post_event(self, namespace: str, event: reconcile.Event) -> None:
        """A core/v1 Event about an arx.dev object (best effort: a lost Event never blocks a reconcile)."""
        ts = format_ts(now())
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{event.name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": event.kind, "name": event.name,
                               "namespace": namespace, "uid": event.uid},
            "reason": event.reason, "message": event.message[:1024], "type": event.type,
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self._instance,
        }
        try:
            self.kube.create(KINDS["Event"].path(namespace), body)
        except Exception as exc:
            log.warning("cannot post event %s for %s %s/%s: %s", event.reason, event.kind, namespace, event.name, exc)

    def decommission(self, namespace: str, name: str, *, reason: str) -> dict[str, Any]:
        """Deny the agent everywhere, delete its labelled Secrets, revoke its grants and handles, seal its record,
        and show what was done in its status. Safe to run again: each step is idempotent."""
        with self.ledger.lock(namespace):
            agent_path = KINDS["Agent"].path(namespace, name)
            agent = self.kube.get(agent_path) or {}
            self.refresh(namespace, decommission=False)
            secrets_path = KINDS["Secret"].path(namespace)
            deleted = sorted(reconcile.name_of(s) for s in self.kube.list(secrets_path,
                                                                         label_selector=f"{AGENT_LABEL}={name}")
                             if self.kube.delete(KINDS["Secret"].path(namespace, reconcile.name_of(s))))
            if deleted:
                self.ledger.record(namespace, [Record("agent.credentials_deleted", name,
                                                      {"agent": name, "secrets": deleted, "reason": reason},
                                                      f"Agent/{name}/secrets", digest(deleted))])
            retention = reconcile.retention_class(agent, self.settings.retention_class)
            sealed = self.ledger.seal_agent(namespace, name, reason=reason, retention_class=retention)
            grants = sorted(reconcile.name_of(g) for g in self.kube.list(KINDS["Grant"].path(namespace))
                            if g["spec"].get("agent") == name
                            and (g.get("status") or {}).get("phase") == reconcile.REVOKED)
            history = self.ledger.decommission_history(namespace, name)
            summary = reconcile.decommission_summary(
                at=history.at or format_ts(now()), reason=reason, retention_class=retention,
                secrets=history.secrets, grants=grants, handles=history.handles,
                record_seq=history.record_seq or sealed.record_seq, seal_seq=sealed.seal_seq)
            if agent:
                def compute(current: dict[str, Any]) -> dict[str, Any] | None:
                    done = (current.get("status") or {}).get("decommission")
                    return None if done == summary else {"status": {"decommission": summary}}

                with contextlib.suppress(NotFoundError):
                    modify(self.kube, KINDS["Agent"].path(namespace, name, "status"), compute)
            self.refresh(namespace, decommission=False)
            log.info("agent %s/%s decommissioned: %s", namespace, name, summary)
            return summary

    def publish(self) -> list[dict[str, Any]]:
        """Sign and publish a checkpoint of every namespace's chain to the witness."""
        from arxctl.chain import keys
        from arxctl.chain.checkpoints import publish
        from arxctl.chain.witness import open_witness
        from arxctl.errors import StateError

        assert self.settings.witness is not None
        witness = open_witness(self.settings.witness)
        out = []
        for namespace in self.ledger.namespaces():
            with self.ledger.lock(namespace):
                store = self.ledger.store(namespace)
                try:
                    signer = keys.signer(store.conn, store.directory, kms_key_id=self.settings.kms_key_id)
                except StateError:
                    with store.transaction() as conn:
                        keys.generate(conn, store.directory)
                    signer = keys.signer(store.conn, store.directory)
                done = publish(store, witness, signer)
            out.append({"namespace": namespace, **done.to_dict()})
        return out

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            try:
                for done in self.publish():
                    checkpoint = done["checkpoint"]
                    log.info("namespace %s: checkpoint n=%s size=%s published to %s", done["namespace"],
                             checkpoint["n"], checkpoint["size"], self.settings.witness)
            except Exception as exc:
                log.error("publishing checkpoints to %s failed: %s", self.settings.witness, exc)
            self._stop.wait(self.settings.publish_every_s)


def _is_grant(record: Record) -> bool:
    return record.mark.startswith("Grant/")


def _still_true(record: Record, plan: Plan, written: dict[tuple[str, str], dict[str, Any]]) -> bool:
    """A grant record stays only when the status written has the phase it records (a conflicting write by someone
    else means the next reconcile records what really happened)."""
    name = record.mark.split("/")[1]
    planned = any(c.kind == "Grant" and c.name == name for c in plan.statuses)
    if not planned:
        return True
    result = written.get(("Grant", name))
    return result is not None and (result.get("status") or {}).get("phase") == record.body["phase"]
