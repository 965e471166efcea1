"""Approval gates: pending approvals bound to the exact call, segregation of duties, timeouts, use once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from arxctl.clock import parse_ts
from arxctl.errors import InputError
from arxctl.policy.engine import Call
from arxctl.policy.masking import payload_digest
from arxctl.policy.state import record_call
from arxctl.registry import approvals, lifecycle
from arxctl.registry import config as project
from arxctl.registry.config import NotPermitted
from tests.lifecycle.helpers import T0, assert_verifies, bodies, fails, populated, types

START = parse_ts(T0)
CLOSE = "servicenow.change.close"
PAYLOAD = {"change_ids": ["CHG1", "CHG2"], "api_token": "s3cr3t-value", "note": "bulk"}


@pytest.fixture
def store(tmp_path: Path):
    s = populated(tmp_path / "state")
    yield s
    s.close()


def _call(minutes: float = 0, payload: dict | None = None, agent: str = "triage-cs-01", action: str = CLOSE) -> Call:
    return Call(ts=START + timedelta(minutes=minutes), agent=agent, action=action,
                payload=PAYLOAD if payload is None else payload, session="s-1")


def test_pending_approval_is_bound_to_the_call_and_masked(store) -> None:
    current = {"change_ids": ["CHG1"], "api_token": "old-secret", "note": "bulk"}
    first = record_call(store, _call(), actor="ops-bot", current_state=current)
    assert (first.decision.verdict, first.decision.reason, first.approval_created) == (
        "APPROVAL_REQUIRED", "rule", True)
    a = first.approval
    assert a is not None
    assert a.to_dict(START) == {
        "id": a.id, "agent": "triage-cs-01", "action": CLOSE, "session": "s-1",
        "target": {"system": "servicenow-prod", "env": "prod"},
        "payload": {"change_ids": ["CHG1", "CHG2"], "api_token": "***", "note": "bulk"},
        "payload_digest": payload_digest(PAYLOAD),
        "diff": [{"op": "replace", "path": "$.change_ids", "old": ["CHG1"], "new": ["CHG1", "CHG2"]}],
        "policy": "change-control", "rule": "change-close-over-one", "severity": "high", "group": "secops-leads",
        "timeout": "4h", "requested_by": "ops-bot", "requested_at": T0, "expires_at": "2026-04-14T14:00:00Z",
        "status": "pending", "decided_by": None, "decided_at": None, "comment": None, "usable_until": None,
        "consumed_at": None, "decision_id": first.decision.id, "decision_seq": first.seq, "consumed_decision": None,
    }
    again = record_call(store, _call(1), actor="ops-bot")
    assert (again.approval.id, again.approval_created) == (a.id, False)
    requested = bodies(store, "approval.requested")
    assert len(requested) == 1
    assert "s3cr3t-value" not in str(requested) and "old-secret" not in str(requested)
    assert requested[0]["payload_digest"] == payload_digest(PAYLOAD)
    assert_verifies(store)


def test_approve_authorizes_the_exact_call_once(store) -> None:
    config = project.load(store.directory)
    a = record_call(store, _call(), actor="ops-bot").approval
    fails(NotPermitted, f"'ops-bot' requested approval '{a.id}' and cannot approve it (segregation of duties)",
          approvals.approve, store, a.id, actor="ops-bot", config=project.ProjectConfig(
              groups={"secops-leads": frozenset({"ops-bot"})}), at=START)
    fails(NotPermitted, "agent 'triage-cs-01' cannot approve its own call (segregation of duties)",
          approvals.approve, store, a.id, actor="triage-cs-01", config=config, at=START)
    fails(NotPermitted, f"'priya' may not approve approval '{a.id}': not a member of group 'secops-leads'",
          approvals.approve, store, a.id, actor="priya", config=config, at=START)
    approved = approvals.approve(store, a.id, actor="alice", config=config, comment="checked both tickets",
                                 at=START + timedelta(minutes=5))
    assert (approved.status, approved.decided_by, approved.usable_until) == ("approved", "alice",
                                                                             "2026-04-14T14:05:00Z")
    other = record_call(store, _call(6, {**PAYLOAD, "note": "changed"}), actor="ops-bot")
    assert (other.decision.verdict, other.consumed) == ("APPROVAL_REQUIRED", None)
    used = record_call(store, _call(7), actor="ops-bot")
    assert (used.decision.verdict, used.decision.reason, used.decision.approval_id, used.consumed) == (
        "ALLOW", "approval", a.id, a.id)
    assert used.decision.to_record()["approval_id"] == a.id
    assert approvals.get(store, a.id).status == "consumed"
    once_more = record_call(store, _call(8), actor="ops-bot")
    assert (once_more.decision.verdict, once_more.approval_created) == ("APPROVAL_REQUIRED", True)
    assert types(store, "triage-cs-01")[1:] == [
        "decision", "approval.requested", "approval.approved", "decision", "approval.requested", "decision",
        "approval.consumed", "decision", "approval.requested"]
    assert_verifies(store)


def test_silence_is_not_consent(store) -> None:
    config = project.load(store.directory)
    a = record_call(store, _call(), actor="ops-bot").approval
    late = START + timedelta(hours=4)
    fails(InputError, f"approval '{a.id}' expired at 2026-04-14T14:00:00Z without an answer and was declined "
          "(silence is not consent)", approvals.approve, store, a.id, actor="alice", config=config, at=late)
    assert approvals.get(store, a.id).status == "expired"
    assert bodies(store, "approval.expired") == [{
        "id": a.id, "decision_id": a.decision_id, "was": "pending",
        "reason": "no answer inside the timeout: declined (silence is not consent)",
        "expired_at": "2026-04-14T14:00:00Z"}]
    assert approvals.expire_due(store, actor="cron", at=late + timedelta(hours=1)) == []


def test_approved_but_unused_lapses(store) -> None:
    config = project.load(store.directory)
    a = record_call(store, _call(), actor="ops-bot").approval
    approvals.approve(store, a.id, actor="bob", config=config, at=START)
    assert approvals.expire_due(store, actor="cron", at=START + timedelta(hours=4)) == [a.id]
    late = record_call(store, _call(241), actor="ops-bot")
    assert (late.decision.verdict, late.consumed) == ("APPROVAL_REQUIRED", None)


def test_an_approval_never_lifts_a_deny(store) -> None:
    config = project.load(store.directory)
    a = record_call(store, _call(), actor="ops-bot").approval
    approvals.approve(store, a.id, actor="bob", config=config, at=START)
    lifecycle.suspend(store, "triage-cs-01", actor="ops", reason="incident", ts=T0)
    denied = record_call(store, _call(1), actor="ops-bot", approval_id=a.id)
    assert (denied.decision.verdict, denied.decision.reason, denied.consumed) == ("DENY", "agent-suspended", None)
    assert approvals.get(store, a.id).status == "approved"


def test_named_approval_must_match(store) -> None:
    config = project.load(store.directory)
    a = record_call(store, _call(), actor="ops-bot").approval
    fails(InputError, f"approval '{a.id}' is pending, not approved", record_call, store, _call(1), actor="ops-bot",
          approval_id=a.id)
    approvals.approve(store, a.id, actor="bob", config=config, at=START)
    fails(InputError, f"approval '{a.id}' was approved for a different payload ({payload_digest(PAYLOAD)})",
          record_call, store, _call(1, {"change_ids": ["X", "Y"]}), actor="ops-bot", approval_id=a.id)
    fails(InputError, f"approval '{a.id}' is for triage-cs-01 {CLOSE}, not triage-cs-02 {CLOSE}",
          record_call, store, _call(1, agent="triage-cs-02"), actor="ops-bot", approval_id=a.id)
    assert record_call(store, _call(1), actor="ops-bot", approval_id=a.id).consumed == a.id


def test_threshold_and_throttle_approvals_use_the_config_defaults(store) -> None:
    lifecycle.throttle(store, "triage-cs-02", actor="drift", reason="rate", source="drift", ts=T0)
    r = record_call(store, _call(payload={"change_ids": ["C1"]}, agent="triage-cs-02"), actor="ops-bot")
    assert (r.decision.reason, r.approval.group, r.approval.timeout, r.approval.expires_at, r.approval.rule) == (
        "throttled", "secops-leads", "30m", "2026-04-14T10:30:00Z", None)
    fails(NotPermitted, f"'carol' may not deny approval '{r.approval.id}': group 'secops-leads' is not defined "
          "under `groups` in the project config", approvals.deny, store, r.approval.id, actor="carol",
          config=project.ProjectConfig(), at=START)
    denied = approvals.deny(store, r.approval.id, actor="alice", config=project.load(store.directory),
                            comment="no writes while throttled", at=START)
    assert (denied.status, denied.comment) == ("denied", "no writes while throttled")
    listed = approvals.list_approvals(store, at=START, group="secops-leads")
    assert [(x.id, x.effective_status(START)) for x in listed] == [(r.approval.id, "denied")]


def test_without_a_config_nobody_can_approve(store) -> None:
    (store.directory / "config.yaml").unlink()
    lifecycle.throttle(store, "triage-cs-02", actor="drift", reason="rate", source="drift", ts=T0)
    r = record_call(store, _call(payload={"change_ids": ["C1"]}, agent="triage-cs-02"), actor="ops-bot")
    assert (r.decision.verdict, r.decision.reason, r.approval.group, r.approval.timeout) == (
        "APPROVAL_REQUIRED", "throttled", None, "1h")
    fails(NotPermitted, f"'alice' may not approve approval '{r.approval.id}': no approver group is set (set "
          "approvals.default_group in the project config)", approvals.approve, store, r.approval.id, actor="alice",
          config=project.load(store.directory), at=START)
