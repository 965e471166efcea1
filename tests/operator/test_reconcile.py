"""The pure reconcile functions: validation, statuses, grant transitions and the namespace plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from arxctl.canonical import digest
from arxctl.diagnostics import Diagnostic
from arxctl.operator import reconcile
from arxctl.operator.reconcile import Event, Observed, Registered, RegistryView, StatusChange
from arxctl.policy.bundle import BUNDLE_KEY, bundle_bytes, resource_doc
from tests.operator.helpers import agent, change_control, grant

NOW = datetime(2026, 4, 14, 10, 0, 0, tzinfo=UTC)
TS = "2026-04-14T10:00:00Z"
BAD_ACTION = {"connectors": [{"name": "slack", "target": {"system": "slack", "env": "prod"},
                              "actions": ["slack.chat.postt"]}]}


def bad_agent(**kw: Any) -> dict[str, Any]:
    obj = agent(**kw)
    obj["spec"] = {**obj["spec"], **BAD_ACTION}
    return obj


def head(obj: dict[str, Any], version: int = 1, status: str = "active", throttled: bool = False) -> Registered:
    doc = resource_doc(obj)
    return Registered(version, digest(doc), status, doc, throttled)


def conditions(status: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]]


def test_check_separates_valid_objects_from_problems() -> None:
    observed = Observed("payments", agents=[agent(), bad_agent(name="other")], policies=[change_control()])
    checked = reconcile.check(observed)
    assert sorted(checked.valid) == [("Agent", "triage-cs-01"), ("Policy", "change-control")]
    assert checked.valid[("Agent", "triage-cs-01")] == resource_doc(agent())
    [problem] = checked.problems[("Agent", "other")]
    assert (problem.path, problem.rule, problem.json_path) == (
        "payments/Agent/other", "ARX121", "$.spec.connectors[0].actions[0]")
    assert reconcile.summarize([problem]) == f"ARX121 $.spec.connectors[0].actions[0]: {problem.message}"


def test_only_changed_valid_resources_are_registered() -> None:
    current, edited, deleted = agent(), agent(name="edited"), agent(name="leaving", deletionTimestamp=TS)
    edited["spec"] = {**edited["spec"], "purpose": "new purpose"}
    observed = Observed("payments", agents=[current, edited, deleted, bad_agent(name="bad")])
    view = RegistryView({("Agent", "triage-cs-01"): head(current), ("Agent", "edited"): head(agent(name="edited"))})
    assert reconcile.to_register(observed, reconcile.check(observed), view) == [resource_doc(edited)]
    gone = RegistryView({("Agent", "triage-cs-01"): head(current, status="decommissioned")})
    edited_current = agent()
    edited_current["spec"] = {**edited_current["spec"], "purpose": "again"}
    single = Observed("payments", agents=[edited_current])
    assert reconcile.to_register(single, reconcile.check(single), gone) == []


def test_agent_status_for_every_state() -> None:
    obj = agent(generation=3)
    problem = Diagnostic("x", 1, 1, "ARX121", "error", "unknown action", "$.spec")
    cases = {
        "active": (reconcile.agent_status(obj, (), head(obj, 2), NOW), "Active",
                   ("Ready", "True", "Enforced", "version 2 is in the enforcement bundle")),
        "invalid": (reconcile.agent_status(obj, (problem,), None, NOW), "Invalid",
                    ("Ready", "False", "Invalid", "ARX121 $.spec: unknown action")),
        "invalid-update": (reconcile.agent_status(obj, (problem,), head(obj, 2), NOW), "Active",
                           ("Ready", "False", "InvalidUpdate",
                            "version 2 stays in force; the new spec is invalid: ARX121 $.spec: unknown action")),
        "suspended": (reconcile.agent_status(obj, (), head(obj, status="suspended"), NOW), "Suspended",
                      ("Ready", "False", "Suspended", "suspended: every call is denied")),
        "decommissioning": (reconcile.agent_status(agent(deletionTimestamp=TS), (), head(obj), NOW), "Decommissioning",
                            ("Ready", "False", "Decommissioned", "decommissioning: every call is denied while "
                                                                 "credentials, grants and handles are revoked")),
        "decommissioned": (reconcile.agent_status(obj, (), head(obj, status="decommissioned"), NOW), "Decommissioned",
                           ("Ready", "False", "Decommissioned", "decommissioned: every call is denied")),
    }
    assert {k: (s["phase"], conditions(s)[0]) for k, (s, *_) in cases.items()} == {
        k: (phase, ready) for k, (_, phase, ready) in cases.items()}
    active = cases["active"][0]
    assert active["version"] == 2 and active["digest"] == head(obj).digest and active["observedGeneration"] == 3
    assert conditions(active)[1:] == [("Suspended", "False", "NotSuspended", ""),
                                      ("Decommissioned", "False", "Active", "")]
    assert {c["observedGeneration"] for c in active["conditions"]} == {3}
    assert conditions(cases["decommissioned"][0])[2] == ("Decommissioned", "True", "Decommissioned", "record sealed")


def test_last_transition_time_moves_only_when_a_condition_flips() -> None:
    obj = agent()
    first = reconcile.agent_status(obj, (), head(obj), NOW)
    later = NOW + timedelta(minutes=5)
    same = reconcile.agent_status({**obj, "status": first}, (), head(obj), later)
    assert same == first
    flipped = reconcile.agent_status({**obj, "status": first}, (), head(obj, status="suspended"), later)
    assert [c["lastTransitionTime"] for c in flipped["conditions"]] == [
        "2026-04-14T10:05:00Z", "2026-04-14T10:05:00Z", "2026-04-14T10:00:00Z"]


def test_a_new_grant_becomes_pending() -> None:
    assert reconcile.grant_change(grant(), (), "active", NOW) == (
        {"phase": "Pending", "reason": "waiting for an approver"}, None)


def test_an_approved_grant_gets_its_times_and_expires_at_its_ttl() -> None:
    approved = grant(status={"phase": "Approved", "approvedBy": "alice", "approvedAt": "2026-04-14T09:50:00Z"})
    assert reconcile.grant_change(approved, (), "active", NOW) == (
        {"approvedAt": "2026-04-14T09:50:00Z", "expiresAt": "2026-04-14T10:05:00Z",
         "reason": "active until 2026-04-14T10:05:00Z"}, None)
    no_time = grant(status={"phase": "Approved", "approvedBy": "alice"})
    assert reconcile.grant_change(no_time, (), "active", NOW)[0] == {
        "approvedAt": TS, "expiresAt": "2026-04-14T10:15:00Z", "reason": "active until 2026-04-14T10:15:00Z"}
    settled = grant(status={"phase": "Approved", "approvedAt": "2026-04-14T09:50:00Z",
                            "expiresAt": "2026-04-14T10:05:00Z", "reason": "active until 2026-04-14T10:05:00Z"})
    assert reconcile.grant_change(settled, (), "active", NOW) == (None, None)
    stretched = grant(status={**settled["status"], "approvedAt": "2026-04-14T11:00:00Z",
                              "expiresAt": "2026-04-15T10:00:00Z"})
    assert reconcile.grant_change(stretched, (), "active", NOW)[0] == {
        "approvedAt": TS, "expiresAt": "2026-04-14T10:15:00Z", "reason": "active until 2026-04-14T10:15:00Z"}
    at_ttl = datetime(2026, 4, 14, 10, 5, tzinfo=UTC)
    assert reconcile.grant_change(settled, (), "active", at_ttl) == (
        {"phase": "Expired", "approvedAt": "2026-04-14T09:50:00Z", "expiresAt": "2026-04-14T10:05:00Z",
         "reason": "ttl 15m elapsed at 2026-04-14T10:05:00Z"},
        Event("Grant", "fix-acl", "uid-fix-acl", "Expired",
              "grant expired and left the enforcement bundle: ttl 15m elapsed at 2026-04-14T10:05:00Z"))


def test_the_operator_never_approves_and_revokes_for_a_decommissioned_agent() -> None:
    for phase in ("Denied", "Expired", "Revoked"):
        assert reconcile.grant_change(grant(status={"phase": phase}), (), "active", NOW) == (None, None)
    pending = grant(status={"phase": "Pending"})
    assert reconcile.grant_change(pending, (), "active", NOW) == (None, None)
    assert reconcile.grant_change(pending, (), "decommissioned", NOW) == (
        {"phase": "Revoked", "reason": "agent 'triage-cs-01' was decommissioned"},
        Event("Grant", "fix-acl", "uid-fix-acl", "Revoked",
              "grant revoked: agent 'triage-cs-01' was decommissioned", "Warning"))


def _plan(observed: Observed, view: RegistryView | None = None) -> reconcile.Plan:
    checked = reconcile.check(observed)
    if view is None:
        heads = {key: Registered(1, digest(doc), "active", doc) for key, doc in checked.valid.items()
                 if key[0] != "Grant"}
        view = RegistryView(heads)
    return reconcile.plan_namespace(observed, checked, view, NOW)


def test_the_plan_builds_the_bundle_configmap_statuses_and_records() -> None:
    approved = grant(status={"phase": "Approved", "approvedBy": "alice", "approvedAt": "2026-04-14T09:50:00Z"})
    plan = _plan(Observed("payments", agents=[agent()], policies=[change_control()], grants=[approved]))
    bundle = plan.bundle
    assert [a["name"] for a in bundle["agents"]] == ["triage-cs-01"]
    assert bundle["grants"] == [{"id": "fix-acl", "agent": "triage-cs-01", "actions": ["servicenow.change.close"],
                                 "scope": {}, "phase": "Approved", "approved_at": "2026-04-14T09:50:00Z",
                                 "expires_at": "2026-04-14T10:05:00Z"}]
    assert plan.configmap == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "arx-enforcement-bundle", "namespace": "payments",
                     "labels": {"app.kubernetes.io/managed-by": "arx-operator", "app.kubernetes.io/part-of": "arxctl"},
                     "annotations": {"arx.dev/revision": bundle["revision"],
                                     "arx.dev/policy-revision": bundle["policy_revision"]}},
        "data": {BUNDLE_KEY: bundle_bytes(bundle).decode()},
    }
    assert [(s.kind, s.name) for s in plan.statuses] == [("Agent", "triage-cs-01"), ("Policy", "change-control"),
                                                          ("Grant", "fix-acl")]
    assert plan.statuses[2] == StatusChange("Grant", "fix-acl", {
        "approvedAt": "2026-04-14T09:50:00Z", "expiresAt": "2026-04-14T10:05:00Z",
        "reason": "active until 2026-04-14T10:05:00Z"}, (), "active")
    assert [(r.type, r.agent, r.mark, r.mark_value) for r in plan.records] == [
        ("grant.approved", "triage-cs-01", "Grant/fix-acl/uid-fix-acl", "Approved"),
        ("bundle.published", None, "bundle", bundle["revision"]),
    ]
    assert plan.records[0].body["approved_by"] == "alice"
    assert plan.next_deadline == datetime(2026, 4, 14, 10, 5, tzinfo=UTC)
    assert plan.decommission == ()


def test_a_converged_namespace_plans_nothing() -> None:
    observed = Observed("payments", agents=[agent()], policies=[change_control()])
    first = _plan(observed)
    statuses = {(s.kind, s.name): s.status for s in first.statuses}
    settled = Observed("payments", agents=[{**agent(), "status": statuses[("Agent", "triage-cs-01")]}],
                       policies=[{**change_control(), "status": statuses[("Policy", "change-control")]}],
                       configmap=first.configmap)
    heads = {key: Registered(1, digest(doc), "active", doc) for key, doc in reconcile.check(settled).valid.items()}
    again = _plan(settled, RegistryView(heads, marks={"bundle": first.bundle["revision"]}))
    assert (again.configmap, again.statuses, again.records, again.events) == (None, (), (), ())
    assert again.bundle["revision"] == first.bundle["revision"]


def test_an_invalid_edit_keeps_the_last_valid_version_in_force() -> None:
    enforced = agent()
    view = RegistryView({("Agent", "triage-cs-01"): head(enforced, 4)})
    plan = _plan(Observed("payments", agents=[bad_agent(generation=5)]), view)
    assert plan.bundle["agents"][0]["doc"] == resource_doc(enforced)
    assert plan.bundle["agents"][0]["version"] == 4
    [rejected] = [r for r in plan.records if r.type == "resource.rejected"]
    assert (rejected.agent, rejected.mark) == ("triage-cs-01", "Agent/triage-cs-01/rejected")
    assert [(e.reason, e.type) for e in plan.events] == [("Invalid", "Warning")]
    again = _plan(Observed("payments", agents=[bad_agent(generation=5)]),
                  RegistryView(view.heads, marks={rejected.mark: rejected.mark_value}))
    assert [r.type for r in again.records] == ["bundle.published"] and again.events == ()


def test_decommissioning_denies_at_once_and_revokes_live_grants() -> None:
    retiring = agent()
    retiring["spec"] = {**retiring["spec"], "lifecycle": "decommissioned"}
    live_grant = grant(status={"phase": "Approved", "approvedAt": "2026-04-14T09:55:00Z"})
    plan = _plan(Observed("payments", agents=[retiring, agent(name="deleted", deletionTimestamp=TS)],
                          grants=[live_grant]))
    assert [(a["name"], a["status"]) for a in plan.bundle["agents"]] == [
        ("deleted", "decommissioned"), ("triage-cs-01", "decommissioned")]
    assert plan.bundle["grants"] == []
    assert plan.decommission == ("triage-cs-01",)
    grant_change = [s for s in plan.statuses if s.kind == "Grant"]
    assert grant_change == [StatusChange("Grant", "fix-acl", {
        "phase": "Revoked", "reason": "agent 'triage-cs-01' was decommissioned"}, (), "decommissioned")]
    assert [s.name for s in plan.statuses if s.kind == "Agent"] == ["triage-cs-01"]


def test_retention_class_and_summary() -> None:
    annotated = agent(annotations={"arx.dev/retention-class": "sox-7yr"})
    assert reconcile.retention_class(annotated, "standard-1yr") == "sox-7yr"
    assert reconcile.retention_class(agent(), "standard-1yr") == "standard-1yr"
    assert reconcile.decommission_summary(at=TS, reason="r", retention_class="sox-7yr", secrets=["b", "a"],
                                          grants=["g"], handles=[], record_seq=3, seal_seq=4) == {
        "at": TS, "reason": "r", "retentionClass": "sox-7yr", "secretsDeleted": ["a", "b"], "grantsRevoked": ["g"],
        "handlesRevoked": [], "recordSeq": 3, "sealSeq": 4}


HOLD = {"suspended": True, "throttled": False, "severity": "critical", "reportId": "drift-1",
        "reason": "drift critical (drift-1): undeclared-action servicenow.change.delete", "source": "gateway/gw-a",
        "at": TS}
THROTTLE = {**HOLD, "suspended": False, "throttled": True, "severity": "medium",
            "reason": "drift medium (drift-2): rate slack.chat.post", "reportId": "drift-2"}
REACTIVATION = {"by": "carol", "reason": "false positive: the queue moved"}
SUSPENSION_MARK, REACTIVATION_MARK = "Agent/triage-cs-01/suspension", "Agent/triage-cs-01/reactivation"


def _view(obj: dict[str, Any], status: str = "active", throttled: bool = False,
          marks: dict[str, str] | None = None, **held: Any) -> RegistryView:
    doc = resource_doc(obj)
    return RegistryView({("Agent", "triage-cs-01"): Registered(1, digest(doc), status, doc, throttled, **held)},
                        marks=marks or {})


def test_a_hold_written_by_a_gateway_becomes_a_lifecycle_change_once() -> None:
    obj = agent(status={"suspension": HOLD})
    [hold] = reconcile.lifecycle_changes(Observed("payments", agents=[obj]), _view(obj))
    assert hold == reconcile.Hold("triage-cs-01", "uid-triage-cs-01", "suspend", "gateway/gw-a", HOLD["reason"],
                                  HOLD, ((SUSPENSION_MARK, digest(HOLD)), (REACTIVATION_MARK, "")))
    handled = _view(obj, "suspended", marks={SUSPENSION_MARK: digest(HOLD)})
    assert reconcile.lifecycle_changes(Observed("payments", agents=[obj]), handled) == []
    throttle = agent(status={"suspension": THROTTLE})
    [hold] = reconcile.lifecycle_changes(Observed("payments", agents=[throttle]), _view(throttle))
    assert (hold.action, hold.actor, hold.reason) == ("throttle", "gateway/gw-a", THROTTLE["reason"])
    for ignored in (agent(status={"suspension": {"suspended": False, "source": "gateway/gw-a"}}),
                    agent(status={"suspension": HOLD}, deletionTimestamp=TS)):
        assert reconcile.lifecycle_changes(Observed("payments", agents=[ignored]), _view(obj)) == []
    unregistered = Observed("payments", agents=[obj])
    assert reconcile.lifecycle_changes(unregistered, RegistryView()) == []
    assert reconcile.lifecycle_changes(unregistered, _view(obj, "decommissioned")) == []
    bare = agent(status={"suspension": {"suspended": True}})
    [hold] = reconcile.lifecycle_changes(Observed("payments", agents=[bare]), _view(bare))
    assert (hold.action, hold.actor, hold.reason) == ("suspend", "unknown", "status.suspension gave no reason")


def test_a_reactivation_is_handled_first_and_lifts_the_hold_beside_it() -> None:
    obj = agent(status={"suspension": HOLD, "reactivation": REACTIVATION})
    view = _view(obj, "suspended", marks={SUSPENSION_MARK: digest(HOLD)})
    [hold] = reconcile.lifecycle_changes(Observed("payments", agents=[obj]), view)
    assert hold == reconcile.Hold("triage-cs-01", "uid-triage-cs-01", "reactivate", "carol", REACTIVATION["reason"],
                                  REACTIVATION, ((REACTIVATION_MARK, digest(REACTIVATION)),
                                                 (SUSPENSION_MARK, digest(HOLD))))
    done = _view(obj, marks={SUSPENSION_MARK: digest(HOLD), REACTIVATION_MARK: digest(REACTIVATION)})
    assert reconcile.lifecycle_changes(Observed("payments", agents=[obj]), done) == []
    lingering = agent(status={"suspension": {**HOLD, "at": "2026-04-14T10:01:00Z"}, "reactivation": REACTIVATION})
    [hold] = reconcile.lifecycle_changes(Observed("payments", agents=[lingering]), done)
    assert (hold.action, hold.marks[1:]) == ("suspend", ())


def test_removing_the_hold_from_the_status_lifts_nothing() -> None:
    obj = agent(generation=2)
    view = _view(obj, "suspended", marks={SUSPENSION_MARK: digest(HOLD)},
                 suspension={"by": "gateway/gw-a", "at": TS, "reason": HOLD["reason"], "source": "drift"})
    assert reconcile.lifecycle_changes(Observed("payments", agents=[obj]), view) == []
    plan = reconcile.plan_namespace(Observed("payments", agents=[obj]), reconcile.check(Observed("payments",
                                                                                                 agents=[obj])),
                                    view, NOW)
    assert plan.bundle["agents"][0]["status"] == "suspended"
    [change] = plan.statuses
    assert change.clear == ()
    assert change.status["phase"] == "Suspended"
    assert conditions(change.status)[:2] == [
        ("Ready", "False", "Suspended", "suspended: every call is denied"),
        ("Suspended", "True", "LiveDrift", f"suspended by gateway/gw-a at {TS}: {HOLD['reason']}; only an admin's "
                                           "status.reactivation lifts it")]


def test_a_throttle_shows_in_the_ready_message() -> None:
    obj = agent()
    view = _view(obj, throttled=True, throttle={"by": "gateway/gw-b", "at": TS, "reason": THROTTLE["reason"],
                                                "source": "drift"})
    status = reconcile.agent_status(obj, (), view.heads[("Agent", "triage-cs-01")], NOW)
    assert (status["phase"], status["throttled"], conditions(status)[0]) == ("Active", True, (
        "Ready", "True", "Enforced", f"version 1 is in the enforcement bundle; throttled by gateway/gw-b at {TS}: "
                                     f"{THROTTLE['reason']}"))


def test_the_plan_clears_a_handled_reactivation_and_a_lifted_hold_only() -> None:
    obj = agent(status={"suspension": HOLD, "reactivation": REACTIVATION})
    marks = {SUSPENSION_MARK: digest(HOLD), REACTIVATION_MARK: digest(REACTIVATION)}
    observed = Observed("payments", agents=[obj])
    lifted = reconcile.plan_namespace(observed, reconcile.check(observed), _view(obj, marks=marks), NOW)
    assert [c.clear for c in lifted.statuses] == [(("reactivation", digest(REACTIVATION)),
                                                   ("suspension", digest(HOLD)))]
    still = reconcile.plan_namespace(observed, reconcile.check(observed), _view(obj, "suspended", marks=marks), NOW)
    assert [c.clear for c in still.statuses] == [(("reactivation", digest(REACTIVATION)),)]
    unseen = reconcile.plan_namespace(observed, reconcile.check(observed), _view(obj), NOW)
    assert [c.clear for c in unseen.statuses] == [()]


def test_hold_events_say_what_was_done_and_by_whom() -> None:
    suspend = reconcile.Hold("a", "u", "suspend", "gateway/gw-a", "drift critical", {}, ())
    assert reconcile.hold_event(suspend, "suspended: every call is denied") == Event(
        "Agent", "a", "u", "Suspended", "suspended: every call is denied (by gateway/gw-a: drift critical)", "Warning")
    lift = reconcile.Hold("a", "u", "reactivate", "carol", "false positive", {}, ())
    assert reconcile.hold_event(lift, "reactivated: the suspension is lifted") == Event(
        "Agent", "a", "u", "Reactivated", "reactivated: the suspension is lifted (by carol: false positive)")
    refused = reconcile.Hold("a", "u", "reactivate", "", "", {}, ())
    assert reconcile.hold_event(refused, "reactivation refused: status.reactivation needs `by` and `reason`") == \
        Event("Agent", "a", "u", "ReactivationRefused", "reactivation refused: status.reactivation needs `by` and "
                                                        "`reason` (by nobody: no reason)", "Warning")


def test_health_reports_and_bookkeeping_trigger_no_reconcile() -> None:
    obj = agent(status={"phase": "Active"}, managedFields=[{"manager": "a"}])
    key = reconcile.trigger_key(obj)
    reported = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "9", "managedFields": [{"manager": "b"}]},
                "status": {"phase": "Active", "gateway": {"gw-a": {"callsPerMinute": 3}}}}
    assert reconcile.trigger_key(reported) == key
    assert reconcile.trigger_key({**obj, "status": {"phase": "Active", "suspension": HOLD}}) != key
    assert reconcile.trigger_key(agent(generation=2)) != reconcile.trigger_key(agent())
