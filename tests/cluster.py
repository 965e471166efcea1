"""One real kube-apiserver + etcd for the whole test session, a Kubernetes client for it and the committed CRDs on it.

Registered once through `pytest_plugins` in tests/conftest.py, so every test folder shares the same session fixtures;
never import the fixtures into a conftest or a test module (that defines a second fixture, hence a second server).
The cluster and Kubernetes imports happen inside the fixtures: tests that never ask for a cluster don't pay for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from tests.envtest.cluster import Cluster

T = TypeVar("T")
POLL_INTERVAL_S = 0.05
CRD_DIR = Path(__file__).resolve().parents[1] / "crds"


def wait_for(what: str, probe: Callable[[], T | None], deadline_s: float = 30.0) -> T:
    """Poll `probe()` until it returns something truthy; fail the test once the deadline has passed."""
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {deadline_s} s" + (f" (last error: {last})" if last else ""))
        time.sleep(POLL_INTERVAL_S)


def committed_crds() -> list[dict[str, Any]]:
    """The CRDs as committed in crds/ (what users apply), in kustomization order."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    kustomization = yaml.load(CRD_DIR / "kustomization.yaml")
    return [yaml.load(CRD_DIR / name) for name in kustomization["resources"]]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd + kube-apiserver (RBAC; the admin is in system:masters); fails in CI when the toolchain is missing."""
    from tests.envtest.cluster import ToolchainMissing, in_ci, locate_assets, start_cluster

    try:
        assets = locate_assets()
    except ToolchainMissing as exc:
        if in_ci():
            pytest.fail(f"CI=true and no kube-apiserver toolchain: {exc}")
        pytest.skip(f"no kube-apiserver toolchain: {exc}")
    with start_cluster(assets, tmp_path_factory.mktemp("envtest")) as running:
        yield running


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Iterator[Any]:
    """A `kubernetes` ApiClient authenticated as the cluster admin."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def installed_crds(api_client: Any) -> dict[str, dict[str, Any]]:
    """Create the committed CRDs; wait until each is Established and its resource is served (kind -> CRD)."""
    from kubernetes import client

    extensions = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    definitions = committed_crds()
    for crd in definitions:
        extensions.create_custom_resource_definition(crd)
    installed: dict[str, dict[str, Any]] = {}
    for crd in definitions:
        name, spec = crd["metadata"]["name"], crd["spec"]

        def established(name: str = name) -> dict[str, Any] | None:
            response = extensions.read_custom_resource_definition(name, _preload_content=False)
            current: dict[str, Any] = json.loads(response.data)
            conditions = {c["type"]: c["status"] for c in current.get("status", {}).get("conditions", [])}
            ok = conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"
            return current if ok else None

        installed[spec["names"]["kind"]] = wait_for(f"CRD {name} Established", established)
        wait_for(f"{spec['names']['plural']} served", lambda spec=spec: custom.list_cluster_custom_object(
            spec["group"], spec["versions"][0]["name"], spec["names"]["plural"]) is not None)
    return installed
