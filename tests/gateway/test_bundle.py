"""A replica enforcing the operator's bundle, mounted like a ConfigMap (updated by an atomic `..data` symlink
swap): reloads under concurrent load drop nothing, a suspension or revocation in a new bundle applies within a
second, and no valid bundle means every call is refused."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from typing import Any

import orjson

from arxctl.canonical import digest
from arxctl.clock import now_ts
from arxctl.policy.bundle import build_bundle, bundle_bytes, bundle_revision
from arxctl.sdk import CallDenied, Connector, HandleRefused
from tests.gateway import upstreams
from tests.gateway.helpers import (
    AGENT,
    GatewayProcess,
    Mount,
    World,
    change_policy,
    manifest,
    request,
    secrets_dir,
    until,
)

CALLS = 360
WORKERS = 6


def bundle(*, status: str = "active", revoked: tuple[str, ...] = (), review: int = 60) -> dict[str, Any]:
    policy = change_policy()
    policy["spec"]["thresholds"] = {"review": review, "deny": 80}
    doc = manifest()
    return build_bundle(
        namespace="agents", agents=[{"name": AGENT, "status": status, "throttled": False, "version": 1,
                                     "digest": digest(doc), "doc": doc}],
        policies=[policy], catalogs=[], grants=[], revoked_handles=list(revoked), generated=now_ts())


def start(world: World, gateways: list[GatewayProcess], mount: Mount) -> GatewayProcess:
    work = world.state.parent / "gateway-state"
    replica = GatewayProcess(work, "gw-bundle", ["--bundle", str(mount.directory), "--secrets", str(secrets_dir(world)),
                                                 "--config", str(world.config)]).start()
    gateways.append(replica)
    return replica


def test_reloads_under_load_drop_nothing_and_apply_within_a_second(
        world: World, gateways: list[GatewayProcess], servicenow: upstreams.Upstream) -> None:
    mount = Mount(world.state.parent / "bundle")
    mount.publish(bundle_bytes(bundle()))
    gateway = start(world, gateways, mount)
    host, port = gateway.url.removeprefix("http://").split(":")
    statuses: Counter[int] = Counter()
    done = [0]
    lock = threading.Lock()

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Authorization": f"Bearer {world.tokens['servicenow']}", "Content-Type": "application/json"}
        try:
            for i in range(index, CALLS, WORKERS):
                body = orjson.dumps({"action": "servicenow.change.read", "payload": {"sys_id": "chg-1"},
                                     "session": f"load-{i}"})
                conn.request("POST", "/v1/calls", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                with lock:
                    statuses[response.status] += 1
                    done[0] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    revisions = []
    for step in range(5):
        seen = done[0]
        until(lambda seen=seen: done[0] >= min(CALLS, seen + 40), 30.0, "load progress")
        fresh = bundle(review=61 + step)
        revisions.append(fresh["revision"])
        mount.publish(bundle_bytes(fresh))
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    assert statuses == Counter({200: CALLS})
    until(lambda: request(gateway.url, "GET", "/readyz")[2].decode() == f"ready: bundle {revisions[-1]}\n", 1.0,
          "the last revision is enforced")

    sn = Connector("servicenow", gateway=gateway.url, handle=world.tokens["servicenow"])
    mount.publish(bundle_bytes(bundle(status="suspended")))

    def suspended() -> bool:
        try:
            sn.call("change.read", {"sys_id": "chg-1"})
        except CallDenied as exc:
            return exc.reason == "agent-suspended"
        return False

    assert until(suspended, 1.0, "suspension from the bundle") < 1.0
    mount.publish(bundle_bytes(bundle(revoked=(world.handle_ids["servicenow"],))))

    def revoked() -> bool:
        try:
            sn.call("change.read", {"sys_id": "chg-1"})
        except HandleRefused as exc:
            return exc.reason == "revoked"
        except CallDenied:
            return False
        return False

    assert until(revoked, 1.0, "revocation from the bundle") < 1.0


def test_no_valid_bundle_refuses_everything(world: World, gateways: list[GatewayProcess]) -> None:
    mount = Mount(world.state.parent / "bundle")
    mount.publish(bundle_bytes(bundle()))
    gateway = start(world, gateways, mount)
    sn = Connector("servicenow", gateway=gateway.url, handle=world.tokens["servicenow"])
    assert sn.call("change.read", {"sys_id": "chg-1"}).status == 200
    tampered = bundle()
    tampered["agents"][0]["doc"]["spec"]["connectors"][0]["actions"].append("servicenow.change.delete")
    mount.publish(bundle_bytes(tampered))

    def refused() -> bool:
        status, headers, _ = request(gateway.url, "POST", "/v1/calls", token=world.tokens["servicenow"],
                                     body={"action": "servicenow.change.read", "payload": {"sys_id": "chg-1"}})
        return (status, headers.get("arx-error")) == (503, "no-enforcement-state")

    until(refused, 1.0, "a tampered bundle refuses every call")
    status, _, body = request(gateway.url, "GET", "/readyz")
    assert (status, body.decode()) == (503, (
        f"not ready: BundleError: {mount.directory / 'bundle.json'}: revision {tampered['revision']!r} does not "
        f"match its content ({bundle_revision(tampered)}): the bundle was altered or truncated\n"))
    mount.publish(bundle_bytes(bundle()))
    until(lambda: request(gateway.url, "GET", "/readyz")[0] == 200, 2.0, "a good bundle again")
    assert sn.call("change.read", {"sys_id": "chg-1"}).status == 200
