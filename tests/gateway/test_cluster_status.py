"""Cluster mode's pure parts: the hold a replica writes into an Agent's status (never weakening one already
there), the health entry and its patch (silent replicas removed), which agents' health is worth a write, and the
`cluster` section of gateway.yaml."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from arxctl.errors import ValidationFailed
from arxctl.gateway.cluster import HealthGate, health_entry, health_patch, hold_for, hold_patch
from arxctl.gateway.config import ClusterSettings, parse_config
from arxctl.registry.drift import AgentDrift, Finding

AT = datetime(2026, 4, 14, 10, 0, tzinfo=UTC)
TS = "2026-04-14T10:00:00Z"


def drifted(response: str = "suspend", severity: str = "critical") -> AgentDrift:
    finding = Finding("triage-cs-01", "undeclared-action", "servicenow.change.delete", severity, "not declared", 1,
                      AT, AT, "gateway/gw-a d-1")
    return AgentDrift("triage-cs-01", "active", severity, response, severity == "critical", (finding,))


def test_the_hold_reads_like_the_embedded_drift_response() -> None:
    found = drifted()
    assert hold_for(found, "gw-a", TS) == {
        "suspended": True, "throttled": False, "severity": "critical", "reportId": found.report_id,
        "reason": f"drift critical ({found.report_id}): undeclared-action servicenow.change.delete",
        "source": "gateway/gw-a", "at": TS}
    throttle = hold_for(drifted("throttle", "medium"), "gw-b", TS)
    assert (throttle["suspended"], throttle["throttled"], throttle["source"]) == (False, True, "gateway/gw-b")


def test_a_hold_is_written_unless_it_is_there_or_would_weaken_one() -> None:
    suspend, throttle = hold_for(drifted(), "gw-a", TS), hold_for(drifted("throttle", "medium"), "gw-b", TS)
    assert hold_patch({}, suspend) == {"status": {"suspension": suspend}}
    assert hold_patch({"status": {"suspension": suspend}}, suspend) is None
    assert hold_patch({"status": {"suspension": suspend}}, throttle) is None
    assert hold_patch({"status": {"suspension": throttle}}, suspend) == {"status": {"suspension": suspend}}
    other = {**suspend, "source": "gateway/gw-b", "at": "2026-04-14T10:00:01Z"}
    assert hold_patch({"status": {"suspension": other}}, suspend) == {"status": {"suspension": suspend}}


def test_health_entries_and_their_patch_remove_silent_replicas() -> None:
    report = {"last_seen": TS, "calls_per_minute": 2, "deny_rate": 0.5, "calls": 2, "denied": 1, "approvals": 0,
              "undeclared_attempts": 1, "downstream_errors": 0,
              "drift": {"severity": "critical", "response": "suspend", "applied": "suspended on this replica"}}
    entry = health_entry(report, TS)
    assert entry == {"lastSeen": TS, "callsPerMinute": 2, "denyRate": 0.5, "calls": 2, "denied": 1,
                     "undeclaredAttempts": 1, "downstreamErrors": 0,
                     "drift": {"severity": "critical", "response": "suspend", "applied": "suspended on this replica"},
                     "reportedAt": TS}
    current = {"status": {"phase": "Active", "gateway": {
        "gw-a": {"reportedAt": "2026-04-14T08:00:00Z"}, "gw-b": {"reportedAt": "2026-04-14T09:30:00Z"},
        "gw-old": {"reportedAt": "2026-04-14T08:59:59Z"}, "gw-junk": "x"}}}
    fresh = {**report, "last_seen": None, "drift": {"severity": None, "response": None, "applied": None}}
    assert health_entry(fresh, TS) == {
        "callsPerMinute": 2, "denyRate": 0.5, "calls": 2, "denied": 1, "undeclaredAttempts": 1, "downstreamErrors": 0,
        "drift": {"severity": "none", "response": "none", "applied": "none"}, "reportedAt": TS}
    assert health_patch(current, "gw-a", entry, AT) == {"status": {"gateway": {
        "gw-a": entry, "gw-old": None, "gw-junk": None}}}
    assert health_patch({}, "gw-a", entry, AT) == {"status": {"gateway": {"gw-a": entry}}}


def test_health_is_written_when_it_changed_or_as_a_heartbeat_oldest_first() -> None:
    gate = HealthGate(heartbeat_s=300.0, limit=2)
    entries = {name: {"calls": 1, "reportedAt": TS} for name in ("a", "b", "c")}
    assert gate.due("ns", entries, 0.0) == ["a", "b"]
    gate.written("ns", "a", entries["a"], 0.0)
    gate.written("ns", "b", entries["b"], 10.0)
    assert gate.due("ns", entries, 20.0) == ["c"]
    gate.written("ns", "c", entries["c"], 20.0)
    later = {name: {"calls": 1, "reportedAt": "2026-04-14T10:05:00Z"} for name in ("a", "b", "c")}
    assert gate.due("ns", later, 30.0) == []
    assert gate.due("ns", {**later, "b": {"calls": 2, "reportedAt": TS}}, 30.0) == ["b"]
    assert gate.due("ns", later, 305.0) == ["a"]
    assert gate.due("ns", later, 321.0) == ["a", "b"]
    assert gate.due("other", later, 30.0) == ["a", "b"]


def test_the_cluster_section_of_the_gateway_config(tmp_path: Path) -> None:
    (tmp_path / "kube.yaml").write_text("{}")
    config = parse_config("cluster: {kubeconfig: kube.yaml, context: gw, status_every: 15s}\n", "gateway.yaml",
                          tmp_path)
    assert config.cluster == ClusterSettings(tmp_path / "kube.yaml", "gw", 15.0)
    assert parse_config("cluster: {}\n", "gateway.yaml", tmp_path).cluster == ClusterSettings()
    assert parse_config("connectors: {}\n", "gateway.yaml", tmp_path).cluster is None
    with pytest.raises(ValidationFailed) as bad:
        parse_config("cluster:\n  kubeconfig: missing.yaml\n  status_every: 500ms\n", "gateway.yaml", tmp_path)
    assert [d.render() for d in bad.value.diagnostics] == [
        f"gateway.yaml:2:15: ARX103 $.cluster.kubeconfig: no kubeconfig at {tmp_path / 'missing.yaml'}",
        "gateway.yaml:3:17: ARX132 $.cluster.status_every: must be at least 1s (each report is a write to the API "
        "server)"]
