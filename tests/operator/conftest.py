"""The operator against a real kube-apiserver: one operator process for the session (as its ServiceAccount, with
the RBAC and admission policy from deploy/), and helpers to start more, read bundles and read the chain. The
cluster fixtures are the session's shared ones from tests/cluster.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arxctl.chain.records import Record
from arxctl.operator.k8s import KINDS, Kube
from arxctl.policy.bundle import BUNDLE_KEY, CONFIGMAP_NAME, parse_bundle
from arxctl.store.sqlite import Store
from tests.cluster import wait_for
from tests.envtest.cluster import Cluster, free_port

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_USER = "system:serviceaccount:arx-system:arx-operator"
OPERATOR_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:arx-system")
APPROVER_GROUP = "arx:grant-approvers"
SESSION_PATTERN = "arx-e2e-*"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML

    return [d for d in YAML(typ="safe", pure=True).load_all(path) if d]


@dataclass(slots=True)
class OperatorProcess:
    """`arxctl operator run` in a subprocess, with its state folder, witness folder and log."""

    state: Path
    witness: Path
    log: Path
    argv: list[str]
    liveness: str
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with self.log.open("ab") as handle:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                          env={**os.environ, "ARX_DEBUG": "1"})
        wait_for("operator liveness endpoint", self._alive, START_DEADLINE_S)
        return self

    def _alive(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            pytest.fail(f"operator exited with {self.popen.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.liveness, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL once the deadline has passed; returns the exit code."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=STOP_DEADLINE_S)

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait(timeout=STOP_DEADLINE_S)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def store(self, namespace: str) -> Store:
        """The operator's store for a namespace (a second connection: SQLite WAL allows concurrent readers)."""
        directory = self.state / "namespaces" / namespace
        wait_for(f"store of namespace {namespace}", lambda: (directory / "state.db").exists())
        return Store(directory, create=False)


def operator_process(workdir: Path, kubeconfig: Path, namespaces: list[str], *extra: str) -> OperatorProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    argv = [sys.executable, "-m", "arxctl", "operator", "run", "--kubeconfig", str(kubeconfig),
            "--state", str(workdir / "state"), "--witness", (workdir / "witness").as_uri(), "--resync", "10m",
            "--liveness", liveness, "--as", OPERATOR_USER, "--verbose", *extra]
    for pattern in namespaces:
        argv += ["--namespace", pattern]
    return OperatorProcess(workdir / "state", workdir / "witness", workdir / "operator.log", argv, liveness)


@pytest.fixture(scope="session")
def admin(cluster: Cluster) -> Kube:
    """A Kube client as the cluster admin."""
    return Kube.connect(cluster.kubeconfig)


@pytest.fixture(scope="session")
def deploy_rbac(admin: Kube, installed_crds: dict[str, Any]) -> None:
    """The ClusterRoles, bindings and the grant and agent-status admission policies from deploy/, as they ship."""
    for name in ("rbac.yaml", "grant-approval-policy.yaml", "agent-status-policy.yaml"):
        for doc in load_yaml_documents(ROOT / "deploy" / name):
            kind = doc["kind"]
            group, version = doc["apiVersion"].split("/")
            plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
                      "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
                      "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings"}[kind]
            admin.request("PATCH", f"/apis/{group}/{version}/{plural}/{doc['metadata']['name']}", body=doc,
                          query={"fieldManager": "e2e", "force": "true", "fieldValidation": "Strict"},
                          content_type="application/apply-patch+yaml")


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, deploy_rbac: None) -> Path:
    return cluster.kubeconfig_for(OPERATOR_USER, OPERATOR_GROUPS)


@pytest.fixture(scope="session")
def operator(tmp_path_factory: pytest.TempPathFactory, operator_kubeconfig: Path) -> Iterator[OperatorProcess]:
    """One operator for the session, watching the namespaces named arx-e2e-*, as its ServiceAccount."""
    process = operator_process(tmp_path_factory.mktemp("operator"), operator_kubeconfig, [SESSION_PATTERN],
                               "--publish-every", "1s").start()
    yield process
    code = process.stop()
    assert code == 0, f"operator exited with {code}:\n{process.log_tail()}"


@pytest.fixture
def ns(admin: Kube, operator: OperatorProcess) -> str:
    """A fresh namespace the session operator watches."""
    name = f"arx-e2e-{uuid.uuid4().hex[:8]}"
    admin.create(KINDS["Namespace"].path(None), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture(scope="session")
def approver(cluster: Cluster, deploy_rbac: None) -> Kube:
    """A member of arx:grant-approvers."""
    return Kube.connect(cluster.kubeconfig_for("alice", [APPROVER_GROUP]))


def bundle_of(kube: Kube, namespace: str) -> dict[str, Any] | None:
    """The checked bundle in the namespace's ConfigMap, or None when there is none yet."""
    configmap = kube.get(KINDS["ConfigMap"].path(namespace, CONFIGMAP_NAME))
    if configmap is None:
        return None
    return parse_bundle(configmap["data"][BUNDLE_KEY].encode(), f"{namespace}/{CONFIGMAP_NAME}")


def chain_records(store: Store) -> list[Record]:
    return [Record.from_line(line) for (line,) in store.conn.execute("SELECT line FROM chain ORDER BY seq")]


def apply(kube: Kube, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    return kube.apply({**doc, "metadata": {**doc["metadata"], "namespace": namespace}}, field_manager="e2e",
                      force=True)


def get(kube: Kube, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(KINDS[kind].path(namespace, name))


def elapsed(since: float) -> float:
    return time.monotonic() - since
