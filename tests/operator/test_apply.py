"""`arxctl apply` and `arxctl diff` against a real kube-apiserver: validated first, server-side applied, idempotent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from arxctl.diagnostics import render_text
from arxctl.operator.k8s import KINDS, Kube
from arxctl.resources.validation import check_paths
from tests.conftest import EXAMPLES, Cli
from tests.envtest.cluster import Cluster

pytestmark = pytest.mark.timeout(120, func_only=True)


@pytest.fixture
def target(admin: Kube, installed_crds: dict[str, Any]) -> str:
    name = f"arx-apply-{uuid.uuid4().hex[:8]}"
    admin.create(KINDS["Namespace"].path(None), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def run(cli: Cli, cluster: Cluster, *args: str) -> tuple[int, str, str]:
    result = cli(*args, "--kubeconfig", str(cluster.kubeconfig))
    return result.exit_code, result.stdout, result.stderr


def test_apply_creates_then_leaves_unchanged_and_diff_agrees(cli: Cli, cluster: Cluster, admin: Kube,
                                                             target: str) -> None:
    manifest = EXAMPLES / "manifests" / "triage-cs-01.yaml"
    policies = EXAMPLES / "policies" / "change-control.yaml"
    code, out, _ = run(cli, cluster, "diff", str(manifest), "-n", target, "-o", "json")
    assert code == 1
    preview = json.loads(out)
    assert (preview["changed"], [(o["kind"], o["action"], o["dry_run"]) for o in preview["objects"]]) == (
        True, [("Agent", "created", True)])
    assert preview["objects"][0]["diff"].startswith(
        "--- live/agent.arx.dev/triage-cs-01\n+++ applied/agent.arx.dev/triage-cs-01\n")
    assert admin.get(KINDS["Agent"].path(target, "triage-cs-01")) is None
    code, out, _ = run(cli, cluster, "apply", str(manifest), str(policies), "-n", target)
    assert (code, out) == (0, "agent.arx.dev/triage-cs-01 created\npolicy.arx.dev/change-control created\n")
    live = admin.get(KINDS["Agent"].path(target, "triage-cs-01"))
    assert live is not None and live["metadata"]["managedFields"][0]["manager"] == "arxctl"
    assert live["metadata"]["managedFields"][0]["operation"] == "Apply"
    code, out, _ = run(cli, cluster, "apply", str(manifest), str(policies), "-n", target)
    assert (code, out) == (0, "agent.arx.dev/triage-cs-01 unchanged\npolicy.arx.dev/change-control unchanged\n")
    assert run(cli, cluster, "diff", str(manifest), str(policies), "-n", target) == (0, "", "")


def test_diff_shows_an_edit_and_dry_run_changes_nothing(cli: Cli, cluster: Cluster, admin: Kube, target: str,
                                                        tmp_path: Path) -> None:
    source = (EXAMPLES / "policies" / "change-control.yaml").read_text()
    run(cli, cluster, "apply", str(EXAMPLES / "policies" / "change-control.yaml"), "-n", target)
    edited = tmp_path / "change-control.yaml"
    edited.write_text(source.replace("review: 60", "review: 55"))
    assert "review: 55" in edited.read_text()
    code, out, _ = run(cli, cluster, "diff", str(edited), "-n", target)
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith(("-", "+")) and not line.startswith(
        ("---", "+++"))] == ["-    review: 60", "+    review: 55"]
    code, out, _ = run(cli, cluster, "apply", str(edited), "-n", target, "--dry-run")
    assert (code, out) == (0, "policy.arx.dev/change-control configured (server dry run)\n")
    live = admin.get(KINDS["Policy"].path(target, "change-control"))
    assert live is not None and live["spec"]["thresholds"]["review"] == 60


def test_invalid_resources_are_never_applied(cli: Cli, cluster: Cluster, admin: Kube, target: str,
                                             tmp_path: Path) -> None:
    bad = tmp_path / "agents.yaml"
    good = (EXAMPLES / "manifests" / "pr-reviewer.yaml").read_text()
    bad.write_text(good + "---\n" + good.replace("name: pr-reviewer", "name: Not_A_Label"))
    code, out, err = run(cli, cluster, "apply", str(bad), "-n", target)
    report = check_paths([bad])
    assert (code, out, err) == (2, "", render_text(report.diagnostics, 1) + "\n")
    assert [d.rule for d in report.diagnostics] == ["ARX110"]
    assert admin.list(KINDS["Agent"].path(target)) == []


def test_a_document_for_another_namespace_is_refused(cli: Cli, cluster: Cluster, target: str,
                                                     tmp_path: Path) -> None:
    doc = tmp_path / "agent.yaml"
    text = (EXAMPLES / "manifests" / "pr-reviewer.yaml").read_text()
    doc.write_text(text.replace("  name: pr-reviewer\n", "  name: pr-reviewer\n  namespace: elsewhere\n", 1))
    code, out, err = run(cli, cluster, "apply", str(doc), "-n", target)
    assert (code, out) == (2, "")
    assert err == (f"error: {doc}:2: Agent 'pr-reviewer' names namespace 'elsewhere' but the target is '{target}' "
                   "(pass --namespace elsewhere)\n")
