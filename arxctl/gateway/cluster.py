"""Cluster mode: a bundle-mode replica writes its live-drift holds and its per-agent health into the Agent's status
through the Kubernetes API, so that the operator puts the hold in the bundle and every replica denies.

    status.suspension          {suspended, throttled, severity, reportId, reason, source: gateway/<replica>, at}
    status.gateway.<replica>   {lastSeen, callsPerMinute, denyRate, calls, denied, undeclaredAttempts,
                                downstreamErrors, drift: {severity, response, applied}, reportedAt}

Both are merge patches on the status subresource, read and written under the resourceVersion that was read and
retried on 409 until a deadline. A hold that cannot be written is retried with a backoff, and the replica denies
the agent itself meanwhile. Health is written per agent only when it changed (or as a heartbeat), at most
`MAX_WRITES` agents per report; the reports of replicas gone for `STALE_S` are removed on the way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arxctl.clock import format_ts, now, parse_ts
from arxctl.errors import ArxError, NotFoundError
from arxctl.gateway.config import ClusterSettings
from arxctl.gateway.health import UNREGISTERED
from arxctl.operator.k8s import KINDS, Kube, modify
from arxctl.operator.reconcile import GATEWAY, SUSPENSION

REQUEST_TIMEOUT_S = 5.0
CONFLICT_DEADLINE_S = 10.0
RETRY_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
HEARTBEAT_REPORTS = 10
STALE_S = 3600.0
MAX_WRITES = 50

Obj = dict[str, Any]


def hold_for(found: Any, replica: str, at: str) -> Obj:
    """The `status.suspension` a replica writes for a drifted agent (`found`: an `AgentDrift`); the reason reads as
    `drift.apply` records it with the embedded state."""
    return {"suspended": found.response == "suspend", "throttled": found.response == "throttle",
            "severity": found.severity, "reportId": found.report_id,
            "reason": f"drift {found.severity} ({found.report_id}): {found.summary()}",
            "source": f"gateway/{replica}", "at": at}


def hold_patch(current: Mapping[str, Any], hold: Mapping[str, Any]) -> Obj | None:
    """The merge patch that writes `hold`; None when it is there already, or when it is a throttle and the status
    holds a suspension (a hold is never weakened before the operator has seen it)."""
    existing = (current.get("status") or {}).get(SUSPENSION)
    if existing == hold:
        return None
    if isinstance(existing, dict) and existing.get("suspended") is True and hold.get("suspended") is not True:
        return None
    return {"status": {SUSPENSION: dict(hold)}}


def health_entry(health: Mapping[str, Any], at: str) -> Obj:
    """One agent's health on this replica as `status.gateway.<replica>` shows it (from `AgentHealth.to_dict`).
    No value is null, since a null in a merge patch deletes the key: no drift reads `none`."""
    entry = {"lastSeen": health["last_seen"], "callsPerMinute": health["calls_per_minute"],
             "denyRate": health["deny_rate"], "calls": health["calls"], "denied": health["denied"],
             "undeclaredAttempts": health["undeclared_attempts"], "downstreamErrors": health["downstream_errors"],
             "drift": {k: v or "none" for k, v in health["drift"].items()}, "reportedAt": at}
    return {k: v for k, v in entry.items() if v is not None}


def health_patch(current: Mapping[str, Any], replica: str, entry: Mapping[str, Any], at: datetime,
                 stale_s: float = STALE_S) -> Obj:
    """The merge patch that writes this replica's entry and removes the entries of replicas silent for `stale_s`."""
    reports = (current.get("status") or {}).get(GATEWAY)
    gone: Obj = {}
    for name, report in (reports.items() if isinstance(reports, dict) else ()):
        if name == replica:
            continue
        try:
            silent = (at - parse_ts(str(report["reportedAt"]))).total_seconds() > stale_s
        except (TypeError, KeyError, ValueError):
            silent = True
        if silent:
            gone[name] = None
    return {"status": {GATEWAY: {replica: dict(entry), **gone}}}


def _content(entry: Mapping[str, Any]) -> Obj:
    return {k: v for k, v in entry.items() if k != "reportedAt"}


class HealthGate:
    """Which agents' health is worth a write: changed since its last write, or unwritten for a heartbeat period;
    the longest unwritten first, at most `limit` per report."""

    def __init__(self, heartbeat_s: float, limit: int = MAX_WRITES) -> None:
        self.heartbeat_s = heartbeat_s
        self.limit = limit
        self._written: dict[tuple[str, str], tuple[Obj, float]] = {}

    def due(self, namespace: str, entries: Mapping[str, Mapping[str, Any]], at: float) -> list[str]:
        wanted = []
        for agent, entry in entries.items():
            last = self._written.get((namespace, agent))
            if last is None or last[0] != _content(entry) or at - last[1] >= self.heartbeat_s:
                wanted.append((last[1] if last is not None else float("-inf"), agent))
        return [agent for _, agent in sorted(wanted)[:self.limit]]

    def written(self, namespace: str, agent: str, entry: Mapping[str, Any], at: float) -> None:
        self._written[(namespace, agent)] = (_content(entry), at)


@dataclass(slots=True)
class _Pending:
    namespace: str
    agent: str
    hold: Obj
    failures: int
    next_try: float


@dataclass(slots=True)
class WriteStats:
    """Status writes since start, for /metrics."""

    holds: int = 0
    health: int = 0
    conflicts: int = 0
    errors: int = 0


class StatusWriter:
    """Writes one replica's holds and health into Agent statuses; every request runs on a worker thread of its own
    kind (holds never queue behind health reports) and is bounded by a timeout and the conflict deadline."""

    def __init__(self, kube: Kube, replica: str, every_s: float, *, deadline_s: float = CONFLICT_DEADLINE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.replica = replica
        self.every_s = every_s
        self.deadline_s = deadline_s
        self.clock = clock
        self.gate = HealthGate(every_s * HEARTBEAT_REPORTS)
        self.stats = WriteStats()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._holds = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arx-gateway-holds")
        self._health = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arx-gateway-health")

    @classmethod
    def connect(cls, settings: ClusterSettings, replica: str) -> StatusWriter:
        """From the config's `cluster` section: its kubeconfig, else the pod's ServiceAccount, else $KUBECONFIG."""
        try:
            import kubernetes  # noqa: F401
        except ImportError as exc:
            from arxctl.errors import InputError

            raise InputError("writing Agent statuses needs the Kubernetes client: pip install 'arxctl[k8s]'") from exc
        kube = Kube.connect(settings.kubeconfig, settings.context, timeout_s=REQUEST_TIMEOUT_S)
        return cls(kube, replica, settings.status_every_s)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._holds.shutdown(wait=True, cancel_futures=True)
        self._health.shutdown(wait=True, cancel_futures=True)

    def _modify(self, path: str, compute: Callable[[Obj], Obj | None]) -> Obj | None:
        """The object after the write (None: nothing to write); conflicts counted."""
        result, conflicts = modify(self.kube, path, compute, deadline_s=self.deadline_s)
        self.stats.conflicts += conflicts
        return result

    def write_hold(self, namespace: str, agent: str, hold: Obj) -> str:
        """Write a hold now (blocking); what happened, in words. A failure is kept and retried by `retry`."""
        path = KINDS["Agent"].path(namespace, agent, "status")
        found: list[Any] = [None]

        def compute(current: Obj) -> Obj | None:
            found[0] = (current.get("status") or {}).get(SUSPENSION)
            return hold_patch(current, hold)

        try:
            self._modify(path, compute)
        except NotFoundError:
            self._pending.pop((namespace, agent), None)
            return f"not written: there is no Agent {namespace}/{agent}"
        except ArxError as exc:
            self.stats.errors += 1
            failed = self._pending.get((namespace, agent))
            failures = failed.failures + 1 if failed is not None else 1
            delay = RETRY_BACKOFF_S[min(failures - 1, len(RETRY_BACKOFF_S) - 1)]
            self._pending[(namespace, agent)] = _Pending(namespace, agent, hold, failures, self.clock() + delay)
            return f"the Agent status write failed (retry in {delay:g}s): {exc}"
        self._pending.pop((namespace, agent), None)
        if found[0] == hold:
            return "the Agent's status.suspension already holds it"
        if hold_patch({"status": {SUSPENSION: found[0]}}, hold) is None:
            return f"not written: the Agent's status.suspension holds a suspension ({found[0].get('source')})"
        self.stats.holds += 1
        return "written to the Agent's status.suspension"

    def retry(self) -> list[str]:
        """Write the failed holds whose backoff has passed (blocking); what happened to each."""
        moment = self.clock()
        out = []
        for item in [p for p in self._pending.values() if p.next_try <= moment]:
            outcome = self.write_hold(item.namespace, item.agent, item.hold)
            out.append(f"{item.namespace}/{item.agent}: {outcome}")
        return out

    def write_health(self, namespace: str, report: Mapping[str, Any], agents: frozenset[str]) -> int:
        """Write the changed entries of a `Health.report()` for the agents in the bundle (blocking); how many."""
        at = now()
        stamp = format_ts(at)
        entries = {name: health_entry(h, stamp) for name, h in report.get("agents", {}).items()
                   if name != UNREGISTERED and name in agents}
        moment = self.clock()
        count = 0
        for agent in self.gate.due(namespace, entries, moment):
            entry = entries[agent]
            try:
                self._modify(KINDS["Agent"].path(namespace, agent, "status"),
                             lambda current, entry=entry: health_patch(current, self.replica, entry, at))
            except NotFoundError:
                continue
            except ArxError:
                self.stats.errors += 1
                continue
            self.gate.written(namespace, agent, entry, moment)
            self.stats.health += 1
            count += 1
        return count

    async def hold(self, namespace: str, agent: str, hold: Obj) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._holds, self.write_hold, namespace, agent,
                                                                hold)

    async def retry_holds(self) -> list[str]:
        if not self._pending:
            return []
        return await asyncio.get_running_loop().run_in_executor(self._holds, self.retry)

    async def health(self, namespace: str, report: Mapping[str, Any], agents: frozenset[str]) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._health, self.write_health, namespace, report,
                                                                agents)
