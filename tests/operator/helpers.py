"""Cluster-shaped objects for the operator tests: what the API server returns for Agents, Policies and Grants."""

from __future__ import annotations

from typing import Any

from tests.policy.helpers import agent_doc, approve, policy


def live(doc: dict[str, Any], *, generation: int = 1, uid: str | None = None, status: dict[str, Any] | None = None,
         rv: str = "1", **metadata: Any) -> dict[str, Any]:
    """`doc` as the server stores it: uid, generation, resourceVersion and an optional status."""
    out = {**doc, "metadata": {**doc["metadata"], "uid": uid or f"uid-{doc['metadata']['name']}",
                               "generation": generation, "resourceVersion": rv, **metadata}}
    if status is not None:
        out["status"] = status
    return out


def agent(name: str = "triage-cs-01", **kw: Any) -> dict[str, Any]:
    return live(agent_doc(name), **kw)


def change_control(**kw: Any) -> dict[str, Any]:
    return live(policy("change-control", approve("close", "servicenow.change.close")), **kw)


def grant(name: str = "fix-acl", agent_name: str = "triage-cs-01", ttl: str = "15m",
          actions: tuple[str, ...] = ("servicenow.change.close",), **kw: Any) -> dict[str, Any]:
    doc = {"apiVersion": "arx.dev/v1alpha1", "kind": "Grant", "metadata": {"name": name},
           "spec": {"agent": agent_name, "actions": list(actions), "ttl": ttl, "reason": "incident 42",
                    "requestedBy": agent_name}}
    return live(doc, **kw)
