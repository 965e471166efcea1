"""Decommission: everything revoked now in one transaction, sealed, orphan-checked; lineage walks back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from arxctl.chain import store as chain
from arxctl.clock import parse_ts
from arxctl.errors import InputError, SealedError
from arxctl.policy.engine import Call, decide
from arxctl.policy.state import load_state, record_call
from arxctl.registry import approvals, credentials, grants, handles, lifecycle
from arxctl.registry import config as project
from arxctl.registry import resources as registry
from arxctl.registry.decommission import decommission, lineage, orphan_check
from tests.lifecycle.helpers import T0, assert_verifies, fails, populated, register, types
from tests.policy.helpers import agent_doc

START = parse_ts(T0)


@pytest.fixture
def store(tmp_path: Path):
    s = populated(tmp_path / "state")
    yield s
    s.close()


def _everything(store) -> dict[str, str]:
    """triage-cs-01 with a live grant, a pending grant, a live handle, a bound credential, pending and approved
    approvals."""
    config = project.load(store.directory)
    cat = registry.catalog(store)
    live = grants.request(store, agent="triage-cs-01", actions=["aws.s3.put_bucket_acl"], scope={}, ttl="1h",
                          reason="fix", requested_by="ops", catalog=cat, at=START)
    grants.approve(store, live.id, actor="priya", config=config, at=START)
    pending = grants.request(store, agent="triage-cs-01", actions=["github.repos.get"], scope={}, ttl="1h",
                             reason="read", requested_by="ops", catalog=cat, at=START)
    credentials.set_credential(store, "slack", b"shared", actor="ops", reason="r", catalog=cat, at=START)
    credentials.set_credential(store, "servicenow", b"own", actor="ops", reason="r", catalog=cat,
                               agent="triage-cs-01", at=START)
    handle, token = handles.issue(store, agent="triage-cs-01", connector="slack", actor="gw", reason="r", at=START)
    call = Call(ts=START, agent="triage-cs-01", action="servicenow.change.close",
                payload={"change_ids": ["A", "B"]})
    waiting = record_call(store, call, actor="ops").approval
    approved = record_call(store, Call(ts=START, agent="triage-cs-01", action="servicenow.change.close",
                                       payload={"change_ids": ["C", "D"]}), actor="ops").approval
    approvals.approve(store, approved.id, actor="alice", config=config, at=START)
    return {"live": live.id, "pending": pending.id, "handle": handle.id, "token": token, "waiting": waiting.id,
            "approved": approved.id}


def test_decommission_revokes_everything_seals_and_denies(store) -> None:
    ids = _everything(store)
    at = START + timedelta(minutes=5)
    done = decommission(store, "triage-cs-01", actor="dana", reason="replaced by triage-cs-02",
                        retention_class="sox-7yr", replaced_by="triage-cs-02", config=project.load(store.directory),
                        at=at)
    assert done.revoked == {
        "approvals": {"declined": [ids["waiting"]], "revoked": [ids["approved"]], "expired": []},
        "grants": {"revoked": sorted([ids["live"], ids["pending"]]), "expired": []},
        "handles": [ids["handle"]],
        "credentials": ["servicenow"],
    }
    assert done.orphans.to_dict() == {"agent": "triage-cs-01", "ok": True, "checks": [
        {"check": "status", "description": "agent status is decommissioned", "ok": True, "found": []},
        {"check": "grants", "description": "no pending or live grant", "ok": True, "found": []},
        {"check": "handles", "description": "no live handle", "ok": True, "found": []},
        {"check": "credentials", "description": "no credential bound to the agent", "ok": True, "found": []},
        {"check": "approvals", "description": "no pending or usable approval", "ok": True, "found": []},
        {"check": "seal", "description": "personnel record sealed", "ok": True, "found": []},
    ]}
    tail = types(store, "triage-cs-01")[-8:]
    assert sorted(tail[:2]) == ["approval.denied", "approval.revoked"]
    assert tail[2:] == ["grant.revoked", "grant.revoked", "handle.revoked", "credential.deleted",
                        "agent.decommissioned", "agent.sealed"]
    assert (done.seal_seq, done.record_seq + 1) == (chain.size(store.conn), done.seal_seq)
    d = decide(Call(ts=at, agent="triage-cs-01", action="aws.s3.put_bucket_acl", payload={}), load_state(store))
    assert (d.verdict, d.reason, d.total) == ("DENY", "agent-decommissioned", 100)
    assert handles.check(store, ids["token"], at=at).reason == "revoked"
    assert credentials.secret_for(store, "slack", "triage-cs-02") == b"shared"
    recorded = record_call(store, Call(ts=at, agent="triage-cs-01", action="slack.chat.post", payload={}),
                           actor="gw")
    assert (recorded.decision.verdict, recorded.decision.reason) == ("DENY", "agent-decommissioned")
    last = chain.tail(store.conn, 1)[0]
    assert (last.type, last.agent, last.body["agent"]) == ("decision", None, "triage-cs-01")
    assert_verifies(store)
    fails(InputError, "agent 'triage-cs-01' was already decommissioned at 2026-04-14T10:05:00Z by dana",
          decommission, store, "triage-cs-01", actor="dana", reason="again", retention_class="sox-7yr",
          config=project.ProjectConfig())
    fails(InputError, "cannot suspend agent 'triage-cs-01': it is decommissioned", lifecycle.suspend, store,
          "triage-cs-01", actor="x", reason="y")
    fails(InputError, "agent 'triage-cs-01' is decommissioned; its identity cannot be reused", register, store,
          agent_doc(purpose="back again"))


def test_a_failure_midway_leaves_nothing_half_done(store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _everything(store)
    before = chain.size(store.conn)

    def broken(*args, **kwargs):
        raise SealedError("simulated crash at the seal")

    monkeypatch.setattr("arxctl.registry.decommission.seal", broken)
    fails(SealedError, "simulated crash at the seal", decommission, store, "triage-cs-01", actor="dana",
          reason="r", retention_class="sox-7yr", config=project.ProjectConfig(), at=START)
    assert chain.size(store.conn) == before
    assert lifecycle.status(store, "triage-cs-01").status == "active"
    check = orphan_check(store.conn, "triage-cs-01", START)
    assert {c.name: list(c.found) for c in check.checks} == {
        "status": ["active"], "grants": sorted([ids["live"], ids["pending"]]), "handles": [ids["handle"]],
        "credentials": ["servicenow"], "approvals": sorted([ids["waiting"], ids["approved"]]),
        "seal": ["not sealed"]}


def test_expired_grants_are_recorded_as_expired_not_revoked(store) -> None:
    config = project.load(store.directory)
    g = grants.request(store, agent="triage-cs-01", actions=["aws.s3.put_bucket_acl"], scope={}, ttl="5m",
                       reason="fix", requested_by="ops", catalog=registry.catalog(store), at=START)
    grants.approve(store, g.id, actor="priya", config=config, at=START)
    done = decommission(store, "triage-cs-01", actor="dana", reason="retired", retention_class="bank-10yr",
                        config=config, at=START + timedelta(hours=1))
    assert done.revoked["grants"] == {"revoked": [], "expired": [g.id]}
    assert done.retention_class == "bank-10yr"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"retention_class": "forever"}, "unknown retention class 'forever'; known: finra-6yr, gdpr-min, hipaa-6yr, "
                                     "pci-1yr, sox-7yr, standard-1yr"),
    ({"replaced_by": "triage-cs-09"}, "replacement agent 'triage-cs-09' is not registered: register it first, or "
                                      "leave out --replaced-by and register it later with `spec.parent: triage-cs-01`"),
    ({"replaced_by": "triage-cs-01"}, "agent 'triage-cs-01' cannot replace itself"),
    ({"reason": ""}, "a decommission needs a --reason"),
])
def test_bad_input_changes_nothing(store, kwargs: dict, message: str) -> None:
    args = {"actor": "dana", "reason": "r", "retention_class": "sox-7yr", "config": project.ProjectConfig(),
            **kwargs}
    before = chain.size(store.conn)
    fails(InputError, message, decommission, store, "triage-cs-01", **args)
    assert chain.size(store.conn) == before


def test_lineage_walks_back_through_parents_and_replacements(store) -> None:
    register(store, agent_doc("triage-cs-00"), agent_doc("triage-cs-03", parent="triage-cs-02"))
    config = project.load(store.directory)
    decommission(store, "triage-cs-00", actor="dana", reason="v0 retired", retention_class="sox-7yr",
                 replaced_by="triage-cs-01", config=config, at=START)
    decommission(store, "triage-cs-01", actor="dana", reason="replaced by triage-cs-02",
                 retention_class="sox-7yr", config=config, at=START + timedelta(days=1))
    walk = [a.to_dict() for a in lineage(store, "triage-cs-03")]
    assert [(a["name"], a["depth"], a["via"], a["successor"], a["status"], a["reason"]) for a in walk] == [
        ("triage-cs-03", 0, "self", None, "active", None),
        ("triage-cs-02", 1, "spec.parent", "triage-cs-03", "active", None),
        ("triage-cs-01", 2, "spec.parent", "triage-cs-02", "decommissioned", "replaced by triage-cs-02"),
        ("triage-cs-00", 3, "replaced_by", "triage-cs-01", "decommissioned", "v0 retired"),
    ]
    assert (walk[2]["retired_at"], walk[2]["retired_by"], walk[2]["retention_class"]) == (
        "2026-04-15T10:00:00Z", "dana", "sox-7yr")
    register(store, agent_doc("loop-a", parent="loop-b"), agent_doc("loop-b", parent="loop-a"))
    assert [(a.name, a.depth) for a in lineage(store, "loop-a")] == [("loop-a", 0), ("loop-b", 1)]
    register(store, agent_doc("orphan-child", parent="never-registered"))
    assert [(a.name, a.status) for a in lineage(store, "orphan-child")] == [
        ("orphan-child", "active"), ("never-registered", "unregistered")]
