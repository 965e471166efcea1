"""One gateway process in front of loopback ServiceNow and Slack: allowed calls carry the platform's credential,
errors come back as the APIs sent them, denials and refused handles never leave, and every call is recorded."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import orjson
import pytest

from arxctl.clock import now
from arxctl.registry import handles
from arxctl.sdk import CallDenied, Connector, GatewayError, HandleRefused
from arxctl.store.sqlite import Store
from tests.gateway import upstreams
from tests.gateway.helpers import AGENT, GatewayProcess, World, free_port, replica_records, request, until

VOLATILE = ("decision_id", "ts", "payload_digest", "policy_revision")


def stable(body: dict[str, Any]) -> dict[str, Any]:
    """A decision record without the fields that differ per run (ids, times, latencies)."""
    out = {k: v for k, v in body.items() if k not in VOLATILE}
    if "gateway" in out:
        out["gateway"] = {k: v for k, v in out["gateway"].items() if k not in ("latency_ms", "downstream_ms",
                                                                              "handle")}
    return out


def connector(world: World, gateway: GatewayProcess, name: str) -> Connector:
    return Connector(name, gateway=gateway.url, handle=world.tokens[name], session="s-1")


def test_allowed_call_uses_the_platform_credential_and_is_recorded(
        world: World, gateway: GatewayProcess, servicenow: upstreams.Upstream) -> None:
    result = connector(world, gateway, "servicenow").call("change.read", {"sys_id": "chg-1"})
    assert (result.status, result.json()) == (200, {"result": servicenow.records["chg-1"]})
    assert result.headers["arx-verdict"] == "ALLOW"
    assert result.headers["cache-control"] == "no-store"
    seen = servicenow.requests()
    assert [(s.method, s.path, s.authorization) for s in seen] == [
        ("GET", "/api/now/table/change_request/chg-1",
         "Basic " + base64.b64encode(b"svc-arx:sn-pass-0001").decode())]
    [record] = replica_records(world.state, "gw-a")
    assert (record["type"], record["agent"], record["actor"], record["seq"]) == ("decision", AGENT, "gateway/gw-a", 1)
    assert record["body"]["decision_id"] == result.decision_id
    assert stable(record["body"]) == {
        "action": "servicenow.change.read", "agent": AGENT, "data_class": "confidential", "matched": [],
        "message": "score 41 < review threshold 60", "operation": "read", "reason": "threshold", "rules": [],
        "score": {"connector": 16, "frequency": 0, "operation": 5, "target": 20, "total": 41}, "session": "s-1",
        "session_count": 1, "target": {"env": "prod", "system": "servicenow-prod"},
        "thresholds": {"deny": 80, "review": 60}, "verdict": "ALLOW",
        "gateway": {"connector": "servicenow", "outcome": "executed", "replica": "gw-a",
                    "downstream": {"error": None, "ok": True, "requests": 1, "status": 200}},
    }
    assert record["body"]["gateway"]["handle"] == world.handle_ids["servicenow"]
    assert record["body"]["gateway"]["latency_ms"] >= record["body"]["gateway"]["downstream_ms"] > 0
    assert b"sn-pass-0001" not in (world.state / "gateway" / "gw-a" / "state.db").read_bytes()


def test_servicenow_error_body_comes_back_as_sent(world: World, gateway: GatewayProcess) -> None:
    result = connector(world, gateway, "servicenow").call("change.read", {"sys_id": "chg-404"})
    assert (result.status, result.json()) == (404, upstreams.SN_NOT_FOUND)
    assert result.headers["arx-verdict"] == "ALLOW"
    [record] = replica_records(world.state, "gw-a")
    assert record["body"]["gateway"]["downstream"] == {"error": "No Record found", "ok": False, "requests": 1,
                                                       "status": 404}


def test_slack_error_in_a_200_is_passed_through_and_recorded_as_an_error(
        world: World, gateway: GatewayProcess, slack: upstreams.Upstream) -> None:
    chat = connector(world, gateway, "slack")
    missing = chat.call("chat.post", {"channel": "C0NOPE", "text": "triage done"})
    assert (missing.status, missing.json()) == (200, {"ok": False, "error": "channel_not_found"})
    posted = chat.call("chat.post", {"channel": "C0SECOPS", "text": "triage done"})
    assert posted.json()["ok"] is True
    assert [s.body for s in slack.requests()] == [{"channel": "C0NOPE", "text": "triage done"},
                                                  {"channel": "C0SECOPS", "text": "triage done"}]
    outcomes = [r["body"]["gateway"]["downstream"] for r in replica_records(world.state, "gw-a")]
    assert outcomes == [{"error": "channel_not_found", "ok": False, "requests": 1, "status": 200},
                        {"error": None, "ok": True, "requests": 1, "status": 200}]


def test_undeclared_action_is_denied_at_the_gateway_and_never_sent(
        world: World, gateway: GatewayProcess, servicenow: upstreams.Upstream) -> None:
    with pytest.raises(CallDenied) as denied:
        connector(world, gateway, "servicenow").call("change.delete", {"sys_id": "chg-1"})
    decision = denied.value.decision
    assert (decision["verdict"], decision["reason"], decision["score"]) == ("DENY", "not-in-manifest",
                                                                            {"connector": 0, "fixed": 100,
                                                                             "frequency": 0, "operation": 0,
                                                                             "target": 0, "total": 100})
    assert servicenow.requests() == []
    [record] = replica_records(world.state, "gw-a")
    assert record["body"]["gateway"]["outcome"] == "denied"
    assert record["body"]["gateway"]["downstream"] is None


def _refusal(gateway: GatewayProcess, token: str | None, action: str = "servicenow.change.read") -> tuple[int, Any]:
    status, headers, body = request(gateway.url, "POST", "/v1/calls", token=token,
                                    body={"action": action, "payload": {"sys_id": "chg-1"}, "session": "s-1"})
    return status, (headers.get("arx-error"), orjson.loads(body)["error"]["reason"])


def test_expired_forged_and_foreign_handles_are_refused(
        world: World, gateway: GatewayProcess, servicenow: upstreams.Upstream) -> None:
    with Store(world.state) as store:
        _, expired = handles.issue(store, agent=AGENT, connector="servicenow", actor="tester", reason="old",
                                   ttl="15m", at=now() - timedelta(minutes=16))
    prefix, payload, mac = world.tokens["servicenow"].split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["agent"] = "pr-reviewer"
    swapped = base64.urlsafe_b64encode(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS)).rstrip(b"=").decode()
    assert _refusal(gateway, expired) == (401, ("handle-refused", "expired"))
    assert _refusal(gateway, f"{prefix}.{swapped}.{mac}") == (401, ("handle-refused", "bad-signature"))
    assert _refusal(gateway, f"{prefix}.{payload}.{'A' * len(mac)}") == (401, ("handle-refused", "bad-signature"))
    assert _refusal(gateway, "not-a-handle") == (401, ("handle-refused", "malformed"))
    assert _refusal(gateway, None) == (401, ("handle-refused", "missing"))
    assert _refusal(gateway, world.tokens["slack"]) == (403, ("wrong-connector", "wrong-connector"))
    assert servicenow.requests() == []
    refused = replica_records(world.state, "gw-a", "call.refused")
    assert [(r["agent"], r["body"]["reason"], r["body"]["handle"]) for r in refused] == [
        (AGENT, "expired", refused[0]["body"]["handle"]), (None, "bad-signature", None), (None, "bad-signature", None),
        (None, "malformed", None), (None, "missing", None), (AGENT, "wrong-connector", world.handle_ids["slack"])]
    with pytest.raises(HandleRefused) as refusal:
        Connector("servicenow", gateway=gateway.url, handle=expired).call("change.read", {"sys_id": "chg-1"})
    assert (refusal.value.status, refusal.value.reason) == (401, "expired")


def test_revocation_takes_effect_within_a_second(world: World, gateway: GatewayProcess) -> None:
    sn = connector(world, gateway, "servicenow")
    assert sn.call("change.read", {"sys_id": "chg-1"}).status == 200
    with Store(world.state) as store:
        handles.revoke(store, world.handle_ids["servicenow"], actor="tester", reason="token pasted in a ticket")

    def refused() -> bool:
        try:
            sn.call("change.read", {"sys_id": "chg-1"})
        except HandleRefused as exc:
            return exc.reason == "revoked"
        return False

    assert until(refused, 1.0, "revocation refused") < 1.0


def test_bad_requests_are_answered_with_the_problem(world: World, gateway: GatewayProcess) -> None:
    token = world.tokens["servicenow"]
    cases = [
        ({"action": "servicenow.change", "payload": {}}, "action must be connector.resource.verb, e.g. "
                                                         "servicenow.change.close"),
        ({"action": "servicenow.change.read", "payload": []}, "payload must be a JSON object"),
        ({"action": "servicenow.change.read", "payload": {}, "sesion": "x"},
         "unknown field 'sesion'; allowed: action, approval, payload, reasoning, session, target"),
    ]
    for body, message in cases:
        status, headers, data = request(gateway.url, "POST", "/v1/calls", token=token, body=body)
        assert (status, headers["arx-error"], orjson.loads(data)["error"]["message"]) == (400, "bad-request", message)
    status, _, data = request(gateway.url, "POST", "/v1/calls", token=token,
                              body={"action": "servicenow.change.read", "payload": {"sys_id": ".."}})
    assert (status, orjson.loads(data)["error"]["message"]) == (
        400, "payload.sys_id must not be empty or hold '.' or '..' segments")
    assert [r["body"]["gateway"]["outcome"] for r in replica_records(world.state, "gw-a")] == ["failed"]


def test_metrics_report_each_agent(world: World, gateway: GatewayProcess) -> None:
    sn = connector(world, gateway, "servicenow")
    sn.call("change.read", {"sys_id": "chg-1"})
    with pytest.raises(CallDenied):
        sn.call("change.delete", {"sys_id": "chg-1"})
    _refusal(gateway, "forged")
    status, headers, body = request(gateway.url, "GET", "/metrics")
    assert (status, headers["content-type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
    lines = body.decode().splitlines()
    for expected in (
        f'arx_gateway_calls_total{{agent="{AGENT}",verdict="ALLOW"}} 1',
        f'arx_gateway_calls_total{{agent="{AGENT}",verdict="DENY"}} 1',
        f'arx_gateway_undeclared_attempts_total{{agent="{AGENT}"}} 1',
        f'arx_gateway_agent_calls_per_minute{{agent="{AGENT}"}} 2',
        f'arx_gateway_agent_deny_ratio{{agent="{AGENT}"}} 0.5',
        'arx_gateway_refused_total{reason="malformed"} 1',
        'arx_gateway_state_ok{source="state"} 1',
        'arx_gateway_executed_total 1',
    ):
        assert expected in lines, expected
    assert [line for line in lines if line.startswith("arx_gateway_audit_records")] == [
        f'arx_gateway_audit_records{{log="{_log_id(world)}"}} 3']


def _log_id(world: World) -> str:
    return orjson.loads((world.state / "gateway" / "gw-a" / "replica.json").read_bytes())["log"]


def test_an_unreachable_connector_is_a_recorded_502(world: World, gateways: list[GatewayProcess]) -> None:
    config = world.state.parent / "unreachable.yaml"
    config.write_text(f"connectors:\n  servicenow: {{base_url: 'http://127.0.0.1:{free_port()}'}}\n")
    gateway = GatewayProcess(world.state, "gw-down", ["--config", str(config)]).start()
    gateways.append(gateway)
    with pytest.raises(GatewayError) as failed:
        connector(world, gateway, "servicenow").call("change.read", {"sys_id": "chg-1"})
    assert (failed.value.status, failed.value.code, failed.value.message) == (
        502, "downstream-unreachable", "servicenow could not be reached: ClientConnectorError")
    assert failed.value.decision is not None and failed.value.decision["verdict"] == "ALLOW"
    [record] = replica_records(world.state, "gw-down")
    assert (record["body"]["gateway"]["outcome"], record["body"]["gateway"]["downstream"]) == (
        "failed", {"status": 502, "ok": False, "error": "downstream-unreachable", "requests": 0})
