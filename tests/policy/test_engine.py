"""Every branch of formats.md section 4, with exact scores, reasons and matched rules."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from arxctl.errors import InputError
from arxctl.policy.engine import AgentInfo, Call, EngineState, SessionWindow, decide
from arxctl.policy.risk import RiskModel
from tests.policy.helpers import T0, agent_doc, approve, call, deny, grant, policy, state

CHANGE_CONTROL = policy(
    "change-control",
    approve("change-close-over-one", "servicenow.change.close", "size(payload.change_ids) > 1"),
    deny("no-prod-deletes", "aws.s3.delete_object", 'target.env == "prod"', "prod deletes go through change control"),
    thresholds={"review": 60, "deny": 80},
    selector={"env": "prod"},
)


@dataclass
class Case:
    id: str
    call: Call
    verdict: str
    reason: str
    score: tuple[int, int, int, int, int]  # operation, connector, frequency, target, total
    rules: list[str] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=lambda: [CHANGE_CONTROL])
    agents: list[AgentInfo] | None = None
    grants: tuple = ()
    thresholds: tuple[int, int] = (60, 80)
    extra: dict[str, Any] = field(default_factory=dict)


def _agent(**kw: Any) -> list[AgentInfo]:
    status = kw.pop("status", "active")
    throttled = kw.pop("throttled", False)
    return [AgentInfo.from_doc(agent_doc(**kw), status=status, throttled=throttled)]


CASES = [
    # 1. Intercept
    Case("agent-unknown", call(agent="ghost"), "DENY", "agent-unknown", (0, 0, 0, 0, 100),
         extra={"message": "agent 'ghost' is not registered"}),
    Case("agent-suspended", call(), "DENY", "agent-suspended", (0, 0, 0, 0, 100), agents=_agent(status="suspended")),
    Case("agent-decommissioned", call(), "DENY", "agent-decommissioned", (0, 0, 0, 0, 100),
         agents=_agent(status="decommissioned")),
    Case("lifecycle-decommissioned", call(), "DENY", "agent-decommissioned", (0, 0, 0, 0, 100),
         agents=_agent(lifecycle="decommissioned")),
    Case("unknown-status-is-suspended", call(), "DENY", "agent-suspended", (0, 0, 0, 0, 100),
         agents=_agent(status="paused")),
    # 2. Manifest
    Case("not-in-manifest", call("github.pulls.merge"), "DENY", "not-in-manifest", (0, 0, 0, 0, 100),
         extra={"message": "'github.pulls.merge' is not declared in the manifest of 'triage-cs-01' "
                           "and no active grant covers it"}),
    Case("declared-connector-undeclared-action", call("servicenow.incident.read"), "DENY", "not-in-manifest",
         (0, 0, 0, 0, 100)),
    Case("grant-covers-undeclared-action",
         call("servicenow.incident.read", payload={"number": "INC1"}), "ALLOW", "grant", (5, 16, 0, 20, 41),
         grants=(grant(actions=("servicenow.incident.read",), scope={"number": "INC1"}),),
         extra={"grant": "fix-0414"}),
    Case("grant-scope-mismatch", call("servicenow.incident.read", payload={"number": "INC2"}), "DENY",
         "not-in-manifest", (0, 0, 0, 0, 100),
         grants=(grant(actions=("servicenow.incident.read",), scope={"number": "INC1"}),)),
    Case("grant-scope-type-mismatch", call("servicenow.incident.read", payload={"number": 1}), "DENY",
         "not-in-manifest", (0, 0, 0, 0, 100),
         grants=(grant(actions=("servicenow.incident.read",), scope={"number": True}),)),
    Case("grant-expired", call("servicenow.incident.read"), "DENY", "not-in-manifest", (0, 0, 0, 0, 100),
         grants=(grant(actions=("servicenow.incident.read",), start=T0 - timedelta(minutes=15)),)),
    Case("grant-not-yet-approved", call("servicenow.incident.read"), "DENY", "not-in-manifest", (0, 0, 0, 0, 100),
         grants=(grant(actions=("servicenow.incident.read",), phase="Pending"),)),
    Case("grant-other-agent", call("servicenow.incident.read"), "DENY", "not-in-manifest", (0, 0, 0, 0, 100),
         grants=(grant(agent="triage-cs-02", actions=("servicenow.incident.read",)),)),
    # 3. Score (section 3) and 4. thresholds
    Case("read-confidential-prod", call(), "ALLOW", "threshold", (5, 16, 0, 20, 41),
         extra={"message": "score 41 < review threshold 60"}),
    Case("catalog-data-class-unknown-env", call("slack.chat.post"), "ALLOW", "threshold", (20, 8, 0, 20, 48),
         extra={"target": {"system": "slack", "env": "unknown"}, "data_class": "internal"}),
    Case("call-env-wins", call(target={"env": "dev"}), "ALLOW", "threshold", (5, 16, 0, 0, 21),
         extra={"target": {"system": "servicenow-prod", "env": "dev"}}),
    Case("call-system-wins", call(target={"system": "snow-eu"}), "ALLOW", "threshold", (5, 16, 0, 20, 41),
         extra={"target": {"system": "snow-eu", "env": "prod"}}),
    Case("restricted-dev-destructive", call("aws.s3.delete_object"), "ALLOW", "threshold", (30, 25, 0, 0, 55)),
    Case("containment-staging", call("crowdstrike.host.contain"), "APPROVAL_REQUIRED", "threshold",
         (40, 8, 0, 10, 58), thresholds=(55, 80),
         policies=[policy("tight", thresholds={"review": 55, "deny": 80})],
         extra={"approval": {"policy": None, "rule": None, "severity": None, "approvers": {"group": None},
                             "timeout": None, "diffShownToApprover": True}}),
    Case("riskier-operation-wins", call(operation="destructive"), "APPROVAL_REQUIRED", "threshold",
         (30, 16, 0, 20, 66), policies=[], extra={"operation": "destructive"}),
    Case("less-risky-operation-ignored",
         call("servicenow.change.close", payload={"change_ids": []}, operation="read"), "ALLOW", "threshold",
         (20, 16, 0, 20, 56), extra={"operation": "write"}),
    Case("threshold-review", call(), "APPROVAL_REQUIRED", "threshold", (5, 16, 0, 20, 41), thresholds=(41, 80),
         policies=[policy("low", thresholds={"review": 41, "deny": 80})],
         extra={"message": "score 41 >= review threshold 41"}),
    Case("threshold-deny", call(), "DENY", "threshold", (5, 16, 0, 20, 41), thresholds=(30, 41),
         policies=[policy("low", thresholds={"review": 30, "deny": 41})],
         extra={"message": "score 41 >= deny threshold 41"}),
    Case("lowest-thresholds-combine", call(), "APPROVAL_REQUIRED", "threshold", (5, 16, 0, 20, 41),
         thresholds=(40, 70),
         policies=[policy("a", thresholds={"review": 40, "deny": 90}), policy("b", thresholds={"review": 50}),
                   policy("c", thresholds={"deny": 70})]),
    Case("selector-excludes-thresholds", call(), "ALLOW", "threshold", (5, 16, 0, 20, 41),
         policies=[policy("dev-only", thresholds={"review": 10, "deny": 20}, selector={"env": "dev"})]),
    # 5. Rules
    Case("approval-rule", call("servicenow.change.close", payload={"change_ids": ["C1", "C2"]}),
         "APPROVAL_REQUIRED", "rule", (20, 16, 0, 20, 56), ["change-close-over-one"],
         extra={"approval": {"policy": "change-control", "rule": "change-close-over-one", "severity": "high",
                             "approvers": {"group": "secops-leads"}, "timeout": "4h", "diffShownToApprover": True},
                "message": "rule change-control/change-close-over-one requires APPROVAL_REQUIRED"}),
    Case("approval-rule-if-false", call("servicenow.change.close", payload={"change_ids": ["C1"]}),
         "ALLOW", "threshold", (20, 16, 0, 20, 56)),
    Case("deny-rule", call("aws.s3.delete_object", target={"env": "prod"}), "DENY", "rule", (30, 25, 0, 20, 75),
         ["no-prod-deletes"],
         extra={"message": "rule change-control/no-prod-deletes requires DENY: "
                           "prod deletes go through change control"}),
    Case("deny-rule-if-false", call("aws.s3.delete_object"), "ALLOW", "threshold", (30, 25, 0, 0, 55)),
    Case("selector-excludes-rules", call("servicenow.change.close", payload={"change_ids": ["C1", "C2"]}),
         "ALLOW", "threshold", (20, 16, 0, 20, 56), agents=_agent(labels={"env": "dev"})),
    Case("glob-rule", call("crowdstrike.host.contain"), "DENY", "rule", (40, 8, 0, 10, 58), ["all-crowdstrike"],
         policies=[policy("p", deny("all-crowdstrike", "crowdstrike.*"))]),
    Case("deny-beats-approval", call("servicenow.change.close", payload={"change_ids": ["C1", "C2"]}), "DENY",
         "rule", (20, 16, 0, 20, 56), ["b-deny", "a-approve"],
         policies=[policy("p2", deny("b-deny", "servicenow.*")), policy("p1", approve("a-approve", "servicenow.*"))],
         extra={"matched": [{"policy": "p1", "rule": "a-approve", "outcome": "approvalRequired"},
                            {"policy": "p2", "rule": "b-deny", "outcome": "deny"}]}),
    Case("threshold-deny-beats-approval-rule", call("servicenow.change.close"), "DENY", "threshold",
         (20, 16, 0, 20, 56), ["ask"], thresholds=(50, 56),
         policies=[policy("p", approve("ask", "servicenow.change.close"), thresholds={"review": 50, "deny": 56})]),
    Case("most-severe-approval", call("servicenow.change.close"), "APPROVAL_REQUIRED", "rule", (20, 16, 0, 20, 56),
         ["low", "crit", "high"],
         policies=[policy("p", approve("low", "servicenow.*", severity="low", group="g-low"),
                           approve("high", "servicenow.change.close", severity="high", group="g-high"),
                           approve("crit", "servicenow.change.*", severity="critical", group="g-crit"))],
         extra={"approval": {"policy": "p", "rule": "crit", "severity": "critical", "approvers": {"group": "g-crit"},
                             "timeout": "4h", "diffShownToApprover": True}}),
    Case("cel-sees-every-variable", call("servicenow.change.close", payload={"n": 2}, session="s-9"), "DENY", "rule",
         (20, 16, 0, 20, 56), ["all-vars"],
         policies=[policy("p", deny("all-vars", "servicenow.change.close",
                                    'payload.n == 2 && agent.name == "triage-cs-01" && agent.labels.team == "secops"'
                                    ' && agent.owner.email == "dana@bank.example" && target.env == "prod"'
                                    ' && target.system == "servicenow-prod" && session.id == "s-9"'
                                    ' && session.count == 1 && action == "servicenow.change.close"'
                                    ' && operation == "write" && now == "2026-04-14T10:00:00Z"'))]),
    # 6. Grants
    Case("grant-satisfies-approval", call("servicenow.change.close", payload={"change_ids": ["C1", "C2"]}),
         "ALLOW", "grant", (20, 16, 0, 20, 56), ["change-close-over-one"], grants=(grant(),),
         extra={"grant": "fix-0414", "message": "grant 'fix-0414' covers the call"}),
    Case("grant-satisfies-threshold-approval", call(), "ALLOW", "grant", (5, 16, 0, 20, 41),
         thresholds=(41, 80), policies=[policy("low", thresholds={"review": 41, "deny": 80})],
         grants=(grant(actions=("servicenow.change.read",)),)),
    Case("grant-never-lifts-rule-deny", call("aws.s3.delete_object", target={"env": "prod"}), "DENY", "rule",
         (30, 25, 0, 20, 75), ["no-prod-deletes"], grants=(grant(actions=("aws.s3.delete_object",)),)),
    Case("grant-never-lifts-threshold-deny", call(), "DENY", "threshold", (5, 16, 0, 20, 41), thresholds=(30, 41),
         policies=[policy("low", thresholds={"review": 30, "deny": 41})],
         grants=(grant(actions=("servicenow.change.read",)),)),
    Case("grant-admits-but-threshold-denies", call("servicenow.incident.read"), "DENY", "threshold",
         (5, 16, 0, 20, 41), thresholds=(30, 41), policies=[policy("low", thresholds={"review": 30, "deny": 41})],
         grants=(grant(actions=("servicenow.incident.read",)),), extra={"grant": "fix-0414"}),
    # 7. Evaluation errors
    Case("cel-missing-field", call("servicenow.change.close", payload={}), "DENY", "policy-error",
         (20, 16, 0, 20, 56),
         extra={"message": "rule change-control/change-close-over-one: KeyError: 'change_ids'"}),
    Case("cel-error-redacted", call("servicenow.change.close", payload={"token": "hunter22", "m": {}}), "DENY",
         "policy-error", (20, 16, 0, 20, 56),
         policies=[policy("p", deny("bad", "servicenow.change.close", "payload.m[payload.token] == 1"))],
         extra={"message": "rule p/bad: KeyError: '***'"}),
    Case("cel-not-boolean", call("servicenow.change.close"), "DENY", "policy-error", (20, 16, 0, 20, 56),
         policies=[policy("p", deny("num", "servicenow.change.close", "1 + 1"))],
         extra={"message": "rule p/num: `if` returned int, not a boolean"}),
    Case("cel-does-not-compile", call("servicenow.change.close"), "DENY", "policy-error", (20, 16, 0, 20, 56),
         policies=[policy("p", approve("broken", "servicenow.change.close", "payload.x +"))],
         extra={"message": "rule p/broken: CEL does not compile: Failed to parse expression 'payload.x +': "
                           "ERROR: <input>:1:12: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', "
                           "'.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, "
                           "IDENTIFIER}"}),
    Case("cel-unknown-variable", call("servicenow.change.close"), "DENY", "policy-error", (20, 16, 0, 20, 56),
         policies=[policy("p", approve("typo", "servicenow.change.close", 'agnet.name == "x"'))],
         extra={"message": "rule p/typo: RuntimeError: Undefined variable or function: 'agnet'. Check that the "
                           "variable is defined in the context or that the function name is spelled correctly."}),
    Case("grant-never-lifts-policy-error", call("servicenow.change.close", payload={}), "DENY", "policy-error",
         (20, 16, 0, 20, 56), grants=(grant(),)),
    Case("payload-not-an-object", call("servicenow.change.read", payload=["a"]), "DENY", "policy-error",
         (5, 16, 0, 20, 41), extra={"message": "payload is not a JSON object"}),
    Case("error-in-one-rule-denies", call("servicenow.change.close", payload={"change_ids": ["C1", "C2"]}), "DENY",
         "policy-error", (20, 16, 0, 20, 56), ["change-close-over-one"],
         policies=[CHANGE_CONTROL, policy("z", approve("needs-x", "servicenow.*", "payload.x == 1"))],
         extra={"message": "rule z/needs-x: KeyError: 'x'"}),
    # Throttle (issue 5 sets it): writes, destructive and containment need approval.
    Case("throttled-write", call("servicenow.change.close", payload={"change_ids": []}), "APPROVAL_REQUIRED",
         "throttled", (20, 16, 0, 20, 56),
         agents=_agent(throttled=True),
         extra={"message": "agent 'triage-cs-01' is throttled: its write calls need approval"}),
    Case("throttled-read", call(), "ALLOW", "threshold", (5, 16, 0, 20, 41), agents=_agent(throttled=True)),
    # Actions the catalog does not know score as the riskiest class, data class restricted.
    Case("uncatalogued-action", call("acme.widget.poke"), "DENY", "threshold", (40, 25, 0, 20, 85),
         agents=_agent(connectors=[{"name": "acme", "target": {"system": "acme"}, "actions": ["acme.widget.poke"]}]),
         extra={"operation": "unknown", "data_class": "restricted"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_branch(case: Case) -> None:
    st = state(*case.policies, agents=case.agents, grants=case.grants)
    record = decide(case.call, st).to_record()
    op, con, freq, tgt, total = case.score
    expected_score = {"operation": op, "connector": con, "frequency": freq, "target": tgt, "total": total}
    if total == 100 and op == con == freq == tgt == 0:
        expected_score["fixed"] = 100
    assert (record["verdict"], record["reason"]) == (case.verdict, case.reason)
    assert record["score"] == expected_score
    assert record["thresholds"] == {"review": case.thresholds[0], "deny": case.thresholds[1]}
    assert sorted(record["rules"]) == sorted(case.rules)
    for key, value in case.extra.items():
        assert record[key] == value, key


def test_redacted_error_message() -> None:
    st = state(policy("p", deny("bad", "servicenow.change.close", 'duration(payload.secret) > duration("1s")')))
    record = decide(call("servicenow.change.close", payload={"secret": "hunter22"}), st).to_record()
    assert record["message"] == ('rule p/bad: RuntimeError: Function \'duration\' error: Parsing Error: '
                                 'Error { input: "***", code: Float }. Check function arguments and their types.')


def test_full_record() -> None:
    st = state(CHANGE_CONTROL)
    c = call("servicenow.change.close", payload={"change_ids": ["C1", "C2"]}, decision_id="d-1")
    record = decide(c, st).to_record()
    assert record == {
        "decision_id": "d-1",
        "ts": "2026-04-14T10:00:00Z",
        "agent": "triage-cs-01",
        "session": "s-1",
        "action": "servicenow.change.close",
        "verdict": "APPROVAL_REQUIRED",
        "reason": "rule",
        "score": {"operation": 20, "connector": 16, "frequency": 0, "target": 20, "total": 56},
        "thresholds": {"review": 60, "deny": 80},
        "rules": ["change-close-over-one"],
        "policy_revision": st.policies.revision,
        "payload_digest": "sha256:" + hashlib.sha256(b'{"change_ids":["C1","C2"]}').hexdigest(),
        "message": "rule change-control/change-close-over-one requires APPROVAL_REQUIRED",
        "matched": [{"policy": "change-control", "rule": "change-close-over-one", "outcome": "approvalRequired"}],
        "session_count": 1,
        "operation": "write",
        "data_class": "confidential",
        "target": {"system": "servicenow-prod", "env": "prod"},
        "approval": {"policy": "change-control", "rule": "change-close-over-one", "severity": "high",
                     "approvers": {"group": "secops-leads"}, "timeout": "4h", "diffShownToApprover": True},
    }


def test_session_frequency_window() -> None:
    """n = 1 + earlier calls by the same agent and session less than 60 s before; every call counts."""
    st = state()
    scores = []
    for i in range(14):
        d = decide(call(ts=T0 + timedelta(seconds=i)), st)
        scores.append((d.session_count, d.frequency_score))
    assert scores == [(n, max(0, n - 10)) for n in range(1, 15)]
    other = decide(call(ts=T0 + timedelta(seconds=14), session="s-2"), st)
    assert (other.session_count, other.frequency_score) == (1, 0)
    # At T0+60s the call at T0 is exactly 60 s before: it no longer counts (n = 14 calls at T0+1..T0+14, + 1).
    later = decide(call(ts=T0 + timedelta(seconds=60)), st)
    assert (later.session_count, later.frequency_score) == (14, 4)


def test_denied_calls_count_in_the_window() -> None:
    st = state()
    for i in range(3):
        assert decide(call("github.pulls.merge", ts=T0 + timedelta(seconds=i)), st).reason == "not-in-manifest"
    assert decide(call(ts=T0 + timedelta(seconds=3)), st).session_count == 4


def test_frequency_cap() -> None:
    st = state()
    last = None
    for i in range(40):
        last = decide(call(ts=T0 + timedelta(milliseconds=i)), st)
    assert (last.session_count, last.frequency_score, last.total) == (40, 15, 56)


def test_out_of_order_calls() -> None:
    """Earlier in input order but later in time does not count; an earlier timestamp arriving late does."""
    window = SessionWindow()
    us = 1_000_000
    assert window.observe("a", "s", 100 * us, 60 * us) == 1
    assert window.observe("a", "s", 50 * us, 60 * us) == 1
    assert window.observe("a", "s", 105 * us, 60 * us) == 3
    assert window.observe("a", "s", 70 * us, 60 * us) == 2


def test_window_stays_flat() -> None:
    window = SessionWindow(lateness_s=0)
    us = 1_000_000
    for i in range(SessionWindow.SWEEP_EVERY * 2):
        window.observe("a", f"s-{i}", i * 10 * us, 60 * us)
    assert len(window) < SessionWindow.SWEEP_EVERY
    for i in range(1000):
        window.observe("a", "long", (10**6 + i) * us, 60 * us)
    assert window.count("a", "long") <= 181


def test_configurable_risk_model() -> None:
    model = RiskModel.from_dict({"operation": {"read": 1}, "connector": {"confidential": 2}, "target": {"prod": 3},
                                 "frequency": {"free_calls": 0, "cap": 4}})
    st = state(model=model)
    d = decide(call(), st)
    assert d.to_record()["score"] == {"operation": 1, "connector": 2, "frequency": 1, "target": 3, "total": 7}
    assert st.policies.revision != state().policies.revision


def test_string_timestamps_and_bad_ones() -> None:
    st = state()
    d = decide(Call(ts="2026-04-14T10:00:00.5+02:00", agent="triage-cs-01", action="servicenow.change.read"), st)
    assert d.to_record()["ts"] == "2026-04-14T08:00:00.500000Z"
    with pytest.raises(InputError, match="call ts 'yesterday' is not an RFC 3339 timestamp"):
        decide(Call(ts="yesterday", agent="triage-cs-01", action="servicenow.change.read"), st)


def test_decision_ids_are_deterministic_and_distinct() -> None:
    a = [decide(call(), state()).to_record()["decision_id"] for _ in range(2)]
    assert a[0] == a[1]
    st = state()
    b = {decide(call(), st).to_record()["decision_id"] for _ in range(5)}
    assert len(b) == 5


def test_static_rules_are_memoized_per_target() -> None:
    st = state(policy("p", deny("prod-only", "servicenow.*", 'target.env == "prod"')))
    assert decide(call(), st).verdict == "DENY"
    assert decide(call(target={"env": "dev"}), st).verdict == "ALLOW"
    assert decide(call(), st).verdict == "DENY"
    assert len(st.memo) == 2


def test_state_replace_does_not_share_caches() -> None:
    import dataclasses

    st = state(policy("p", deny("prod-only", "servicenow.*", 'target.env == "prod"')))
    decide(call(), st)
    other = dataclasses.replace(st, policies=state().policies, window=SessionWindow())
    assert other.memo == {} and other.resolved == {}
    assert decide(call(), other).verdict == "ALLOW"


def test_call_from_activity_record() -> None:
    c = Call.from_dict({"ts": "2026-04-14T10:00:00Z", "agent": "a", "session": "s", "action": "x.y.z",
                        "target": {"system": "s", "env": "prod"}, "payload": {"k": 1}, "verdict": "ALLOW"})
    assert (c.agent, c.session, c.action, c.payload, c.target) == ("a", "s", "x.y.z", {"k": 1},
                                                                    {"system": "s", "env": "prod"})
    with pytest.raises(InputError, match="activity record is missing field 'action'"):
        Call.from_dict({"ts": "2026-04-14T10:00:00Z", "agent": "a"})


def test_engine_state_defaults() -> None:
    st = EngineState.build()
    d = decide(call(), st)
    assert (d.verdict, d.reason) == ("DENY", "agent-unknown")


def test_grants_from_dicts() -> None:
    st = EngineState.build(
        [AgentInfo.from_doc(agent_doc())],
        grants=[{"id": "g-1", "agent": "triage-cs-01", "actions": ["servicenow.incident.read"], "scope": {},
                 "phase": "Approved", "approved_at": "2026-04-14T09:55:00Z", "expires_at": "2026-04-14T10:00:00Z"},
                {"id": "g-2", "agent": "triage-cs-01", "actions": ["servicenow.incident.read"], "scope": {},
                 "phase": "Approved", "approved_at": T0, "expires_at": T0 + timedelta(minutes=1)}],
    )
    d = decide(call("servicenow.incident.read"), st)
    assert (d.verdict, d.reason, d.grant) == ("ALLOW", "grant", "g-2")
    late = decide(call("servicenow.incident.read", ts=T0 + timedelta(minutes=1)), st)
    assert late.reason == "not-in-manifest"
