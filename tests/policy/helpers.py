"""Builders for agents, policies, grants and calls used by the engine tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from arxctl.policy.compiler import compile_policies
from arxctl.policy.engine import AgentInfo, Call, EngineState, Grant
from arxctl.policy.risk import RiskModel

T0 = datetime(2026, 4, 14, 10, 0, 0, tzinfo=UTC)


def agent_doc(name: str = "triage-cs-01", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """An Agent resource with servicenow (confidential, prod), slack (catalog default, no env),
    aws (restricted, dev) and crowdstrike (internal, staging) entries."""
    connectors = spec.pop("connectors", None) or [
        {"name": "servicenow", "dataClass": "confidential", "target": {"system": "servicenow-prod", "env": "prod"},
         "actions": ["servicenow.change.read", "servicenow.change.close"]},
        {"name": "slack", "target": {"system": "slack"}, "actions": ["slack.chat.post"]},
        {"name": "aws", "dataClass": "restricted", "target": {"system": "aws-dev", "env": "dev"},
         "actions": ["aws.s3.delete_object", "aws.s3.get_object"]},
        {"name": "crowdstrike", "dataClass": "internal", "target": {"system": "falcon", "env": "staging"},
         "actions": ["crowdstrike.host.contain"]},
    ]
    return {
        "apiVersion": "arx.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "labels": labels if labels is not None else {"env": "prod", "team": "secops"}},
        "spec": {"owner": {"name": "Dana Reyes", "email": "dana@bank.example", "team": "secops"},
                 "purpose": "Triage change tickets", "connectors": connectors, **spec},
    }


def policy(name: str, *rules: dict[str, Any], thresholds: dict[str, int] | None = None,
           selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": list(rules)}
    if thresholds is not None:
        spec["thresholds"] = thresholds
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "arx.dev/v1alpha1", "kind": "Policy", "metadata": {"name": name}, "spec": spec}


def deny(name: str, when: str, cond: str | None = None, reason: str = "no") -> dict[str, Any]:
    rule: dict[str, Any] = {"name": name, "when": when, "then": {"deny": {"reason": reason}}}
    if cond is not None:
        rule["if"] = cond
    return rule


def approve(name: str, when: str, cond: str | None = None, severity: str = "high",
            group: str = "secops-leads") -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": name, "when": when,
        "then": {"approvalRequired": {"severity": severity, "approvers": {"group": group}, "timeout": "4h",
                                      "diffShownToApprover": True}},
    }
    if cond is not None:
        rule["if"] = cond
    return rule


def grant(gid: str = "fix-0414", agent: str = "triage-cs-01", actions: tuple[str, ...] = ("servicenow.change.close",),
          scope: dict[str, Any] | None = None, phase: str = "Approved", start: datetime = T0 - timedelta(minutes=5),
          ttl: timedelta = timedelta(minutes=15)) -> Grant:
    return Grant(gid, agent, frozenset(actions), scope or {}, phase, start, start + ttl)


def state(*policies: dict[str, Any], agents: list[AgentInfo] | None = None, grants: tuple[Grant, ...] = (),
          model: RiskModel | None = None) -> EngineState:
    if agents is None:
        agents = [AgentInfo.from_doc(agent_doc())]
    return EngineState.build(agents, compile_policies(list(policies), model), grants=grants)


def call(action: str = "servicenow.change.read", agent: str = "triage-cs-01", payload: Any = None,
         ts: datetime = T0, session: str = "s-1", **kw: Any) -> Call:
    return Call(ts=ts, agent=agent, action=action, payload={} if payload is None else payload, session=session, **kw)
