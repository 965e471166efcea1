"""Builders for the drift tests: manifests, observed calls and a report from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from arxctl.policy.catalog import builtin
from arxctl.policy.engine import EngineState, Grant
from arxctl.registry.drift import Declared, Event, Report, analyze, declared_from_doc

T0 = datetime(2026, 4, 14, 10, 0, 0, tzinfo=UTC)
SERVICENOW = {"name": "servicenow", "dataClass": "confidential", "target": {"system": "servicenow-prod", "env": "prod"},
              "actions": ["servicenow.change.read", "servicenow.change.close"]}
GITHUB = {"name": "github", "dataClass": "internal", "target": {"system": "github-bank"},
          "actions": ["github.pulls.read"]}


def manifest(name: str = "triage", connectors: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    """An Agent resource; by default servicenow (prod, read + write) and github (no env, read)."""
    return {
        "apiVersion": "arx.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "labels": {"env": "prod"}},
        "spec": {"owner": {"name": "Dana Reyes", "email": "dana@bank.example", "team": "secops"},
                 "purpose": "Triage change tickets", "connectors": connectors or [SERVICENOW, GITHUB], **spec},
    }


def call(action: str, agent: str = "triage", ts: datetime = T0, *, system: str | None = None, env: str | None = None,
         operation: str | None = None, payload: Any = None, where: str = "a.ndjson:1") -> Event:
    return Event(ts, agent, action, system, env, operation, {} if payload is None else payload, where)


def declared(*docs: dict[str, Any], status: dict[str, str] | None = None) -> dict[str, Declared]:
    catalog = builtin()
    return {d["metadata"]["name"]: declared_from_doc(d, (status or {}).get(d["metadata"]["name"], "active"), catalog)
            for d in docs}


def report(events: list[Event], *docs: dict[str, Any], status: dict[str, str] | None = None,
           grants: tuple[Grant, ...] = ()) -> Report:
    agents = declared(*(docs or (manifest(),)), status=status)
    state = EngineState.build([a.info for a in agents.values()], grants=grants)
    return analyze(events, agents, state)


def findings(result: Report, agent: str = "triage") -> list[tuple[str, str, str, int]]:
    """(kind, subject, severity, count) of one agent's findings, in report order."""
    for drift in result.agents:
        if drift.agent == agent:
            return [(f.kind, f.subject, f.severity, f.count) for f in drift.findings]
    return []


def burst(n: int, start: datetime = T0, every: timedelta = timedelta(seconds=1), action: str = "servicenow.change.read",
          agent: str = "triage") -> list[Event]:
    """n calls, one every `every` from `start`."""
    return [call(action, agent, start + every * i, where=f"a.ndjson:{i + 1}") for i in range(n)]
