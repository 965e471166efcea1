"""The operator against a real kube-apiserver: apply -> bundle updated, decommission -> credentials gone, grant
expiry lateness.

The anchor, measured in the same run on the same server, is one client writing a ConfigMap by server-side apply
and reading it back: the fastest any controller can turn a change into a written object. Targets (issue #8):
apply -> bundle p50 <= 1 s, decommission -> labelled Secrets gone <= 5 s, grant expired within 2 s of its TTL.
Usage: python bench/operator.py [--agents N] [--decommissions N] [--grants N]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arxctl.clock import parse_ts  # noqa: E402
from arxctl.operator.k8s import KINDS, Kube  # noqa: E402
from arxctl.policy.bundle import BUNDLE_KEY, CONFIGMAP_NAME, parse_bundle  # noqa: E402
from tests.envtest.cluster import free_port, locate_assets, start_cluster  # noqa: E402

T = TypeVar("T")
POLL_S = 0.01
NAMESPACE = "arx-bench"


def wait(what: str, probe: Callable[[], T | None], deadline_s: float = 30.0) -> T:
    deadline = time.monotonic() + deadline_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise SystemExit(f"{what}: not within {deadline_s} s")
        time.sleep(POLL_S)


def agent(name: str) -> dict[str, Any]:
    return {"apiVersion": "arx.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"owner": {"name": "Dana Reyes", "email": "dana@bank.example", "team": "secops"},
                     "purpose": "benchmark agent",
                     "connectors": [{"name": "slack", "dataClass": "internal",
                                     "target": {"system": "slack", "env": "prod"}, "actions": ["slack.chat.post"]}]}}


def bundle(kube: Kube) -> dict[str, Any] | None:
    found = kube.get(KINDS["ConfigMap"].path(NAMESPACE, CONFIGMAP_NAME))
    return parse_bundle(found["data"][BUNDLE_KEY].encode()) if found else None


def agents_in_bundle(kube: Kube) -> set[str]:
    current = bundle(kube)
    return {a["name"] for a in current["agents"] if a["status"] == "active"} if current else set()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def anchor(kube: Kube, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        started = time.perf_counter()
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "anchor", "namespace": NAMESPACE},
                    "data": {"i": str(i)}}, field_manager="bench", force=True)
        wait("anchor read back", lambda i=i: (kube.get(KINDS["ConfigMap"].path(NAMESPACE, "anchor")) or {}).get(
            "data", {}).get("i") == str(i))
        out.append(time.perf_counter() - started)
    return out


def apply_to_bundle(kube: Kube, count: int) -> list[float]:
    out = []
    for i in range(count):
        name = f"bench-{i:03d}"
        started = time.perf_counter()
        kube.apply(agent(name), field_manager="bench", force=True)
        wait(f"{name} in the bundle", lambda name=name: name in agents_in_bundle(kube))
        out.append(time.perf_counter() - started)
    return out


def decommission_to_secrets_gone(kube: Kube, count: int) -> list[float]:
    out = []
    for i in range(count):
        name = f"retire-{i:03d}"
        kube.apply(agent(name), field_manager="bench", force=True)
        for j in range(3):
            kube.apply({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": f"{name}-cred-{j}", "namespace": NAMESPACE,
                                     "labels": {"arx.dev/agent": name}}, "stringData": {"token": "x"}},
                       field_manager="bench", force=True)
        wait(f"{name} in the bundle", lambda name=name: name in agents_in_bundle(kube))
        selector = f"arx.dev/agent={name}"
        started = time.perf_counter()
        kube.delete(KINDS["Agent"].path(NAMESPACE, name))
        wait(f"{name}'s Secrets gone", lambda selector=selector: not kube.list(KINDS["Secret"].path(NAMESPACE),
                                                                              label_selector=selector))
        out.append(time.perf_counter() - started)
    return out


def grant_lateness(kube: Kube, count: int, ttl_s: int = 2) -> list[float]:
    kube.apply(agent("grantee"), field_manager="bench", force=True)
    out = []
    for i in range(count):
        name = f"grant-{i:03d}"
        kube.apply({"apiVersion": "arx.dev/v1alpha1", "kind": "Grant",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {"agent": "grantee", "actions": ["slack.chat.post"], "ttl": f"{ttl_s}s",
                             "reason": "bench", "requestedBy": "grantee"}}, field_manager="bench", force=True)
        path = KINDS["Grant"].path(NAMESPACE, name)
        wait(f"{name} Pending", lambda path=path: (kube.get(path) or {}).get("status", {}).get("phase") == "Pending")
        kube.merge_patch(f"{path}/status", {"status": {"phase": "Approved", "approvedBy": "bench-approver"}})
        expired = wait(f"{name} Expired", lambda path=path: (g := kube.get(path)) and
                       g.get("status", {}).get("phase") == "Expired" and g, ttl_s + 10)
        out.append(time.time() - parse_ts(expired["status"]["expiresAt"]).timestamp())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=30)
    parser.add_argument("--decommissions", type=int, default=10)
    parser.add_argument("--grants", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arx-bench-operator-") as tmp, \
            start_cluster(locate_assets(), Path(tmp) / "cluster") as cluster:
        kube = Kube.connect(cluster.kubeconfig)
        for path in sorted((ROOT / "crds").glob("arx.dev_*.yaml")):
            from ruamel.yaml import YAML

            crd = YAML(typ="safe", pure=True).load(path)
            kube.request("PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                         body=crd, query={"fieldManager": "bench", "force": "true"},
                         content_type="application/apply-patch+yaml")
        wait("CRDs served", lambda: all(kube.get(f"/apis/arx.dev/v1alpha1/{plural}") is not None
                                        for plural in ("agents", "policies", "connectorcatalogs", "grants")))
        kube.create(KINDS["Namespace"].path(None), {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": NAMESPACE}})
        liveness = f"http://127.0.0.1:{free_port()}/healthz"
        log = Path(tmp) / "operator.log"
        with log.open("wb") as handle:
            operator = subprocess.Popen(
                [sys.executable, "-m", "arxctl", "operator", "run", "--namespace", NAMESPACE, "--kubeconfig",
                 str(cluster.kubeconfig), "--state", str(Path(tmp) / "state"), "--liveness", liveness],
                stdout=handle, stderr=subprocess.STDOUT)

        def alive() -> bool:
            if operator.poll() is not None:
                raise SystemExit(f"operator exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(liveness, timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        try:
            wait("operator up", alive, 60)
            base = anchor(kube, 20)
            applied = apply_to_bundle(kube, args.agents)
            retired = decommission_to_secrets_gone(kube, args.decommissions)
            late = grant_lateness(kube, args.grants)
        finally:
            operator.send_signal(signal.SIGTERM)
            operator.wait(timeout=15)
    a50 = statistics.median(base)
    print(f"anchor: SSA write + read back, p50 {a50 * 1000:.1f} ms (n={len(base)})")
    rows = [
        ("apply -> bundle updated", applied, 1.0, "p50"),
        ("decommission -> Secrets gone", retired, 5.0, "max"),
        ("grant expired after its TTL", late, 2.0, "max"),
    ]
    for label, values, target, key in rows:
        p50, p95, worst = statistics.median(values), pct(values, 0.95), max(values)
        judged = p50 if key == "p50" else worst
        print(f"{label:<30} p50 {p50 * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  max {worst * 1000:8.1f} ms  "
              f"(n={len(values)})  {p50 / a50:6.1f}x anchor  target {key} <= {target:g} s: "
              f"{'ok' if judged <= target else 'MISSED'}")


if __name__ == "__main__":
    main()
