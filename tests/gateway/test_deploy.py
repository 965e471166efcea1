"""deploy/gateway/: the kustomization builds, a real API server accepts every manifest (server-side dry run), the
gateway pod is locked down, and agents may reach only the gateway."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.envtest.cluster import Cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "gateway"


def documents(text: str) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML

    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d]


def built() -> list[dict[str, Any]]:
    return documents("\n---\n".join(p.read_text() for p in sorted(DEPLOY.glob("*.yaml"))
                                    if p.name != "kustomization.yaml"))


@pytest.mark.timeout(120, func_only=True)
def test_the_api_server_accepts_every_gateway_manifest(cluster: Cluster) -> None:
    assert cluster.kubectl is not None, "kubectl is built with the envtest binaries"
    kubectl = [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig)]
    text = subprocess.run([str(cluster.kubectl), "kustomize", str(DEPLOY)], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    docs = documents(text)
    assert sorted((d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs) == [
        ("ConfigMap", "arx-gateway-config", "agents"),
        ("NetworkPolicy", "arx-agents-reach-only-the-gateway", "agents"),
        ("NetworkPolicy", "arx-gateway-ingress", "agents"),
        ("PodDisruptionBudget", "arx-gateway", "agents"),
        ("Role", "arx-gateway", "agents"),
        ("RoleBinding", "arx-gateway", "agents"),
        ("Service", "arx-gateway", "agents"),
        ("ServiceAccount", "arx-gateway", "agents"),
        ("StatefulSet", "arx-gateway", "agents"),
    ]
    namespace = subprocess.run([*kubectl, "create", "namespace", "agents"], capture_output=True, text=True,
                               timeout=60, check=False)
    assert namespace.returncode == 0 or "AlreadyExists" in namespace.stderr, namespace.stderr
    done = subprocess.run([*kubectl, "apply", "--server-side", "--dry-run=server", "--field-manager=e2e", "-f", "-"],
                          input=text, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert sorted(done.stdout.splitlines()) == sorted(
        f"{kind.lower()}{'.apps' if kind == 'StatefulSet' else ''}"
        f"{'.networking.k8s.io' if kind == 'NetworkPolicy' else ''}{'.policy' if kind == 'PodDisruptionBudget' else ''}"
        f"{'.rbac.authorization.k8s.io' if kind in ('Role', 'RoleBinding') else ''}"
        f"/{d['metadata']['name']} serverside-applied (server dry run)" for d in docs for kind in [d["kind"]])


def test_the_gateway_pod_is_locked_down() -> None:
    [statefulset] = [d for d in built() if d["kind"] == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                      "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is True
    assert {v["name"]: {k: v for k, v in v.items() if k != "name"} for v in pod["volumes"]} == {
        "bundle": {"configMap": {"name": "arx-enforcement-bundle"}},
        "secret-source": {"secret": {"secretName": "arx-gateway-secrets", "defaultMode": 0o400}},
        "secrets": {"emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        "config": {"configMap": {"name": "arx-gateway-config"}},
        "tmp": {"emptyDir": {"sizeLimit": "64Mi"}},
    }
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]} == {
        "/etc/arx/bundle": True, "/etc/arx/secrets": True, "/etc/arx/gateway": True, "/var/lib/arx": False,
        "/tmp": False}
    [init] = pod["initContainers"]
    assert init["command"] == ["sh", "-c", "cp -L /etc/arx/secret-source/* /etc/arx/secrets/ && "
                                           "chmod 0400 /etc/arx/secrets/*"]
    assert init["securityContext"] == container["securityContext"]
    assert container["args"][:5] == ["gateway", "serve", "--bundle=/etc/arx/bundle", "--secrets=/etc/arx/secrets",
                                     "--state=/var/lib/arx"]
    assert "--replica-id=$(POD_NAME)" in container["args"]
    assert (container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]) == (
        {"path": "/readyz", "port": "http"}, {"path": "/healthz", "port": "http"})
    [pdb] = [d for d in built() if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "arx-gateway"}}}


def test_agents_may_reach_only_the_gateway_and_dns() -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in built() if d["kind"] == "NetworkPolicy"}
    agents = policies["arx-agents-reach-only-the-gateway"]
    assert agents["podSelector"] == {"matchExpressions": [{"key": "arx.dev/agent", "operator": "Exists"}]}
    assert agents["policyTypes"] == ["Egress"]
    assert [(rule["to"], rule["ports"]) for rule in agents["egress"]] == [
        ([{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "arx-gateway"}}}],
         [{"port": 8080, "protocol": "TCP"}]),
        ([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]),
    ]
    [service] = [d for d in built() if d["kind"] == "Service"]
    assert (service["spec"]["sessionAffinity"], service["spec"]["ports"]) == (
        "ClientIP", [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}])


def test_the_shipped_gateway_config_writes_agent_statuses() -> None:
    from arxctl.gateway.config import ClusterSettings, parse_config

    [configmap] = [d for d in built() if d["kind"] == "ConfigMap"]
    config = parse_config(configmap["data"]["gateway.yaml"], "deploy/gateway/configmap.yaml")
    assert config.cluster == ClusterSettings(None, None, 30.0)
