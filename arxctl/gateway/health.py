"""Per-agent health counted online (last seen, calls per minute, deny rate, undeclared attempts, drift) and the
manifest's drift rules applied to live traffic.

Counters live in memory per replica and are exposed at `/metrics` in the Prometheus text format; a copy is
written to `<replica dir>/health.json` for `arxctl gateway health`. Live drift feeds every decided call to the
same `arxctl.registry.drift.Analyzer` that `arxctl drift check` uses, so the severities are the ones documented
there; the response (alert, throttle, suspend) follows each manifest's drift map.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arxctl.canonical import digest
from arxctl.clock import format_ts
from arxctl.policy.compiler import APPROVAL_REQUIRED, DENY
from arxctl.policy.engine import Call, Decision
from arxctl.registry import drift

MINUTE_S = 60.0
UNREGISTERED = "(unregistered)"
UNDECLARED = "not-in-manifest"
SEVERITY_LEVEL = {"low": 1, "medium": 2, "high": 3, "critical": 4}


@dataclass(slots=True)
class AgentHealth:
    """One agent's counters on this replica."""

    calls: int = 0
    denied: int = 0
    approvals: int = 0
    undeclared: int = 0
    downstream_errors: int = 0
    last_seen: float = 0.0
    recent: deque[tuple[float, bool]] = field(default_factory=deque)
    drift_severity: str | None = None
    drift_response: str | None = None
    drift_applied: str | None = None

    def trim(self, at: float) -> None:
        horizon = at - MINUTE_S
        while self.recent and self.recent[0][0] <= horizon:
            self.recent.popleft()

    def per_minute(self, at: float) -> int:
        self.trim(at)
        return len(self.recent)

    def deny_ratio(self, at: float) -> float:
        """Denied calls over all calls in the last minute (0 without calls)."""
        self.trim(at)
        if not self.recent:
            return 0.0
        return round(sum(1 for _, denied in self.recent if denied) / len(self.recent), 4)

    def to_dict(self, at: float) -> dict[str, Any]:
        return {
            "last_seen": format_ts_epoch(self.last_seen) if self.last_seen else None,
            "calls_per_minute": self.per_minute(at), "deny_rate": self.deny_ratio(at), "calls": self.calls,
            "denied": self.denied, "approvals": self.approvals, "undeclared_attempts": self.undeclared,
            "downstream_errors": self.downstream_errors,
            "drift": {"severity": self.drift_severity, "response": self.drift_response,
                      "applied": self.drift_applied},
        }


def format_ts_epoch(seconds: float) -> str:
    from datetime import UTC, datetime

    return format_ts(datetime.fromtimestamp(seconds, UTC))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Health:
    """The replica's counters: per registered agent, and refusals that name no trustworthy agent."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.agents: dict[str, AgentHealth] = {}
        self.refused: dict[str, int] = {}
        self.known: frozenset[str] = frozenset()

    def rebase(self, agents: Iterable[str]) -> None:
        """The registered agents (labels are bounded by them); counters of agents no longer registered go."""
        self.known = frozenset(agents)
        for name in [n for n in self.agents if n not in self.known and n != UNREGISTERED]:
            del self.agents[name]

    def _agent(self, name: str) -> AgentHealth:
        key = name if name in self.known else UNREGISTERED
        found = self.agents.get(key)
        if found is None:
            found = self.agents[key] = AgentHealth()
        return found

    def observe(self, decision: Decision, at: float) -> None:
        """Count one decided call."""
        health = self._agent(decision.agent)
        denied = decision.verdict == DENY
        health.calls += 1
        health.denied += denied
        health.approvals += decision.verdict == APPROVAL_REQUIRED
        health.undeclared += decision.reason == UNDECLARED
        health.last_seen = at
        health.recent.append((at, denied))
        health.trim(at)

    def downstream_failed(self, agent: str) -> None:
        self._agent(agent).downstream_errors += 1

    def refuse(self, reason: str) -> None:
        """Count a call refused before any decision (a bad, expired or revoked handle...)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def drifted(self, agent: str, severity: str, response: str, applied: str | None) -> None:
        health = self._agent(agent)
        health.drift_severity, health.drift_response = severity, response
        if applied is not None:
            health.drift_applied = applied

    def report(self, at: float | None = None) -> dict[str, Any]:
        moment = time.time() if at is None else at
        return {"replica": self.replica, "ts": format_ts_epoch(moment),
                "agents": {name: h.to_dict(moment) for name, h in sorted(self.agents.items())},
                "refused": dict(sorted(self.refused.items()))}

    def prometheus(self, extra: Iterable[tuple[str, str, str, float | int, Mapping[str, str]]] = (),
                   at: float | None = None) -> str:
        """The Prometheus text exposition of every counter, then the gateway-wide samples given as
        (name, type, help, value, labels)."""
        moment = time.time() if at is None else at
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[Mapping[str, str], float | int]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

        agents = sorted(self.agents.items())
        verdicts: list[tuple[Mapping[str, str], float | int]] = []
        for name, h in agents:
            allowed = h.calls - h.denied - h.approvals
            verdicts += [({"agent": name, "verdict": "ALLOW"}, allowed),
                         ({"agent": name, "verdict": "APPROVAL_REQUIRED"}, h.approvals),
                         ({"agent": name, "verdict": "DENY"}, h.denied)]
        family("arx_gateway_calls_total", "counter", "Calls decided by this replica, by agent and verdict.", verdicts)
        family("arx_gateway_undeclared_attempts_total", "counter",
               "Calls outside the agent's manifest (denied not-in-manifest).",
               [({"agent": n}, h.undeclared) for n, h in agents])
        family("arx_gateway_downstream_errors_total", "counter",
               "Allowed calls the downstream system answered with an error.",
               [({"agent": n}, h.downstream_errors) for n, h in agents])
        family("arx_gateway_agent_last_seen_timestamp_seconds", "gauge", "When the agent's last call arrived.",
               [({"agent": n}, round(h.last_seen, 3)) for n, h in agents])
        family("arx_gateway_agent_calls_per_minute", "gauge", "The agent's calls in the last 60 seconds.",
               [({"agent": n}, h.per_minute(moment)) for n, h in agents])
        family("arx_gateway_agent_deny_ratio", "gauge", "Denied over all calls of the agent in the last 60 seconds.",
               [({"agent": n}, h.deny_ratio(moment)) for n, h in agents])
        family("arx_gateway_agent_drift_severity", "gauge",
               "Live drift severity: 0 none, 1 low, 2 medium, 3 high, 4 critical.",
               [({"agent": n, "response": h.drift_response or "none"}, SEVERITY_LEVEL.get(h.drift_severity or "", 0))
                for n, h in agents])
        family("arx_gateway_refused_total", "counter", "Calls refused before a decision, by reason.",
               [({"reason": r}, n) for r, n in sorted(self.refused.items())])
        for name, kind, help_text, value, labels in extra:
            family(name, kind, help_text, [(labels, value)])
        return "\n".join(out) + "\n"


class LiveDrift:
    """The manifest drift check over the calls this replica decides, with what was already acted on."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.analyzer: drift.Analyzer | None = None
        self._bar: str | None = None
        self._acted: dict[str, tuple[str, float]] = {}
        self.dirty = False

    def rebase(self, agents: Mapping[str, Any], engine: Any) -> None:
        """Follow a new snapshot: a changed manifest or catalog starts a new analysis (the bar moved); a status
        change only updates the statuses."""
        declared = {name: drift.declared_from_doc(a.doc, a.status, engine.catalog) for name, a in agents.items()}
        bar = digest([[name, a.doc] for name, a in sorted(agents.items())] + [sorted(engine.catalog.actions)])
        if self.analyzer is None or bar != self._bar:
            self.analyzer = drift.Analyzer(declared, engine, source=f"gateway/{self.replica}")
            self._bar = bar
            self._acted.clear()
        else:
            self.analyzer.agents = declared
            self.analyzer.state = engine
            self.analyzer.grants = engine.grants

    def observe(self, call: Call, decision: Decision, ts: Any) -> None:
        if self.analyzer is None:
            return
        r = decision.resolved
        target = call.target or {}
        event = drift.Event(ts, call.agent, call.action, target.get("system") or (r.system if r else None),
                            target.get("env") or (r.env if r else None), call.operation, call.payload,
                            f"gateway/{self.replica} {decision.id}", decision.grant)
        self.analyzer.observe(event)
        self.dirty = True

    def due(self, states: Mapping[str, tuple[str, bool]]) -> list[drift.AgentDrift]:
        """Drifted agents whose response should be applied now: the first time at a severity, or again when a
        person lifted the response (`states`: agent -> (status, throttled)) and the agent kept drifting."""
        if self.analyzer is None or not self.dirty:
            return []
        self.dirty = False
        out = []
        for found in self.analyzer.report().agents:
            last = max(f.last_ts for f in found.findings).timestamp()
            acted = self._acted.get(found.agent)
            status, throttled = states.get(found.agent, ("unknown", False))
            lifted = (found.response == "suspend" and status == "active") or (
                found.response == "throttle" and status == "active" and not throttled)
            if acted is None or drift.RANK[found.severity] > drift.RANK[acted[0]] or (lifted and last > acted[1]):
                out.append(found)
        return out

    def acted(self, found: drift.AgentDrift) -> None:
        self._acted[found.agent] = (found.severity, max(f.last_ts for f in found.findings).timestamp())

    def report_for(self, found: drift.AgentDrift) -> drift.Report:
        """A report of one agent's drift, as `drift.apply` takes it."""
        assert self.analyzer is not None
        return drift.Report(f"gateway/{self.replica}", sum(f.count for f in found.findings), 1,
                            min(f.first_ts for f in found.findings), max(f.last_ts for f in found.findings),
                            (found,))


HEALTH_FILE = "health.json"
STALE_S = 120.0


def write_report(directory: Any, report: Mapping[str, Any]) -> None:
    """Write a replica's health report atomically (read by `arxctl gateway health`)."""
    import os

    import orjson

    target = directory / HEALTH_FILE
    temp = directory / f".{HEALTH_FILE}.{os.getpid()}"
    temp.write_bytes(orjson.dumps(report))
    os.replace(temp, target)


def merge_reports(reports: Iterable[Mapping[str, Any]], *, at: float,
                  agent: str | None = None) -> dict[str, dict[str, Any]]:
    """Per-agent health across replicas: sums of counts, the latest last-seen, the worst drift. Reports older
    than two minutes count for totals but not for the per-minute rate."""
    from arxctl.clock import parse_ts

    out: dict[str, dict[str, Any]] = {}
    for report in reports:
        fresh = at - parse_ts(str(report["ts"])).timestamp() <= STALE_S
        for name, h in report.get("agents", {}).items():
            if agent is not None and name != agent:
                continue
            merged = out.setdefault(name, {"last_seen": None, "calls_per_minute": 0, "deny_rate": 0.0, "calls": 0,
                                           "denied": 0,
                                           "approvals": 0, "undeclared_attempts": 0, "downstream_errors": 0,
                                           "drift": {"severity": None, "response": None, "applied": None},
                                           "replicas": [], "_recent_denied": 0.0})
            merged["replicas"].append(report["replica"])
            if h["last_seen"] and (merged["last_seen"] is None or h["last_seen"] > merged["last_seen"]):
                merged["last_seen"] = h["last_seen"]
            for key in ("calls", "denied", "approvals", "undeclared_attempts", "downstream_errors"):
                merged[key] += h[key]
            if fresh:
                merged["calls_per_minute"] += h["calls_per_minute"]
                merged["_recent_denied"] += h["deny_rate"] * h["calls_per_minute"]
            severity = h["drift"]["severity"]
            have = merged["drift"]["severity"]
            if severity and (have is None or SEVERITY_LEVEL[severity] > SEVERITY_LEVEL[have]):
                merged["drift"] = dict(h["drift"])
    for merged in out.values():
        recent = merged.pop("_recent_denied")
        merged["deny_rate"] = round(recent / merged["calls_per_minute"], 4) if merged["calls_per_minute"] else 0.0
        merged["replicas"] = sorted(merged["replicas"])
    return dict(sorted(out.items()))


def read_reports(directories: Iterable[Any], *, at: float, agent: str | None = None) -> dict[str, dict[str, Any]]:
    """The merged health of every replica directory that has written a report."""
    import orjson

    reports = []
    for directory in directories:
        path = directory / HEALTH_FILE
        if path.exists():
            reports.append(orjson.loads(path.read_bytes()))
    return merge_reports(reports, at=at, agent=agent)


def agent_health(state: Any, agent: str, at: float | None = None) -> dict[str, Any] | None:
    """One agent's health across the gateway replicas of a state directory (None when no gateway saw it)."""
    from arxctl.gateway.audit import replica_dirs

    merged = read_reports(replica_dirs(state), at=time.time() if at is None else at, agent=agent)
    return merged.get(agent)
