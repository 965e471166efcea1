"""Envtest harness benchmarks: time to a ready kube-apiserver, CRD install, and create latency of our CRs.

Figures, each beside an anchor measured in the same run on the same server:
- start-up: etcd + kube-apiserver to `/readyz` = ok (no anchor: the floor is the binaries themselves);
- CRD install: create the four committed CRDs until all are Established and served;
- create p50 of an Agent (structural schema, list-map keys, a root CEL rule) and of a Grant (CEL ttl <= 24h),
  against creating a ConfigMap of about the same size (built-in type, no CEL): the ratio is what our
  schemas and CEL rules cost the server per write.

Run: .venv/bin/python bench/envtest.py [--starts 3] [--creates 200]   (builds the binaries on first use)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import committed_crds, wait_for  # noqa: E402
from tests.envtest.cluster import locate_assets, start_cluster  # noqa: E402


def _agent(i: int) -> dict[str, Any]:
    return {"apiVersion": "arx.dev/v1alpha1", "kind": "Agent", "metadata": {"name": f"agent-{i}"}, "spec": {
        "owner": {"name": "Dana Reyes", "email": "dana@bank.example", "team": "secops"},
        "purpose": "Triage customer-support change tickets",
        "connectors": [{"name": "servicenow", "dataClass": "confidential",
                        "target": {"system": "servicenow-prod", "env": "prod"},
                        "actions": ["servicenow.change.read", "servicenow.change.close"]}]}}


def _grant(i: int) -> dict[str, Any]:
    return {"apiVersion": "arx.dev/v1alpha1", "kind": "Grant", "metadata": {"name": f"grant-{i}"}, "spec": {
        "agent": "cloud-posture-remediation", "actions": ["aws.s3.put_bucket_acl"],
        "scope": {"bucket": "bank-logs-prod"}, "ttl": "1h30m", "reason": "Remediate finding CSPM-1182"}}


def _configmap(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"cm-{i}"}, "data": {"spec": json.dumps(_agent(i)["spec"])}}


def _ms(seconds: list[float]) -> str:
    return f"p50 {statistics.median(seconds) * 1000:7.2f} ms  max {max(seconds) * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--creates", type=int, default=200)
    args = parser.parse_args()

    from kubernetes import client, config

    started = time.perf_counter()
    assets = locate_assets()
    print(f"binaries: {assets} (located/built in {time.perf_counter() - started:.1f} s)")

    starts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="arx-envtest-bench-") as tmp:
        for n in range(args.starts):
            t = time.perf_counter()
            with start_cluster(assets, Path(tmp) / f"start-{n}"):
                starts.append(time.perf_counter() - t)
        print(f"start-up to /readyz ({args.starts} runs): p50 {statistics.median(starts):.2f} s  "
              f"max {max(starts):.2f} s")

        with start_cluster(assets, Path(tmp) / "main") as cluster:
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            extensions, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
            core = client.CoreV1Api(api)
            t = time.perf_counter()
            for crd in committed_crds():
                extensions.create_custom_resource_definition(crd)
            for crd in committed_crds():
                plural = crd["spec"]["names"]["plural"]
                wait_for(f"{plural} served", lambda plural=plural: custom.list_cluster_custom_object(
                    "arx.dev", "v1alpha1", plural) is not None)
            print(f"CRD install (4 CRDs to served): {time.perf_counter() - t:.2f} s")

            timings: dict[str, list[float]] = {"configmap": [], "agent": [], "grant": []}
            for i in range(args.creates):
                for kind, create in (
                    ("configmap", lambda i=i: core.create_namespaced_config_map("default", _configmap(i))),
                    ("agent", lambda i=i: custom.create_namespaced_custom_object(
                        "arx.dev", "v1alpha1", "default", "agents", _agent(i), field_validation="Strict")),
                    ("grant", lambda i=i: custom.create_namespaced_custom_object(
                        "arx.dev", "v1alpha1", "default", "grants", _grant(i), field_validation="Strict")),
                ):
                    t = time.perf_counter()
                    create()
                    timings[kind].append(time.perf_counter() - t)
            api.close()
    anchor = statistics.median(timings["configmap"])
    print(f"create ConfigMap (anchor, {args.creates}): {_ms(timings['configmap'])}")
    for kind in ("agent", "grant"):
        ratio = statistics.median(timings[kind]) / anchor
        print(f"create {kind.capitalize():<8}({args.creates}): {_ms(timings[kind])}  ratio vs ConfigMap {ratio:.2f}x")


if __name__ == "__main__":
    main()
