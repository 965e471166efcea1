"""Gateway replicas in bundle mode on a real kube-apiserver with the operator: a live-drift suspension written by one
replica (as the gateway's ServiceAccount, with deploy/gateway/rbac.yaml) reaches the bundle and the other replica
denies; only an agent admin lifts it; an agent's own identity cannot write its status; health shows in the status.
Every wait has a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arxctl.gateway.cluster import StatusWriter, health_entry, hold_for
from arxctl.operator.k8s import KINDS, Kube, KubeError
from arxctl.policy.bundle import BUNDLE_KEY, CONFIGMAP_NAME
from arxctl.sdk import CallDenied, Connector
from tests.cluster import wait_for
from tests.envtest.cluster import Cluster
from tests.gateway import upstreams
from tests.gateway.helpers import AGENT, GatewayProcess, Mount, World, build_world, manifest, secrets_dir
from tests.gateway.test_cluster_status import TS, drifted
from tests.operator.conftest import ROOT, OperatorProcess, apply, bundle_of, chain_records, get, load_yaml_documents

pytestmark = pytest.mark.timeout(180, func_only=True)

ADMIN_GROUP = "arx:agent-admins"
REACTIVATION = {"by": "carol", "reason": "false positive: the delete came from a test harness"}


class Kubelet:
    """Projects the bundle ConfigMap into a directory the way kubelet updates a ConfigMap volume (an atomic
    `..data` swap), polling every 50 ms, and remembers when each revision last appeared."""

    def __init__(self, kube: Kube, namespace: str, directory: Path) -> None:
        self.kube, self.namespace, self.mount = kube, namespace, Mount(directory)
        self.published: dict[str, float] = {}
        self.current: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)

    def __enter__(self) -> Kubelet:
        self._sync()
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sync(self) -> None:
        configmap = self.kube.get(KINDS["ConfigMap"].path(self.namespace, CONFIGMAP_NAME))
        if configmap is None:
            return
        revision = configmap["metadata"]["annotations"]["arx.dev/revision"]
        if revision != self.current:
            self.mount.publish(configmap["data"][BUNDLE_KEY].encode())
            self.current, self.published[revision] = revision, time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sync()


def _gateway_rbac(admin: Kube, namespace: str) -> None:
    """deploy/gateway/rbac.yaml in the test namespace, as kustomize would place it."""
    for doc in load_yaml_documents(ROOT / "deploy" / "gateway" / "rbac.yaml"):
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
        plural = {"Role": "roles", "RoleBinding": "rolebindings"}[doc["kind"]]
        admin.request("PATCH", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{plural}/"
                               f"{doc['metadata']['name']}", body=doc,
                      query={"fieldManager": "e2e", "force": "true", "fieldValidation": "Strict"},
                      content_type="application/apply-patch+yaml")


def _service_account(namespace: str, name: str) -> tuple[str, tuple[str, ...]]:
    return (f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


@pytest.fixture
def upstream_servers() -> Iterator[tuple[upstreams.Upstream, upstreams.Upstream]]:
    with upstreams.serve(upstreams.ServiceNowHandler) as servicenow, \
            upstreams.serve(upstreams.SlackHandler, "/api") as slack:
        servicenow.records["chg-1"] = {"sys_id": "chg-1", "number": "CHG0031", "state": "-1", "close_code": "",
                                       "close_notes": ""}
        yield servicenow, slack


class Calls:
    """One agent's calls to one replica, counted as the replica's health must count them."""

    def __init__(self, replica: GatewayProcess, world: World) -> None:
        self.connector = Connector("servicenow", gateway=replica.url, handle=world.tokens["servicenow"])
        self.calls = self.denied = 0

    def read(self) -> str:
        """ALLOW, or the reason of the DENY."""
        self.calls += 1
        try:
            self.connector.call("change.read", {"sys_id": "chg-1"})
        except CallDenied as exc:
            self.denied += 1
            return exc.reason
        return "ALLOW"


def _status(admin: Kube, ns: str) -> dict[str, Any]:
    return (get(admin, "Agent", ns, AGENT) or {}).get("status") or {}


def _refused(kube: Kube, ns: str, status: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(KubeError) as caught:
        kube.merge_patch(KINDS["Agent"].path(ns, AGENT, "status"), {"status": status})
    return caught.value.status, caught.value.message


def test_a_live_drift_suspension_reaches_every_replica_until_an_admin_lifts_it(
        tmp_path: Path, cluster: Cluster, admin: Kube, ns: str, operator: OperatorProcess,
        upstream_servers: tuple[upstreams.Upstream, upstreams.Upstream]) -> None:
    servicenow, slack = upstream_servers
    _gateway_rbac(admin, ns)
    apply(admin, ns, manifest())
    wait_for("agent in the bundle", lambda: (b := bundle_of(admin, ns)) and b["agents"])
    world = build_world(tmp_path / "platform", servicenow=servicenow.url, slack=slack.url)
    gateway_user, gateway_groups = _service_account(ns, "arx-gateway")
    (tmp_path / "gateway.yaml").write_text(
        world.config.read_text() + f"cluster: {{kubeconfig: \"{cluster.kubeconfig_for(gateway_user, gateway_groups)}\","
                                   f" status_every: 1s}}\n")
    secrets = secrets_dir(world)
    replicas: list[GatewayProcess] = []
    with Kubelet(admin, ns, tmp_path / "bundle") as kubelet:
        try:
            for name in ("gw-a", "gw-b"):
                replicas.append(GatewayProcess(tmp_path / f"{name}-state", name, [
                    "--bundle", str(kubelet.mount.directory), "--secrets", str(secrets),
                    "--config", str(tmp_path / "gateway.yaml")]).start())
            a, b = Calls(replicas[0], world), Calls(replicas[1], world)
            assert (a.read(), b.read()) == ("ALLOW", "ALLOW")

            with pytest.raises(CallDenied) as undeclared:
                a.connector.call("change.delete", {"sys_id": "chg-1"}, session="s-drift")
            a.calls, a.denied = a.calls + 1, a.denied + 1
            assert undeclared.value.reason == "not-in-manifest"
            hold = wait_for("the hold in the Agent's status", lambda: _status(admin, ns).get("suspension"), 15)
            assert {k: v for k, v in hold.items() if k not in ("reportId", "at", "reason")} == {
                "suspended": True, "throttled": False, "severity": "critical", "source": "gateway/gw-a"}
            assert hold["reason"] == (f"drift critical ({hold['reportId']}): new-operation-class destructive, "
                                      "undeclared-action servicenow.change.delete")
            suspended = wait_for("the suspension in the bundle", lambda: (bundle := bundle_of(admin, ns)) and
                                 bundle["agents"][0]["status"] == "suspended" and bundle, 15)
            published = wait_for("the bundle projected", lambda: kubelet.published.get(suspended["revision"]))
            wait_for("the other replica denies", lambda: b.read() == "agent-suspended", 5)
            took = time.monotonic() - published
            assert took <= 1.0, f"replica gw-b denied {took:.2f} s after the bundle changed"

            record = [r for r in chain_records(operator.store(ns)) if r.type == "agent.suspended"]
            assert [(r.agent, r.actor, r.body) for r in record] == [
                (AGENT, "gateway/gw-a", {"reason": hold["reason"], "source": "drift"})]
            status = wait_for("status Suspended", lambda: (s := _status(admin, ns)).get("phase") == "Suspended" and s)
            assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
                ("Ready", "False", "Suspended"), ("Suspended", "True", "LiveDrift"),
                ("Decommissioned", "False", "Active")]
            assert status["conditions"][1]["message"] == (
                f"suspended by gateway/gw-a at {record[0].ts}: {hold['reason']}; only an admin's "
                "status.reactivation lifts it")

            def reported(replica: str, calls: Calls, drift: str = "none") -> dict[str, Any] | None:
                entry = (_status(admin, ns).get("gateway") or {}).get(replica)
                return entry if entry and (entry["calls"], entry["denied"], entry["drift"]["severity"]) == (
                    calls.calls, calls.denied, drift) else None

            entry = wait_for("gw-a's health in the status", lambda: reported("gw-a", a, "critical"), 10)
            assert {k: v for k, v in entry.items() if k not in ("lastSeen", "reportedAt")} == {
                "callsPerMinute": 2, "denyRate": 0.5, "calls": 2, "denied": 1, "undeclaredAttempts": 1,
                "downstreamErrors": 0, "drift": {"severity": "critical", "response": "suspend",
                                                 "applied": "suspended on this replica; written to the Agent's "
                                                            "status.suspension"}}
            entry = wait_for("gw-b's health in the status", lambda: reported("gw-b", b), 10)
            assert (entry["undeclaredAttempts"], entry["drift"]) == (
                0, {"severity": "none", "response": "none", "applied": "none"})

            agent_user, agent_groups = _service_account(ns, AGENT)
            itself = Kube.connect(cluster.kubeconfig_for(agent_user, agent_groups))
            assert _refused(itself, ns, {"suspension": None}) == (403, (
                f"agents.arx.dev \"{AGENT}\" is forbidden: User \"{agent_user}\" cannot patch resource "
                f"\"agents/status\" in API group \"arx.dev\" in the namespace \"{ns}\""))
            gateway = Kube.connect(cluster.kubeconfig_for(gateway_user, gateway_groups))
            policy_says = (f"agents.arx.dev \"{AGENT}\" is forbidden: ValidatingAdmissionPolicy 'arx-agent-status' "
                           "with binding 'arx-agent-status' denied request: {}")
            assert _refused(gateway, ns, {"reactivation": {"by": gateway_user, "reason": "self-service"}}) == (
                403, policy_says.format("only members of arx:agent-admins may reactivate an agent"))
            carol = Kube.connect(cluster.kubeconfig_for("carol", [ADMIN_GROUP]))
            assert _refused(carol, ns, {"reactivation": {"by": "dana", "reason": "on behalf"}}) == (
                403, policy_says.format("status.reactivation.by must be the admin's own user name"))
            assert b.read() == "agent-suspended"

            carol.merge_patch(KINDS["Agent"].path(ns, AGENT, "status"), {"status": {"reactivation": REACTIVATION}})
            wait_for("reactivated in the bundle", lambda: (bundle := bundle_of(admin, ns)) and
                     bundle["agents"][0]["status"] == "active", 15)
            wait_for("both replicas allow again", lambda: a.read() == "ALLOW" and b.read() == "ALLOW", 5)
            status = wait_for("the hold and the reactivation cleared", lambda: (s := _status(admin, ns)) and
                              s.get("phase") == "Active" and "suspension" not in s and "reactivation" not in s and s)
            assert [(c["type"], c["status"]) for c in status["conditions"]] == [
                ("Ready", "True"), ("Suspended", "False"), ("Decommissioned", "False")]
            lifted = [r for r in chain_records(operator.store(ns)) if r.type == "agent.reactivated"]
            assert [(r.actor, r.body["reason"], r.body["suspended_by"]) for r in lifted] == [
                ("carol", REACTIVATION["reason"], "gateway/gw-a")]
            events = {(e["reason"], e["type"]) for e in admin.list(KINDS["Event"].path(ns))
                      if e["involvedObject"]["name"] == AGENT}
            assert events == {("Suspended", "Warning"), ("Reactivated", "Normal")}
            assert servicenow.requests("DELETE") == []
        finally:
            codes = [r.stop() for r in replicas]
    assert codes == [0, 0], [r.output() for r in replicas]


def test_a_refused_hold_is_kept_and_written_once_the_gateway_may(cluster: Cluster, admin: Kube, ns: str,
                                                                  operator: OperatorProcess) -> None:
    apply(admin, ns, manifest())
    wait_for("agent registered", lambda: _status(admin, ns).get("phase") == "Active")
    user, groups = _service_account(ns, "arx-gateway")
    clock = [0.0]
    writer = StatusWriter(Kube.connect(cluster.kubeconfig_for(user, groups)), "gw-a", 1.0, clock=lambda: clock[0])
    try:
        hold = hold_for(drifted(), "gw-a", TS)
        assert writer.write_hold(ns, AGENT, hold) == (
            f"the Agent status write failed (retry in 1s): GET /apis/arx.dev/v1alpha1/namespaces/{ns}/agents/{AGENT}/"
            f"status: 403 Forbidden: agents.arx.dev \"{AGENT}\" is forbidden: User \"{user}\" cannot get resource "
            f"\"agents/status\" in API group \"arx.dev\" in the namespace \"{ns}\"")
        assert (writer.pending, writer.retry()) == (1, [])
        _gateway_rbac(admin, ns)
        clock[0] = 1e9
        written = f"{ns}/{AGENT}: written to the Agent's status.suspension"
        retries: list[list[str]] = []
        def retry() -> bool:
            clock[0] += 60.0  # past any backoff, so every probe is a real retry (RBAC may take a moment)
            retries.append(writer.retry())
            return retries[-1] == [written]

        wait_for("the hold written on a retry", retry)
        assert (writer.pending, _status(admin, ns)["suspension"]) == (0, hold)
        report = {"agents": {AGENT: {"last_seen": TS, "calls_per_minute": 1, "deny_rate": 1.0, "calls": 1,
                                     "denied": 1, "approvals": 0, "undeclared_attempts": 1, "downstream_errors": 0,
                                     "drift": {"severity": "critical", "response": "suspend", "applied": "x"}},
                             "ghost": {}}}
        assert writer.write_health(ns, report, frozenset({AGENT})) == 1
        entry = _status(admin, ns)["gateway"]["gw-a"]
        assert entry == health_entry(report["agents"][AGENT], entry["reportedAt"])
        assert writer.write_health(ns, report, frozenset({AGENT})) == 0
        assert (writer.stats.holds, writer.stats.health, writer.stats.errors) == (1, 1, len(retries))
    finally:
        writer.close()
