"""The operator on a real kube-apiserver: bundles, statuses, grant approval and expiry, decommission, restarts
and conflicts. Every wait has a deadline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from arxctl.canonical import digest
from arxctl.chain.checkpoints import Checkpoint
from arxctl.clock import parse_ts
from arxctl.errors import NotFoundError
from arxctl.operator.k8s import KINDS, Conflict, Kube, KubeError, modify
from arxctl.operator.reconcile import name_of as reconcile_name
from arxctl.policy.bundle import build_bundle, resource_doc
from arxctl.policy.catalog import builtin
from arxctl.policy.compiler import compile_policies
from arxctl.registry import credentials, handles
from tests.cluster import wait_for
from tests.envtest.cluster import Cluster
from tests.operator.conftest import (
    OPERATOR_GROUPS,
    OPERATOR_USER,
    OperatorProcess,
    apply,
    bundle_of,
    chain_records,
    get,
    operator_process,
)
from tests.policy.helpers import agent_doc, approve, policy

pytestmark = pytest.mark.timeout(180, func_only=True)

SLACK_ONLY = [{"name": "slack", "dataClass": "internal", "target": {"system": "slack", "env": "prod"},
               "actions": ["slack.chat.post"]}]


def new_agent(name: str = "triage-cs-01", **spec: Any) -> dict[str, Any]:
    return agent_doc(name, **spec)


def new_grant(name: str, agent: str = "triage-cs-01", ttl: str = "3s", requested_by: str = "bob") -> dict[str, Any]:
    return {"apiVersion": "arx.dev/v1alpha1", "kind": "Grant", "metadata": {"name": name},
            "spec": {"agent": agent, "actions": ["servicenow.change.close"], "scope": {"change": "CHG1"},
                     "ttl": ttl, "reason": "incident 42", "requestedBy": requested_by}}


def ready(kube: Kube, kind: str, namespace: str, name: str, phase: str = "Active") -> dict[str, Any] | None:
    obj = get(kube, kind, namespace, name)
    status = (obj or {}).get("status") or {}
    current = status.get("observedGeneration") == (obj or {}).get("metadata", {}).get("generation")
    return obj if current and status.get("phase") == phase else None


def grant_phase(kube: Kube, namespace: str, name: str, phase: str) -> dict[str, Any] | None:
    obj = get(kube, "Grant", namespace, name)
    return obj if (obj or {}).get("status", {}).get("phase") == phase else None


def test_applying_an_agent_produces_the_bundle_and_ready_status(admin: Kube, ns: str,
                                                               operator: OperatorProcess) -> None:
    agent, rules = new_agent(), policy("change-control", approve("close", "servicenow.change.close"))
    apply(admin, ns, agent)
    apply(admin, ns, rules)
    obj = wait_for("agent Ready", lambda: ready(admin, "Agent", ns, "triage-cs-01"))
    status = obj["status"]
    assert {k: status[k] for k in ("phase", "version", "digest", "throttled", "observedGeneration")} == {
        "phase": "Active", "version": 1, "digest": digest(resource_doc(agent)), "throttled": False,
        "observedGeneration": 1}
    assert [(c["type"], c["status"], c["reason"], c["observedGeneration"]) for c in status["conditions"]] == [
        ("Ready", "True", "Enforced", 1), ("Suspended", "False", "NotSuspended", 1),
        ("Decommissioned", "False", "Active", 1)]
    bundle = wait_for("bundle with the agent and the policy",
                      lambda: (b := bundle_of(admin, ns)) and len(b["agents"]) == 1 and len(b["policies"]) == 1 and b)
    expected = build_bundle(namespace=ns, agents=[{"name": "triage-cs-01", "status": "active", "throttled": False,
                                                   "version": 1, "digest": digest(resource_doc(agent)),
                                                   "doc": agent}],
                            policies=[rules], catalogs=[], grants=[], revoked_handles=[],
                            generated=bundle["generated"])
    assert bundle == expected
    configmap = get(admin, "ConfigMap", ns, "arx-enforcement-bundle")
    assert configmap is not None
    assert configmap["metadata"]["annotations"] == {"arx.dev/revision": bundle["revision"],
                                                    "arx.dev/policy-revision": bundle["policy_revision"]}
    records = chain_records(operator.store(ns))
    assert [(r.type, r.agent) for r in records[:2]] == [("agent.registered", "triage-cs-01"),
                                                       ("policy.registered", None)]
    published = [r.body["revision"] for r in records if r.type == "bundle.published"]
    assert published[-1] == bundle["revision"] and len(published) == len(set(published))


def test_updating_a_policy_changes_the_bundle_revision(admin: Kube, ns: str) -> None:
    apply(admin, ns, new_agent())
    first_rules = policy("change-control", approve("close", "servicenow.change.close"), thresholds={"review": 60,
                                                                                                    "deny": 80})
    apply(admin, ns, first_rules)
    first = wait_for("policy Active", lambda: ready(admin, "Policy", ns, "change-control"))
    before = wait_for("bundle with the policy", lambda: (b := bundle_of(admin, ns)) and b["policies"] and b)
    second_rules = policy("change-control", approve("close", "servicenow.change.close"), thresholds={"review": 40,
                                                                                                     "deny": 70})
    apply(admin, ns, second_rules)
    after = wait_for("bundle revision changed", lambda: (b := bundle_of(admin, ns)) and
                     b["revision"] != before["revision"] and b)
    assert after["policies"] == [second_rules]
    assert after["policy_revision"] == compile_policies([second_rules]).revision != before["policy_revision"]
    updated = wait_for("policy status updated", lambda: (p := ready(admin, "Policy", ns, "change-control")) and
                       p["status"]["version"] == 2 and p)
    assert updated["status"]["revision"] == digest(resource_doc(second_rules)) != first["status"]["revision"]
    assert updated["status"]["observedGeneration"] == 2


def test_an_invalid_edit_keeps_the_last_valid_version_in_force(admin: Kube, ns: str,
                                                                operator: OperatorProcess) -> None:
    apply(admin, ns, new_agent(connectors=SLACK_ONLY))
    wait_for("agent Ready", lambda: ready(admin, "Agent", ns, "triage-cs-01"))
    broken = new_agent(connectors=[{**SLACK_ONLY[0], "actions": ["slack.chat.postt"]}])
    apply(admin, ns, broken)
    obj = wait_for("InvalidUpdate", lambda: (a := get(admin, "Agent", ns, "triage-cs-01")) and
                   a["status"]["observedGeneration"] == 2 and a)
    ready_condition = obj["status"]["conditions"][0]
    assert (ready_condition["status"], ready_condition["reason"]) == ("False", "InvalidUpdate")
    assert ready_condition["message"].startswith("version 1 stays in force; the new spec is invalid: ARX121 "
                                                 "$.spec.connectors[0].actions[0]: ")
    bundle = bundle_of(admin, ns)
    assert bundle is not None and bundle["agents"][0]["doc"]["spec"]["connectors"] == SLACK_ONLY
    events = admin.list(KINDS["Event"].path(ns))
    assert [(e["reason"], e["type"], e["involvedObject"]["name"]) for e in events
            if e["reason"] == "Invalid"] == [("Invalid", "Warning", "triage-cs-01")]
    assert [r.type for r in chain_records(operator.store(ns))].count("resource.rejected") == 1


def test_a_grant_approved_through_status_expires_on_time_and_leaves_the_bundle(
        admin: Kube, approver: Kube, ns: str, operator: OperatorProcess) -> None:
    apply(admin, ns, new_agent())
    apply(admin, ns, new_grant("close-chg1"))
    wait_for("grant Pending", lambda: grant_phase(admin, ns, "close-chg1", "Pending"))
    approved = approver.merge_patch(KINDS["Grant"].path(ns, "close-chg1", "status"),
                                    {"status": {"phase": "Approved", "approvedBy": "alice"}})
    assert approved["status"]["phase"] == "Approved"
    live = wait_for("grant in the bundle", lambda: (b := bundle_of(admin, ns)) and b["grants"] and b)
    # The bundle is applied before statuses are written, so the grant's expiresAt may trail the bundle.
    status = wait_for("expiresAt in the grant's status",
                      lambda: (s := get(admin, "Grant", ns, "close-chg1")["status"]) and "expiresAt" in s and s)
    expires = parse_ts(status["expiresAt"])
    assert (expires - parse_ts(status["approvedAt"])).total_seconds() == 3.0
    assert live["grants"] == [{"id": "close-chg1", "agent": "triage-cs-01", "actions": ["servicenow.change.close"],
                               "scope": {"change": "CHG1"}, "phase": "Approved", "approved_at": status["approvedAt"],
                               "expires_at": status["expiresAt"]}]
    expired = wait_for("grant Expired", lambda: grant_phase(admin, ns, "close-chg1", "Expired"), 10)
    late = time.time() - expires.timestamp()
    assert 0 <= late <= 2.0, f"expired {late:.2f} s after its TTL"
    assert expired["status"]["reason"] == f"ttl 3s elapsed at {status['expiresAt']}"
    after = bundle_of(admin, ns)
    assert after is not None and after["grants"] == []
    events = [e for e in admin.list(KINDS["Event"].path(ns)) if e["involvedObject"]["name"] == "close-chg1"]
    assert [(e["reason"], e["type"]) for e in events] == [("Expired", "Normal")]
    # The operator records an action after applying it, so the record may trail the status and the bundle.
    def grant_records() -> list[tuple[str, object]] | None:
        found = [(r.type, r.body.get("approved_by")) for r in chain_records(operator.store(ns))
                 if r.type.startswith("grant.")]
        return found if ("grant.expired", "alice") in found else None

    types = wait_for("the grant.expired record", grant_records)
    assert types == [("grant.requested", None), ("grant.approved", "alice"), ("grant.expired", "alice")]


def _refused(kube: Kube, namespace: str, name: str, status: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(KubeError) as caught:
        kube.merge_patch(KINDS["Grant"].path(namespace, name, "status"), {"status": status})
    return caught.value.status, caught.value.message


def test_only_an_approver_can_approve_and_never_for_themselves(cluster: Cluster, admin: Kube, approver: Kube,
                                                               ns: str) -> None:
    apply(admin, ns, new_agent())
    apply(admin, ns, new_grant("self", requested_by="alice", ttl="1h"))
    apply(admin, ns, new_grant("other", ttl="1h"))
    wait_for("grants Pending", lambda: grant_phase(admin, ns, "self", "Pending") and
             grant_phase(admin, ns, "other", "Pending"))
    operator_identity = Kube.connect(cluster.kubeconfig_for(OPERATOR_USER, OPERATOR_GROUPS))
    stranger = Kube.connect(cluster.kubeconfig_for("mallory", ["developers"]))
    path = f"grants.arx.dev \"other\" is forbidden: User \"mallory\" cannot patch resource \"grants/status\" in " \
           f"API group \"arx.dev\" in the namespace \"{ns}\""
    assert _refused(stranger, ns, "other", {"phase": "Approved", "approvedBy": "mallory"}) == (403, path)
    policy_says = "grants.arx.dev \"{}\" is forbidden: ValidatingAdmissionPolicy 'arx-grant-approval' with binding " \
                  "'arx-grant-approval' denied request: {}"
    assert _refused(operator_identity, ns, "other", {"phase": "Approved", "approvedBy": OPERATOR_USER}) == (
        403, policy_says.format("other", "only members of arx:grant-approvers may approve or deny a grant"))
    assert _refused(approver, ns, "other", {"phase": "Approved", "approvedBy": "bob"})[1] == \
        policy_says.format("other", "status.approvedBy must be the approver's own user name")
    assert _refused(approver, ns, "self", {"phase": "Approved", "approvedBy": "alice"})[1] == \
        policy_says.format("self", "a grant cannot be decided by the one who requested it")
    denied = approver.merge_patch(KINDS["Grant"].path(ns, "other", "status"),
                                  {"status": {"phase": "Denied", "approvedBy": "alice"}})
    assert denied["status"]["phase"] == "Denied"
    assert _refused(approver, ns, "other", {"phase": "Approved"})[1] == \
        policy_says.format("other", "a Denied, Expired or Revoked grant is final: request a new grant")


def _issue_handle(operator: OperatorProcess, namespace: str, agent: str) -> str:
    store = operator.store(namespace)
    try:
        credentials.set_credential(store, "slack", b"xoxb-secret", actor="e2e", reason="test", catalog=builtin(),
                                   agent=agent)
        info, _token = handles.issue(store, agent=agent, connector="slack", actor="e2e", reason="test")
        return info.id
    finally:
        store.close()


def _secret(name: str, agent: str | None) -> dict[str, Any]:
    labels = {"arx.dev/agent": agent} if agent else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels},
            "stringData": {"token": "s3cr3t"}}


def test_deleting_an_agent_decommissions_it_through_the_finalizer(admin: Kube, approver: Kube, ns: str,
                                                                  operator: OperatorProcess) -> None:
    apply(admin, ns, new_agent())
    for secret in (_secret("sn-token", "triage-cs-01"), _secret("slack-token", "triage-cs-01"),
                   _secret("shared", None), _secret("other-agent", "pr-reviewer")):
        apply(admin, ns, secret)
    apply(admin, ns, new_grant("live", ttl="1h"))
    wait_for("agent Ready", lambda: ready(admin, "Agent", ns, "triage-cs-01"))
    wait_for("grant Pending", lambda: grant_phase(admin, ns, "live", "Pending"))
    approver.merge_patch(KINDS["Grant"].path(ns, "live", "status"), {"status": {"phase": "Approved",
                                                                               "approvedBy": "alice"}})
    wait_for("grant in the bundle", lambda: (b := bundle_of(admin, ns)) and b["grants"])
    handle = _issue_handle(operator, ns, "triage-cs-01")
    assert get(admin, "Agent", ns, "triage-cs-01")["metadata"]["finalizers"] == ["arx.dev/decommission"]  # type: ignore[index]
    started = time.monotonic()
    admin.delete(KINDS["Agent"].path(ns, "triage-cs-01"))
    wait_for("agent gone", lambda: get(admin, "Agent", ns, "triage-cs-01") is None, 10)
    took = time.monotonic() - started
    assert took <= 5.0, f"decommission took {took:.2f} s"
    secrets = sorted(s["metadata"]["name"] for s in admin.list(KINDS["Secret"].path(ns)))
    assert secrets == ["other-agent", "shared"]
    assert grant_phase(admin, ns, "live", "Revoked")["status"]["reason"] == (  # type: ignore[index]
        "agent 'triage-cs-01' was decommissioned")
    bundle = wait_for("agent out of the bundle", lambda: (b := bundle_of(admin, ns)) and not b["agents"] and b)
    assert (bundle["grants"], bundle["revoked_handles"]) == ([], [handle])
    store = operator.store(ns)
    records = [r for r in chain_records(store) if r.agent == "triage-cs-01"]
    types = [r.type for r in records]
    assert types[types.index("agent.credentials_deleted"):] == [
        "agent.credentials_deleted", "handle.revoked", "credential.deleted", "agent.decommissioned", "agent.sealed"]
    assert records[types.index("agent.credentials_deleted")].body["secrets"] == ["slack-token", "sn-token"]
    assert records[-2].body["revoked"]["handles"] == [handle]
    assert records[-2].body["orphan_check"]["ok"] is True
    assert store.conn.execute("SELECT retention_class FROM chain_seals WHERE agent = ?",
                              ("triage-cs-01",)).fetchone() == ("standard-1yr",)


def test_lifecycle_decommissioned_shows_what_was_done(admin: Kube, ns: str, operator: OperatorProcess) -> None:
    agent = new_agent()
    agent["metadata"]["annotations"] = {"arx.dev/retention-class": "sox-7yr"}
    apply(admin, ns, agent)
    apply(admin, ns, _secret("sn-token", "triage-cs-01"))
    wait_for("agent Ready", lambda: ready(admin, "Agent", ns, "triage-cs-01"))
    retired = new_agent(lifecycle="decommissioned")
    retired["metadata"]["annotations"] = agent["metadata"]["annotations"]
    apply(admin, ns, retired)
    obj = wait_for("agent Decommissioned", lambda: (a := ready(admin, "Agent", ns, "triage-cs-01",
                                                               "Decommissioned")) and "decommission" in a["status"]
                   and a)
    summary = obj["status"]["decommission"]
    assert {k: v for k, v in summary.items() if k not in ("at", "recordSeq", "sealSeq")} == {
        "reason": "spec.lifecycle set to decommissioned", "retentionClass": "sox-7yr", "secretsDeleted": ["sn-token"],
        "grantsRevoked": [], "handlesRevoked": []}
    assert summary["sealSeq"] == summary["recordSeq"] + 1
    assert [(c["type"], c["status"]) for c in obj["status"]["conditions"]] == [
        ("Ready", "False"), ("Suspended", "False"), ("Decommissioned", "True")]
    assert admin.list(KINDS["Secret"].path(ns), label_selector="arx.dev/agent=triage-cs-01") == []
    bundle = bundle_of(admin, ns)
    assert bundle is not None and [(a["name"], a["status"]) for a in bundle["agents"]] == [
        ("triage-cs-01", "decommissioned")]
    store = operator.store(ns)
    assert store.conn.execute("SELECT seq, retention_class FROM chain_seals WHERE agent = ?",
                              ("triage-cs-01",)).fetchone() == (summary["sealSeq"], "sox-7yr")


def test_checkpoints_are_published_to_the_witness(admin: Kube, ns: str, operator: OperatorProcess) -> None:
    apply(admin, ns, new_agent())
    wait_for("agent Ready", lambda: ready(admin, "Agent", ns, "triage-cs-01"))
    store = operator.store(ns)
    log = store.conn.execute("SELECT value FROM chain_meta WHERE key = 'log_id'").fetchone()[0]
    folder = operator.witness / "checkpoints" / log
    found = wait_for("a checkpoint in the witness", lambda: sorted(folder.glob("*.json")), 15)
    checkpoint = Checkpoint.parse(found[-1].read_bytes())
    assert checkpoint.log == log and checkpoint.size >= 1
    done = subprocess.run([sys.executable, "-m", "arxctl", "chain", "verify", "--state", str(store.directory),
                           "--witness", operator.witness.as_uri(), "--format", "json"],
                          capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(done.stdout)
    assert (done.returncode, report["ok"], report["no_gaps"], report["signatures_valid"], report["problems"]) == (
        0, True, True, True, [])


def test_restarting_the_operator_mid_reconcile_converges(tmp_path: Path, admin: Kube,
                                                         operator_kubeconfig: Path) -> None:
    namespace = f"arx-rst-{uuid.uuid4().hex[:8]}"
    admin.create(KINDS["Namespace"].path(None), {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": namespace}})
    names = [f"agent-{i:02d}" for i in range(60)]
    for name in names:
        apply(admin, namespace, new_agent(name, connectors=SLACK_ONLY))
    first = operator_process(tmp_path / "op", operator_kubeconfig, [namespace]).start()

    def some_but_not_all() -> list[str] | None:
        done = [reconcile_name(a) for a in admin.list(KINDS["Agent"].path(namespace)) if a.get("status")]
        return done if done else None

    done_at_kill = wait_for("first statuses", some_but_not_all)
    first.kill()
    assert len(done_at_kill) < len(names), "the operator finished before it could be killed mid-reconcile"
    second = operator_process(tmp_path / "op", operator_kubeconfig, [namespace]).start()
    try:
        wait_for("every agent Ready", lambda: all(ready(admin, "Agent", namespace, n) for n in names), 60)
        bundle = wait_for("bundle with every agent", lambda: (b := bundle_of(admin, namespace)) and
                          len(b["agents"]) == len(names) and b)
        assert {a["version"] for a in bundle["agents"]} == {1}
        store = second.store(namespace)
        records = chain_records(store)
        registered = sorted(r.agent for r in records if r.type == "agent.registered")
        assert registered == names
        published = [r.body["revision"] for r in records if r.type == "bundle.published"]
        assert published[-1] == bundle["revision"] and len(published) == len(set(published))
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
    finally:
        assert second.stop() == 0


def test_conflicting_writes_are_retried_until_they_land(admin: Kube, cluster: Cluster, ns: str) -> None:
    other = Kube.connect(cluster.kubeconfig)
    apply(admin, ns, new_grant("contended", ttl="1h"))
    wait_for("the operator's own write (Pending) done", lambda: grant_phase(admin, ns, "contended", "Pending"))
    path = KINDS["Grant"].path(ns, "contended", "status")
    competing = iter([{"status": {"reason": "written by someone else"}}])

    def compute(current: dict[str, Any]) -> dict[str, Any]:
        interference = next(competing, None)
        if interference is not None:
            other.merge_patch(path, interference)
        return {"status": {"expiresAt": "2026-04-14T10:15:00Z"}}

    result, conflicts = modify(admin, path, compute)
    assert conflicts == 1
    assert {k: result["status"].get(k) for k in ("reason", "expiresAt")} == {
        "reason": "written by someone else", "expiresAt": "2026-04-14T10:15:00Z"}

    def always_interfere(current: dict[str, Any]) -> dict[str, Any]:
        other.merge_patch(path, {"status": {"reason": f"interference {time.monotonic()}"}})
        return {"status": {"expiresAt": "2026-04-14T11:00:00Z"}}

    with pytest.raises(Conflict) as caught:
        modify(admin, path, always_interfere, deadline_s=0.3)
    assert caught.value.status == 409
    assert json.loads(json.dumps(caught.value.reason)) == "Conflict"
    with pytest.raises(NotFoundError):
        modify(admin, KINDS["Grant"].path(ns, "missing", "status"), compute)
