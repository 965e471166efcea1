"""Approvals through the gateway, end to end: the approver sees the masked payload, the diff against ServiceNow's
current record, the reasoning and the blast radius; once approved, exactly that payload runs, once; silence
declines."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest

from arxctl.clock import now
from arxctl.gateway.approvals import context
from arxctl.registry import approvals
from arxctl.registry import config as project
from arxctl.sdk import ApprovalDenied, ApprovalTimeout, Connector
from arxctl.store.sqlite import Store
from tests.gateway import upstreams
from tests.gateway.helpers import AGENT, GatewayProcess, World, main_records, replica_records, request, until

CLOSE = {"change_ids": ["chg-1", "chg-2"], "close_code": "Duplicate", "close_notes": "dup of CHG0007",
         "api_token": "tok-5d41402abc4b"}
REASONING = "Both tickets duplicate CHG0007 (checked with tok-5d41402abc4b); closing them per runbook RB-12."


class Background:
    """An SDK call running in a thread, so the test can answer its approval meanwhile."""

    def __init__(self, fn: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Any) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self, deadline_s: float = 30.0) -> Any:
        self.thread.join(deadline_s)
        assert not self.thread.is_alive(), "the SDK call did not finish"
        return self.result


def pending(world: World) -> list[approvals.ApprovalRecord]:
    with Store(world.state) as store:
        return approvals.list_approvals(store, at=now(), status="pending")


def sdk(world: World, gateway: GatewayProcess) -> Connector:
    return Connector("servicenow", gateway=gateway.url, handle=world.tokens["servicenow"], session="s-9",
                     poll_interval=0.05)


def test_approved_call_runs_exactly_once_with_the_approved_payload(
        world: World, gateway: GatewayProcess, servicenow: upstreams.Upstream) -> None:
    call = Background(lambda: sdk(world, gateway).call("change.close", CLOSE, reasoning=REASONING,
                                                       approval_timeout=60))
    until(lambda: len(pending(world)) == 1, 10, "approval opened")
    [opened] = pending(world)
    assert [(s.method, s.path) for s in servicenow.requests()] == [
        ("GET", "/api/now/table/change_request/chg-1"), ("GET", "/api/now/table/change_request/chg-2")]
    with Store(world.state) as store:
        shown = approvals.get(store, opened.id).to_dict(now())
        seen = context(store.conn, opened.id)
    assert (shown["payload"], shown["group"], shown["rule"], shown["requested_by"]) == (
        {**CLOSE, "api_token": "***"}, "secops-leads", "change-close-over-one", AGENT)
    assert shown["diff"] == [
        {"op": "add", "path": "$.api_token", "new": "***"},
        {"op": "replace", "path": "$.close_code", "old": "", "new": "Duplicate"},
        {"op": "replace", "path": "$.close_notes", "old": "", "new": "dup of CHG0007"},
    ]
    assert seen == {
        "reasoning": "Both tickets duplicate CHG0007 (checked with ***); closing them per runbook RB-12.",
        "blast_radius": {"summary": "write on 2 change requests in servicenow-prod (prod, confidential data)",
                         "objects": 2, "object": "change request", "requests": 2, "system": "servicenow-prod",
                         "env": "prod", "operation": "write", "data_class": "confidential", "score": 56,
                         "current_state": "fetched"},
        "replica": "gateway/gw-a", "handle": world.handle_ids["servicenow"], "decision_id": opened.decision_id,
    }
    with Store(world.state) as store:
        approvals.approve(store, opened.id, actor="alice", config=project.load(world.state), comment="verified")
    result = call.join()
    assert call.error is None
    assert result.status == 200
    assert [(r["item"], r["status"], r["body"]["result"]["state"]) for r in result.json()["results"]] == [
        ("chg-1", 200, "3"), ("chg-2", 200, "3")]
    patches = servicenow.requests("PATCH")
    assert [(s.path, s.body) for s in patches] == [
        (f"/api/now/table/change_request/{sid}", {"close_code": "Duplicate", "close_notes": "dup of CHG0007",
                                                  "api_token": "tok-5d41402abc4b", "state": "3"})
        for sid in ("chg-1", "chg-2")]
    decisions = replica_records(world.state, "gw-a", "decision")
    assert [(d["body"]["verdict"], d["body"]["reason"], d["body"]["gateway"]["outcome"],
             d["body"]["gateway"].get("approval")) for d in decisions] == [
        ("APPROVAL_REQUIRED", "rule", "approval-pending", opened.id),
        ("ALLOW", "approval", "executed", opened.id)]
    assert decisions[1]["body"]["approval_id"] == opened.id
    assert [r["body"]["id"] for r in main_records(world.state, "approval.consumed")] == [opened.id]
    status, headers, body = request(gateway.url, "POST", "/v1/calls", token=world.tokens["servicenow"], body={
        "action": "servicenow.change.close", "payload": CLOSE, "session": "s-9", "approval": opened.id})
    assert (status, headers["arx-error"], orjson.loads(body)["error"]["message"]) == (
        409, "approval-unusable", f"approval '{opened.id}' is consumed, not approved")
    assert len(servicenow.requests("PATCH")) == 2


def test_approval_for_one_payload_does_not_cover_another(
        world: World, gateway: GatewayProcess, servicenow: upstreams.Upstream) -> None:
    held = Background(lambda: sdk(world, gateway).call("change.close", CLOSE, wait=False))
    held.join()
    [opened] = pending(world)
    with Store(world.state) as store:
        approvals.approve(store, opened.id, actor="bob", config=project.load(world.state))
    other = {**CLOSE, "change_ids": ["chg-1", "chg-2", "chg-3"]}
    status, headers, body = request(gateway.url, "POST", "/v1/calls", token=world.tokens["servicenow"], body={
        "action": "servicenow.change.close", "payload": other, "session": "s-9", "approval": opened.id})
    assert (status, headers["arx-error"]) == (409, "approval-unusable")
    assert orjson.loads(body)["error"]["message"].startswith(f"approval '{opened.id}' was approved for a different "
                                                             "payload (sha256:")
    assert servicenow.requests("PATCH") == []


def test_unanswered_approval_times_out_and_declines(
        world: World, gateway: GatewayProcess, servicenow: upstreams.Upstream) -> None:
    with pytest.raises(ApprovalTimeout) as timeout:
        sdk(world, gateway).call("change.update", {"sys_id": "chg-1", "state": "0"})
    assert timeout.value.approval["status"] == "expired"
    assert timeout.value.decision["verdict"] == "APPROVAL_REQUIRED"
    assert [(s.method, s.path) for s in servicenow.requests()] == [("GET", "/api/now/table/change_request/chg-1")]
    [expired] = main_records(world.state, "approval.expired")
    assert (expired["body"]["id"], expired["body"]["was"]) == (timeout.value.approval["id"], "pending")


def test_declined_approval_raises_with_who_declined(world: World, gateway: GatewayProcess,
                                                     servicenow: upstreams.Upstream) -> None:
    call = Background(lambda: sdk(world, gateway).call("change.close", CLOSE, approval_timeout=60))
    until(lambda: len(pending(world)) == 1, 10, "approval opened")
    [opened] = pending(world)
    with Store(world.state) as store:
        approvals.deny(store, opened.id, actor="bob", config=project.load(world.state), comment="close one by one")
    call.join()
    assert isinstance(call.error, ApprovalDenied)
    assert str(call.error) == f"approval {opened.id} was denied by bob: close one by one"
    assert servicenow.requests("PATCH") == []


def test_an_approval_that_cannot_be_opened_denies(world: World, gateway: GatewayProcess,
                                                  servicenow: upstreams.Upstream) -> None:
    (world.state / "config.yaml").write_text("groups: [alice]\n")
    status, headers, body = request(gateway.url, "POST", "/v1/calls", token=world.tokens["servicenow"], body={
        "action": "servicenow.change.close", "payload": CLOSE, "session": "s-9"})
    error = orjson.loads(body)["error"]
    assert (status, headers["arx-error"], headers["arx-verdict"]) == (403, "approval-unavailable", "APPROVAL_REQUIRED")
    assert error["message"] == ("the approval could not be opened, so the call is denied (fail closed): "
                                f"{world.state / 'config.yaml'}:1:9: ARX103 $.groups: expected a mapping, got list")
    assert servicenow.requests("PATCH") == []
    assert replica_records(world.state, "gw-a", "decision")[-1]["body"]["gateway"]["outcome"] == "no-approval-store"
