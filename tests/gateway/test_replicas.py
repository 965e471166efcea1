"""Several replicas on one state: each appends to its own chain; a suspension (by a person or by live drift)
reaches every replica within a second; decommissioning invalidates handles in flight; the logs verify together."""

from __future__ import annotations

import time

import orjson
import pytest

from arxctl.chain import keys
from arxctl.chain.export import export
from arxctl.chain.verify import verify_chain_set
from arxctl.chain.witness import FileWitness
from arxctl.errors import StateError
from arxctl.gateway.audit import ReplicaLog
from arxctl.registry import config as project
from arxctl.registry import lifecycle
from arxctl.registry.decommission import decommission
from arxctl.sdk import CallDenied, Connector, HandleRefused
from arxctl.store.sqlite import Store
from tests.gateway import upstreams
from tests.gateway.helpers import AGENT, GatewayProcess, World, main_records, replica_records, until


def _denied_as(gateway: GatewayProcess, world: World, reason: str) -> bool:
    try:
        Connector("servicenow", gateway=gateway.url, handle=world.tokens["servicenow"]).call(
            "change.read", {"sys_id": "chg-1"})
    except CallDenied as exc:
        return exc.reason == reason and exc.score == 100
    return False


def _allowed(gateway: GatewayProcess, world: World) -> bool:
    try:
        return Connector("servicenow", gateway=gateway.url, handle=world.tokens["servicenow"]).call(
            "change.read", {"sys_id": "chg-1"}).status == 200
    except CallDenied:
        return False


def test_suspensions_reach_every_replica_and_the_logs_verify_together(
        cli, world: World, gateways: list[GatewayProcess], servicenow: upstreams.Upstream) -> None:
    with Store(world.state) as store, store.transaction() as conn:
        keys.generate(conn, world.state, key_id="gateway-test")
    witness = world.state.parent / "witness"
    args = ["--config", str(world.config), "--witness", witness.as_uri(), "--publish-every", "1h"]
    a = GatewayProcess(world.state, "gw-a", args).start()
    gateways.append(a)
    b = GatewayProcess(world.state, "gw-b", args).start()
    gateways.append(b)
    assert _allowed(a, world) and _allowed(b, world)

    with Store(world.state) as store:
        lifecycle.suspend(store, AGENT, actor="secops-oncall", reason="closing tickets outside its queue")
    started = time.monotonic()
    until(lambda: _denied_as(a, world, "agent-suspended") and _denied_as(b, world, "agent-suspended"), 1.0,
          "suspension on both replicas")
    assert time.monotonic() - started < 1.0
    with Store(world.state) as store:
        lifecycle.reactivate(store, AGENT, actor="carol", reason="queue filter fixed",
                             config=project.load(world.state))
    until(lambda: _allowed(a, world) and _allowed(b, world), 1.0, "reactivation on both replicas")

    with pytest.raises(CallDenied):
        Connector("servicenow", gateway=a.url, handle=world.tokens["servicenow"]).call(
            "change.delete", {"sys_id": "chg-1"}, session="s-drift")
    until(lambda: _denied_as(b, world, "agent-suspended"), 3.0, "live drift suspension seen by the other replica")
    [suspended] = main_records(world.state, "agent.suspended")[-1:]
    assert (suspended["actor"], suspended["body"]["source"]) == ("gateway/gw-a", "drift")
    assert suspended["body"]["reason"].startswith("drift critical (drift-")
    assert servicenow.requests("DELETE") == []

    for g in (a, b):
        assert g.stop() == 0
    gateways.clear()
    logs = {r: orjson.loads((world.state / "gateway" / r / "replica.json").read_bytes())["log"]
            for r in ("gw-a", "gw-b")}
    assert logs["gw-a"] != logs["gw-b"]
    assert {r: {x["actor"] for x in replica_records(world.state, r)} for r in logs} == {
        "gw-a": {"gateway/gw-a"}, "gw-b": {"gateway/gw-b"}}
    exports = []
    for replica in ("gw-a", "gw-b"):
        with Store(world.state / "gateway" / replica) as store:
            path = world.state.parent / f"{replica}.ndjson.gz"
            export(store, path, keys.signer(store.conn, store.directory))
            exports.append(path)
    public = world.state.parent / "keys.json"
    with Store(world.state) as store:
        public.write_bytes(orjson.dumps(keys.export_public(store.conn)))
    together = verify_chain_set(exports, FileWitness(witness), public, complete=True)
    assert together.ok, together.to_dict()
    assert together.records == sum(len(replica_records(world.state, r)) for r in logs)
    missing = verify_chain_set(exports[:1], FileWitness(witness), public, complete=True)
    assert [p.to_dict() for p in missing.problems] == [{
        "seq": None, "kind": "log_missing",
        "detail": f"the witness holds checkpoints of log {logs['gw-b']}, but no export of it was given"}]
    twice = verify_chain_set([exports[0], exports[0]], FileWitness(witness), public)
    assert [p.kind for p in twice.problems] == ["duplicate_log"]
    shown = cli("gateway", "verify", "--export", str(exports[0]), "--export", str(exports[1]), "--witness",
                witness.as_uri(), "--public-key", str(public), "--complete")
    sizes = {r: len(replica_records(world.state, r)) for r in logs}
    assert (shown.exit_code, shown.stdout.splitlines()) == (0, [
        f"ok   log {logs['gw-a']}  {exports[0]}  {sizes['gw-a']} records",
        f"ok   log {logs['gw-b']}  {exports[1]}  {sizes['gw-b']} records",
        f"ok: 2 logs, {sum(sizes.values())} records"])
    partial = cli("gateway", "verify", "--export", str(exports[0]), "--witness", witness.as_uri(), "--public-key",
                  str(public), "--complete", "--format", "json")
    assert (partial.exit_code, orjson.loads(partial.stdout)["problems"]) == (1, [p.to_dict() for p in missing.problems])


def test_a_replica_id_runs_once(world: World) -> None:
    first = ReplicaLog(world.state, "gw-a")
    try:
        with pytest.raises(StateError) as taken:
            ReplicaLog(world.state, "gw-a")
        assert str(taken.value) == (f"replica 'gw-a' is already running on {world.state / 'gateway' / 'gw-a'} "
                                    "(each replica needs its own --replica-id)")
    finally:
        first.close()
    ReplicaLog(world.state, "gw-a").close()


def test_decommission_invalidates_handles_in_flight(world: World, gateway: GatewayProcess) -> None:
    sn = Connector("servicenow", gateway=gateway.url, handle=world.tokens["servicenow"])
    assert sn.call("change.read", {"sys_id": "chg-1"}).status == 200
    with Store(world.state) as store:
        decommission(store, AGENT, actor="dana", reason="replaced by triage-cs-02", retention_class="standard-1yr",
                     config=project.load(world.state))

    def refused() -> bool:
        try:
            sn.call("change.read", {"sys_id": "chg-1"})
        except HandleRefused as exc:
            return exc.reason == "revoked"
        return False

    assert until(refused, 1.0, "decommissioned agent's handle refused") < 1.0
    last = replica_records(world.state, "gw-a", "call.refused")[-1]
    assert (last["agent"], last["body"]["agent"], last["body"]["reason"]) == (None, AGENT, "revoked")
