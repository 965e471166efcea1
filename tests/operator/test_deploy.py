"""deploy/: the kustomization builds, the API server accepts every manifest (server-side dry run), the operator pod
is locked down, and the Argo CD health checks (Lua 5.1, as Argo CD runs them) read the operator's status right."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from arxctl.operator.k8s import KINDS, Kube
from tests.envtest.cluster import Cluster
from tests.operator.conftest import ROOT, load_yaml_documents

DEPLOY = ROOT / "deploy"


def kustomize(cluster: Cluster) -> str:
    assert cluster.kubectl is not None, "kubectl is built with the envtest binaries"
    done = subprocess.run([str(cluster.kubectl), "kustomize", str(DEPLOY)], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


@pytest.mark.timeout(120, func_only=True)
def test_the_api_server_accepts_every_deploy_manifest(cluster: Cluster, admin: Kube,
                                                      installed_crds: dict[str, Any]) -> None:
    from ruamel.yaml import YAML

    built = kustomize(cluster)
    docs = [d for d in YAML(typ="safe", pure=True).load_all(built) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted([
        ("CustomResourceDefinition", "agents.arx.dev"), ("CustomResourceDefinition", "connectorcatalogs.arx.dev"),
        ("CustomResourceDefinition", "grants.arx.dev"), ("CustomResourceDefinition", "policies.arx.dev"),
        ("Namespace", "arx-system"), ("ServiceAccount", "arx-operator"), ("ClusterRole", "arx-operator"),
        ("ClusterRoleBinding", "arx-operator"), ("ClusterRole", "arx-grant-approver"),
        ("ClusterRoleBinding", "arx-grant-approvers"), ("ClusterRole", "arx-agent-admin"),
        ("ClusterRoleBinding", "arx-agent-admins"), ("ClusterRole", "arx-edit"), ("ClusterRole", "arx-view"),
        ("ValidatingAdmissionPolicy", "arx-grant-approval"),
        ("ValidatingAdmissionPolicyBinding", "arx-grant-approval"),
        ("ValidatingAdmissionPolicy", "arx-agent-status"), ("ValidatingAdmissionPolicyBinding", "arx-agent-status"),
        ("PersistentVolumeClaim", "arx-operator-state"), ("Deployment", "arx-operator"),
    ])
    if admin.get(KINDS["Namespace"].path(None, "arx-system")) is None:
        admin.create(KINDS["Namespace"].path(None), {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": "arx-system"}})
    assert cluster.kubectl is not None
    done = subprocess.run([str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), "apply", "--server-side",
                           "--force-conflicts", "--dry-run=server", "--field-manager=e2e", "-f", "-"],
                          input=built, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert len(done.stdout.splitlines()) == len(docs)
    assert all(line.endswith("serverside-applied (server dry run)") for line in done.stdout.splitlines())


def test_only_the_operator_gateway_and_agent_admins_write_agent_status() -> None:
    docs = [*load_yaml_documents(DEPLOY / "rbac.yaml"), *load_yaml_documents(DEPLOY / "gateway" / "rbac.yaml")]
    writers = sorted(d["metadata"]["name"] for d in docs if d["kind"] in ("ClusterRole", "Role")
                     for rule in d["rules"] if "agents/status" in rule["resources"]
                     and {"patch", "update"} & set(rule["verbs"]))
    assert writers == ["arx-agent-admin", "arx-gateway", "arx-operator"]
    bound = {d["roleRef"]["name"]: d["subjects"] for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")}
    assert {name: bound[name] for name in writers} == {
        "arx-agent-admin": [{"kind": "Group", "name": "arx:agent-admins", "apiGroup": "rbac.authorization.k8s.io"}],
        "arx-gateway": [{"kind": "ServiceAccount", "name": "arx-gateway"}],
        "arx-operator": [{"kind": "ServiceAccount", "name": "arx-operator", "namespace": "arx-system"}]}
    [role] = [d for d in docs if d["metadata"]["name"] == "arx-gateway" and d["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": ["arx.dev"], "resources": ["agents/status"], "verbs": ["get", "patch"]}]


def test_the_operator_pod_is_locked_down() -> None:
    [deployment] = [d for d in load_yaml_documents(DEPLOY / "deployment.yaml")]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]} == {
        "state": {"claimName": "arx-operator-state"}, "tmp": None}
    assert "--state=/var/lib/arx" in container["args"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/var/lib/arx", "/tmp"}


def _health_scripts() -> dict[str, str]:
    [patch] = load_yaml_documents(DEPLOY / "argocd" / "argocd-cm-patch.yaml")
    prefix = "resource.customizations.health.arx.dev_"
    return {key.removeprefix(prefix): script for key, script in patch["data"].items()}


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run the kind's health script on `obj` in Lua 5.1 (Argo CD uses gopher-lua, a Lua 5.1)."""
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    check = lua.execute(f"return function(obj)\n{_health_scripts()[kind]}\nend")
    result = check(lua.table_from(obj, recursive=True))
    return result["status"], result["message"]


def _agent(generation: int = 1, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "a", "generation": generation}}
    if status:
        obj["status"] = status
    return obj


def _ready(status: str, reason: str, message: str) -> list[dict[str, str]]:
    return [{"type": "Ready", "status": status, "reason": reason, "message": message}]


def test_the_health_checks_cover_the_three_kinds() -> None:
    assert sorted(_health_scripts()) == ["Agent", "Grant", "Policy"]


@pytest.mark.parametrize(("obj", "expected"), [
    (_agent(), ("Progressing", "waiting for the arx operator")),
    (_agent(2, observedGeneration=1, phase="Active", conditions=_ready("True", "Enforced", "v1")),
     ("Progressing", "waiting for the arx operator")),
    (_agent(observedGeneration=1, phase="Active", conditions=_ready("True", "Enforced", "version 1 is in the "
                                                                                       "enforcement bundle")),
     ("Healthy", "version 1 is in the enforcement bundle")),
    (_agent(observedGeneration=1, phase="Invalid", conditions=_ready("False", "Invalid", "ARX121 $.spec: bad")),
     ("Degraded", "ARX121 $.spec: bad")),
    (_agent(observedGeneration=1, phase="Active", conditions=_ready("False", "InvalidUpdate", "v1 stays")),
     ("Degraded", "v1 stays")),
    (_agent(observedGeneration=1, phase="Suspended", conditions=_ready("False", "Suspended", "suspended")),
     ("Suspended", "suspended")),
    (_agent(observedGeneration=1, phase="Decommissioning", conditions=_ready("False", "Decommissioned", "going")),
     ("Progressing", "going")),
    (_agent(observedGeneration=1, phase="Decommissioned", conditions=_ready("False", "Decommissioned", "sealed")),
     ("Suspended", "sealed")),
])
def test_agent_health(obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health("Agent", obj) == expected


@pytest.mark.parametrize(("obj", "expected"), [
    (_agent(), ("Progressing", "waiting for the arx operator")),
    (_agent(observedGeneration=1, phase="Active", conditions=_ready("True", "Enforced", "in force")),
     ("Healthy", "in force")),
    (_agent(observedGeneration=1, phase="Invalid", conditions=_ready("False", "Invalid", "ARX140 bad CEL")),
     ("Degraded", "ARX140 bad CEL")),
])
def test_policy_health(obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health("Policy", obj) == expected


@pytest.mark.parametrize(("status", "expected"), [
    (None, ("Progressing", "waiting for an approver")),
    ({"phase": "Pending", "reason": "waiting for an approver"}, ("Progressing", "waiting for an approver")),
    ({"phase": "Approved", "reason": "active until T"}, ("Healthy", "active until T")),
    ({"phase": "Denied"}, ("Degraded", "waiting for an approver")),
    ({"phase": "Expired", "reason": "ttl 15m elapsed at T"}, ("Suspended", "ttl 15m elapsed at T")),
    ({"phase": "Revoked", "reason": "agent decommissioned"}, ("Suspended", "agent decommissioned")),
])
def test_grant_health(status: dict[str, Any] | None, expected: tuple[str, str]) -> None:
    obj: dict[str, Any] = {"metadata": {"name": "g", "generation": 1}}
    if status is not None:
        obj["status"] = status
    assert health("Grant", obj) == expected


def test_the_flux_and_argo_examples_sync_server_side() -> None:
    flux = {d["kind"]: d for d in load_yaml_documents(DEPLOY / "flux" / "kustomization.yaml")}
    assert flux["Kustomization"]["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "agents"}
    assert [c["kind"] for c in flux["Kustomization"]["spec"]["healthChecks"]] == ["Agent", "Policy"]
    [application] = load_yaml_documents(DEPLOY / "argocd" / "application.yaml")
    assert "ServerSideApply=true" in application["spec"]["syncPolicy"]["syncOptions"]


