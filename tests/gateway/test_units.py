"""The gateway's pure parts: request parsing, health counters and their Prometheus text, merging replica
reports, what an approver is shown, and the SDK's configuration errors."""

from __future__ import annotations

import pytest

from arxctl.gateway.approvals import blast_radius, clean_reasoning
from arxctl.gateway.calls import MAX_REQUEST_BYTES, BadRequest, CallRequest, parse_call
from arxctl.gateway.drivers.base import Current
from arxctl.gateway.health import Health, merge_reports
from arxctl.policy.engine import decide
from arxctl.sdk import Connector
from tests.policy.helpers import call, state


def test_a_well_formed_call_is_read_whole() -> None:
    body = (b'{"action":"servicenow.change.close","payload":{"change_ids":["CHG1"]},"session":"s-1",'
            b'"target":{"env":"prod"},"reasoning":"dup","approval":"ap-1"}')
    assert parse_call(body) == CallRequest("servicenow.change.close", {"change_ids": ["CHG1"]}, "s-1",
                                           {"env": "prod"}, "dup", "ap-1")
    assert parse_call(b'{"action":"slack.chat.post"}') == CallRequest("slack.chat.post", {})


@pytest.mark.parametrize(("body", "message"), [
    (b'{"action": "slack.chat.post",', "body:1:30: not valid JSON: unexpected end of data"),
    (b"[]", "the body must be a JSON object"),
    (b'{"action":"slack.chat.post","target":{"region":"eu"}}',
     "target must be an object with string fields system and env"),
    (b'{"action":"slack.chat.post","session":5}', "session must be a string of at most 256 characters"),
    (b'{"action":"slack.chat.post","reasoning":["a"]}', "reasoning must be a string"),
    (b'{"action":"slack.chat.post","approval":7}', "approval must be an approval id string"),
    (b" " * (MAX_REQUEST_BYTES + 1), f"the request body is larger than {MAX_REQUEST_BYTES} bytes"),
])
def test_malformed_calls_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as bad:
        parse_call(body)
    assert str(bad.value) == message


def test_health_counts_and_prometheus_text() -> None:
    engine = state()
    health = Health("gw-a")
    health.rebase(["triage-cs-01"])
    health.observe(decide(call("servicenow.change.read"), engine), 1000.0)
    health.observe(decide(call("servicenow.change.delete"), engine), 1010.0)
    health.observe(decide(call("servicenow.change.read", agent="ghost"), engine), 1020.0)
    health.refuse("expired")
    health.drifted("triage-cs-01", "high", "suspend", "suspended")
    text = health.prometheus([("arx_gateway_state_ok", "gauge", "State loaded.", 1, {"source": "state"})], at=1065.0)
    assert text.splitlines() == [
        "# HELP arx_gateway_calls_total Calls decided by this replica, by agent and verdict.",
        "# TYPE arx_gateway_calls_total counter",
        'arx_gateway_calls_total{agent="(unregistered)",verdict="ALLOW"} 0',
        'arx_gateway_calls_total{agent="(unregistered)",verdict="APPROVAL_REQUIRED"} 0',
        'arx_gateway_calls_total{agent="(unregistered)",verdict="DENY"} 1',
        'arx_gateway_calls_total{agent="triage-cs-01",verdict="ALLOW"} 1',
        'arx_gateway_calls_total{agent="triage-cs-01",verdict="APPROVAL_REQUIRED"} 0',
        'arx_gateway_calls_total{agent="triage-cs-01",verdict="DENY"} 1',
        "# HELP arx_gateway_undeclared_attempts_total Calls outside the agent's manifest (denied not-in-manifest).",
        "# TYPE arx_gateway_undeclared_attempts_total counter",
        'arx_gateway_undeclared_attempts_total{agent="(unregistered)"} 0',
        'arx_gateway_undeclared_attempts_total{agent="triage-cs-01"} 1',
        "# HELP arx_gateway_downstream_errors_total Allowed calls the downstream system answered with an error.",
        "# TYPE arx_gateway_downstream_errors_total counter",
        'arx_gateway_downstream_errors_total{agent="(unregistered)"} 0',
        'arx_gateway_downstream_errors_total{agent="triage-cs-01"} 0',
        "# HELP arx_gateway_agent_last_seen_timestamp_seconds When the agent's last call arrived.",
        "# TYPE arx_gateway_agent_last_seen_timestamp_seconds gauge",
        'arx_gateway_agent_last_seen_timestamp_seconds{agent="(unregistered)"} 1020.0',
        'arx_gateway_agent_last_seen_timestamp_seconds{agent="triage-cs-01"} 1010.0',
        "# HELP arx_gateway_agent_calls_per_minute The agent's calls in the last 60 seconds.",
        "# TYPE arx_gateway_agent_calls_per_minute gauge",
        'arx_gateway_agent_calls_per_minute{agent="(unregistered)"} 1',
        'arx_gateway_agent_calls_per_minute{agent="triage-cs-01"} 1',
        "# HELP arx_gateway_agent_deny_ratio Denied over all calls of the agent in the last 60 seconds.",
        "# TYPE arx_gateway_agent_deny_ratio gauge",
        'arx_gateway_agent_deny_ratio{agent="(unregistered)"} 1.0',
        'arx_gateway_agent_deny_ratio{agent="triage-cs-01"} 1.0',
        "# HELP arx_gateway_agent_drift_severity Live drift severity: 0 none, 1 low, 2 medium, 3 high, 4 critical.",
        "# TYPE arx_gateway_agent_drift_severity gauge",
        'arx_gateway_agent_drift_severity{agent="(unregistered)",response="none"} 0',
        'arx_gateway_agent_drift_severity{agent="triage-cs-01",response="suspend"} 3',
        "# HELP arx_gateway_refused_total Calls refused before a decision, by reason.",
        "# TYPE arx_gateway_refused_total counter",
        'arx_gateway_refused_total{reason="expired"} 1',
        "# HELP arx_gateway_state_ok State loaded.",
        "# TYPE arx_gateway_state_ok gauge",
        'arx_gateway_state_ok{source="state"} 1',
    ]


def test_replica_reports_merge_per_agent() -> None:
    def report(replica: str, ts: str, calls: int, per_minute: int, deny_rate: float, last_seen: str,
               drift: str | None) -> dict:
        return {"replica": replica, "ts": ts, "refused": {}, "agents": {"triage-cs-01": {
            "last_seen": last_seen, "calls_per_minute": per_minute, "deny_rate": deny_rate, "calls": calls,
            "denied": 1, "approvals": 0, "undeclared_attempts": 1, "downstream_errors": 0,
            "drift": {"severity": drift, "response": "suspend" if drift else None, "applied": None}}}}

    at = 1776160800.0
    merged = merge_reports([
        report("gw-a", "2026-04-14T10:00:00Z", 10, 4, 0.25, "2026-04-14T09:59:58Z", None),
        report("gw-b", "2026-04-14T09:59:30Z", 6, 6, 0.5, "2026-04-14T09:59:29Z", "high"),
        report("gw-c", "2026-04-14T09:50:00Z", 2, 2, 1.0, "2026-04-14T09:49:00Z", "low"),
    ], at=at)
    assert merged == {"triage-cs-01": {
        "last_seen": "2026-04-14T09:59:58Z", "calls_per_minute": 10, "deny_rate": 0.4, "calls": 18, "denied": 3,
        "approvals": 0, "undeclared_attempts": 3, "downstream_errors": 0,
        "drift": {"severity": "high", "response": "suspend", "applied": None},
        "replicas": ["gw-a", "gw-b", "gw-c"]}}


def test_what_an_approver_is_shown_besides_the_call() -> None:
    payload = {"change_ids": ["CHG1", "CHG2"], "api_token": "tok-5d41402abc4b", "note": "x"}
    reasoning = ("Closing CHG1 and CHG2 with tok-5d41402abc4b as told by "
                 "arxh1.eyJhZ2VudCI6InRyaWFnZSJ9.c2lnbmF0dXJlX2hlcmU")
    assert clean_reasoning(reasoning, payload) == "Closing CHG1 and CHG2 with *** as told by ***"
    assert clean_reasoning(None, payload) is None
    decision = decide(call("servicenow.change.close", payload=payload), state())
    assert blast_radius(decision, {"objects": 2, "object": "change request", "requests": 2},
                        Current(None, "unavailable: servicenow answered HTTP 404 (No Record found)")) == {
        "summary": "write on 2 change requests in servicenow-prod (prod, confidential data)", "objects": 2,
        "object": "change request", "requests": 2, "system": "servicenow-prod", "env": "prod", "operation": "write",
        "data_class": "confidential", "score": 56,
        "current_state": "unavailable: servicenow answered HTTP 404 (No Record found)"}
    assert blast_radius(decision, {"objects": 1, "object": "policy", "requests": 1}, Current({}, "fetched"))[
        "summary"] == "write on 1 policy in servicenow-prod (prod, confidential data)"
    assert blast_radius(decision, {"objects": 3, "object": "policy", "requests": 1}, Current({}, "fetched"))[
        "summary"] == "write on 3 policies in servicenow-prod (prod, confidential data)"


def test_sdk_needs_a_gateway_and_a_handle(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ARX_GATEWAY_URL", "ARX_HANDLE", "ARX_HANDLE_SERVICENOW"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError) as missing:
        Connector("servicenow", handle="arxh1.a.b")
    assert str(missing.value) == "no gateway URL: pass gateway= or set ARX_GATEWAY_URL"
    monkeypatch.setenv("ARX_GATEWAY_URL", "http://127.0.0.1:9")
    with pytest.raises(ValueError) as missing:
        Connector("servicenow")
    assert str(missing.value) == "no handle for servicenow: pass handle= or set ARX_HANDLE"
    monkeypatch.setenv("ARX_HANDLE_SERVICENOW", "arxh1.a.b")
    sn = Connector("servicenow")
    assert (sn._action("change.close"), sn._action("servicenow.change.close"), sn._token()) == (
        "servicenow.change.close", "servicenow.change.close", "arxh1.a.b")
    with pytest.raises(ValueError) as bad:
        Connector("servicenow", gateway="ftp://gw", handle="t")
    assert str(bad.value) == "gateway URL 'ftp://gw' must be http(s)://host[:port]"
