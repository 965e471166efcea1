"""Grants: request, approve, deny, revoke and expire, and how the engine honours them from timestamps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from arxctl.clock import parse_ts
from arxctl.errors import InputError, NotFoundError
from arxctl.policy.engine import Call, decide
from arxctl.policy.state import load_state
from arxctl.registry import config as project
from arxctl.registry import grants
from arxctl.registry import resources as registry
from arxctl.registry.config import NotPermitted
from tests.lifecycle.helpers import T0, assert_verifies, bodies, fails, populated, types

START = parse_ts(T0)
PUT = "aws.s3.put_bucket_acl"


@pytest.fixture
def store(tmp_path: Path):
    s = populated(tmp_path / "state")
    yield s
    s.close()


def _request(store, ttl: str = "15m", scope: dict | None = None, by: str = "triage-cs-01"):
    return grants.request(store, agent="triage-cs-01", actions=[PUT], scope={"bucket": "bank-logs"} if scope is None
                          else scope, ttl=ttl, reason="fix public ACL CSPM-1182", requested_by=by,
                          catalog=registry.catalog(store), at=START)


def _verdict(store, minutes: float, payload: dict | None = None) -> tuple[str, str]:
    call = Call(ts=START + timedelta(minutes=minutes), agent="triage-cs-01", action=PUT,
                payload={"bucket": "bank-logs"} if payload is None else payload)
    d = decide(call, load_state(store))
    return d.verdict, d.reason


def test_approved_grant_allows_its_scope_for_its_ttl_then_reverts(store) -> None:
    config = project.load(store.directory)
    g = _request(store)
    assert (g.phase, g.requested_by, g.scope, g.actions) == ("Pending", "triage-cs-01", {"bucket": "bank-logs"},
                                                              (PUT,))
    assert _verdict(store, 1) == ("DENY", "not-in-manifest")
    approved = grants.approve(store, g.id, actor="priya", config=config, comment="ok", at=START + timedelta(minutes=2))
    assert (approved.phase, approved.approved_at, approved.expires_at) == (
        "Approved", "2026-04-14T10:02:00Z", "2026-04-14T10:17:00Z")
    assert _verdict(store, 1) == ("DENY", "not-in-manifest")
    assert _verdict(store, 2) == ("ALLOW", "grant")
    assert _verdict(store, 16.99) == ("ALLOW", "grant")
    assert _verdict(store, 10, {"bucket": "other"}) == ("DENY", "not-in-manifest")
    assert _verdict(store, 17) == ("DENY", "not-in-manifest")
    assert grants.get(store, g.id).effective_phase(START + timedelta(minutes=17)) == "Expired"
    assert grants.expire(store, actor="cron", at=START + timedelta(minutes=16)) == []
    expired = grants.expire(store, actor="cron", at=START + timedelta(minutes=20))
    assert [x.id for x in expired] == [g.id]
    assert grants.expire(store, actor="cron", at=START + timedelta(minutes=30)) == []
    assert bodies(store, "grant.expired") == [{"id": g.id, "expired_at": "2026-04-14T10:17:00Z"}]
    assert types(store, "triage-cs-01")[1:] == ["grant.requested", "grant.approved", "grant.expired"]
    assert_verifies(store)


def test_revoked_grant_stops_now(store) -> None:
    config = project.load(store.directory)
    g = _request(store)
    grants.approve(store, g.id, actor="priya", config=config, at=START)
    assert _verdict(store, 5) == ("ALLOW", "grant")
    grants.revoke(store, g.id, actor="carol", reason="fix done early", config=config, at=START + timedelta(minutes=5))
    assert _verdict(store, 5) == ("DENY", "not-in-manifest")
    assert _verdict(store, 4.9) == ("ALLOW", "grant")
    assert bodies(store, "grant.revoked") == [{"id": g.id, "reason": "fix done early", "was": "Approved",
                                               "expires_at": "2026-04-14T10:15:00Z"}]
    fails(InputError, f"grant '{g.id}' is Revoked; only Pending or Approved grants can be revoked", grants.revoke,
          store, g.id, actor="carol", reason="again", config=config)


def test_segregation_of_duties_and_approver_group(store) -> None:
    config = project.load(store.directory)
    g = _request(store, by="priya")
    fails(NotPermitted, f"'priya' requested grant '{g.id}' and cannot approve it (segregation of duties)",
          grants.approve, store, g.id, actor="priya", config=config)
    fails(NotPermitted, f"'alice' may not approve grant '{g.id}': only a member of group 'cloud-sec-leads' or an "
          f"admin may (grants.approvers and admins in {store.directory / 'config.yaml'})",
          grants.approve, store, g.id, actor="alice", config=config)
    fails(NotPermitted, f"'alice' may not revoke grant '{g.id}': only a member of group 'cloud-sec-leads' or an "
          f"admin may (grants.approvers and admins in {store.directory / 'config.yaml'})",
          grants.revoke, store, g.id, actor="alice", reason="no", config=config)
    own = _request(store, by="ops")
    fails(NotPermitted, f"agent 'triage-cs-01' cannot approve its own grant '{own.id}' (segregation of duties)",
          grants.approve, store, own.id, actor="triage-cs-01", config=project.ProjectConfig(
              admins=frozenset({"triage-cs-01"})))
    denied = grants.deny(store, g.id, actor="carol", config=config, comment="use the runbook")
    assert (denied.phase, denied.decided_by, denied.comment) == ("Denied", "carol", "use the runbook")
    fails(InputError, f"grant '{g.id}' is Denied, not Pending", grants.approve, store, g.id, actor="carol",
          config=config)
    assert _verdict(store, 1) == ("DENY", "not-in-manifest")
    assert grants.revoke(store, own.id, actor="ops", reason="not needed", config=config).phase == "Revoked"


def test_grant_satisfies_approval_required_but_never_lifts_deny(store) -> None:
    config = project.load(store.directory)
    g = grants.request(store, agent="triage-cs-01", actions=["servicenow.change.close"], scope={}, ttl="1h",
                       reason="bulk close", requested_by="ops", catalog=registry.catalog(store), at=START)
    grants.approve(store, g.id, actor="carol", config=config, at=START)
    call = Call(ts=START, agent="triage-cs-01", action="servicenow.change.close", payload={"change_ids": ["A", "B"]})
    d = decide(call, load_state(store))
    assert (d.verdict, d.reason, d.grant) == ("ALLOW", "grant", g.id)
    from arxctl.registry import lifecycle

    lifecycle.suspend(store, "triage-cs-01", actor="ops", reason="incident")
    d = decide(call, load_state(store))
    assert (d.verdict, d.reason, d.total) == ("DENY", "agent-suspended", 100)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ttl": "25h"}, "--ttl 1d1h exceeds the 24h maximum for a grant"),
    ({"ttl": "soon"}, "--ttl: invalid duration 'soon': use a number and a unit, e.g. 30s, 15m, 4h, 1h30m, 7d"),
    ({"actions": ["aws.s3.fly"]}, "unknown action 'aws.s3.fly': not in the connector catalog (add it with a "
                                  "ConnectorCatalog and `arxctl register`)"),
    ({"actions": []}, "a grant needs at least one --action"),
    ({"reason": " "}, "a grant request needs a --reason"),
    ({"agent": "ghost"}, "no agent 'ghost' (register it with `arxctl register`)"),
])
def test_bad_requests_store_nothing(store, kwargs: dict, message: str) -> None:
    args = {"agent": "triage-cs-01", "actions": [PUT], "scope": {}, "ttl": "15m", "reason": "r",
            "requested_by": "ops", "catalog": registry.catalog(store), **kwargs}
    fails((InputError, NotFoundError), message, grants.request, store, **args)
    assert grants.list_grants(store) == []
    assert types(store) == ["agent.registered", "agent.registered", "policy.registered"]


def test_parse_scope() -> None:
    assert grants.parse_scope(["bucket=bank-logs", "count:=3", "tags:=[\"a\"]", "q=a:=b", "eq=x=y"]) == {
        "bucket": "bank-logs", "count": 3, "tags": ["a"], "q": "a:=b", "eq": "x=y"}
    fails(InputError, "--scope 'bucket': use key=value, or key:=json for a typed value", grants.parse_scope,
          ["bucket"])
    fails(InputError, "--scope 'n:=[1': the value after ':=' is not JSON: unexpected end of data",
          grants.parse_scope, ["n:=[1"])
    fails(InputError, "--scope: key 'a' is given twice", grants.parse_scope, ["a=1", "a=2"])
    fails(InputError, "--scope '=1': the key is empty", grants.parse_scope, ["=1"])
