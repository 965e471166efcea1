"""Kubernetes through the official client: *Api objects, their list/read/create/patch/delete methods, exec."""

from __future__ import annotations

import re
from typing import Any

import libcst as cst

from arxctl.analyze.python import Ctx, Hit, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Obj, obj

RULE_ID = "ARXA107"
DESCRIPTION = "Kubernetes API call through the kubernetes client: verb and kind map to kubernetes.<resource>.<verb>"
FAMILIES = ("kubernetes",)
MODULES = ("kubernetes",)
ENTRY: tuple[str, ...] = ()
ENTRY_RE = (r"^kubernetes\.client\.(?:api\.(?:\w+\.)?)?[A-Z]\w*Api$",)
# Bytes that must appear for an *Api object to be built: a constructor call or an aliased import.
NEEDLES = {"kubernetes": rb"\wApi\s*\((?!object\))|\wApi\s+as\s"}

_METHOD = re.compile(
    r"^(?P<verb>list|read|create|delete_collection|delete|patch|replace|connect_(?:get|post|put|delete|head|options|patch))"
    r"_(?:namespaced_)?(?P<kind>\w+?)(?:_for_all_namespaces)?"
    r"(?:_(?P<sub>status|scale|log|eviction|exec|attach|portforward|proxy(?:_with_path)?|binding|ephemeralcontainers))?$"
)
_RESOURCES = {
    "pod": "pods", "deployment": "deployments", "config_map": "configmaps", "secret": "secrets",
    "namespace": "namespaces", "job": "jobs", "network_policy": "networkpolicies", "node": "nodes",
    "role": "rbac", "cluster_role": "rbac", "role_binding": "rbac", "cluster_role_binding": "rbac",
}
_SPECIFIC: dict[tuple[str, str, str | None], str] = {
    ("pods", "list", None): "pods.list", ("pods", "read", None): "pods.read", ("pods", "read", "log"): "pods.logs",
    ("pods", "delete", None): "pods.delete", ("pods", "delete_collection", None): "pods.delete",
    ("pods", "create", "eviction"): "nodes.drain",
    ("deployments", "patch", "scale"): "deployments.scale", ("deployments", "replace", "scale"): "deployments.scale",
    ("nodes", "patch", None): "nodes.cordon", ("nodes", "replace", None): "nodes.cordon",
    ("rbac", "create", None): "rbac.bind",
}
_VERBS = {"list": "read", "read": "read", "create": "create", "patch": "update", "replace": "update",
          "delete": "delete", "delete_collection": "delete"}


def k8s_action(method_name: str) -> str | None:
    """`list_namespaced_pod` -> `kubernetes.pods.list`; None when the name is not an API operation."""
    name = method_name.removesuffix("_with_http_info")
    m = _METHOD.match(name)
    if m is None:
        return None
    verb, kind, sub = m.group("verb"), m.group("kind"), m.group("sub")
    if sub and f"{kind}_{sub}" in _RESOURCES:
        kind, sub = f"{kind}_{sub}", None
    if verb.startswith("connect_"):
        return "kubernetes.exec.run" if sub in ("exec", "attach") else f"kubernetes.{kind.replace('_', '')}s.proxy"
    resource = _RESOURCES.get(kind, kind.replace("_", "") + "s")
    if (resource, verb, sub) in _SPECIFIC:
        action = _SPECIFIC[(resource, verb, sub)]
        if action == "rbac.bind" and not kind.endswith("binding"):
            action = "rbac.create"
        return f"kubernetes.{action}"
    return f"kubernetes.{resource}.{_VERBS[verb]}"


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    return obj("kubernetes", "api", cls=qname.rsplit(".", 1)[-1]), []


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    if o.kind != "api":
        return None
    action = k8s_action(name)
    if action is None:
        return None
    node = call.func if action == "kubernetes.exec.run" else call
    return None, [hit(RULE_ID, node, "kubernetes", action, f"kubernetes {o.get('cls')}.{name}", api=o.get("cls"))]


def reference(analyzer: Any, node: cst.Attribute) -> list[Hit]:
    """`stream(api.connect_get_namespaced_pod_exec, ...)` runs a command without calling the method directly."""
    name = node.attr.value
    if not name.startswith("connect_") or not name.endswith(("_exec", "_attach")):
        return []
    base = analyzer.ev(node.value)
    if not (isinstance(base, Obj) and base.family == "kubernetes" and base.kind == "api"):
        return []
    return [hit(RULE_ID, node, "kubernetes", "kubernetes.exec.run", f"kubernetes {base.get('cls')}.{name}",
                api=base.get("cls"))]
