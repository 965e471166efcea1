"""Invariants of the engine over generated policy sets and calls (hypothesis)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arxctl.policy.engine import INTERCEPT_REASONS, AgentInfo, Call, decide
from arxctl.policy.risk import band
from tests.policy.helpers import T0, agent_doc, approve, call, deny, grant, policy, state

ACTIONS = ["servicenow.change.read", "servicenow.change.close", "slack.chat.post", "aws.s3.delete_object",
           "crowdstrike.host.contain", "github.pulls.merge"]
WHENS = [*ACTIONS, "servicenow.*", "*", "aws.s3.*", "crowdstrike.host.*", "nomatch.*", "*.chat.*"]
CONDITIONS = [
    None, "payload.n > 2", 'target.env == "prod"', 'operation == "write"', "session.count > 2",
    "has(payload.flag) && payload.flag", 'agent.labels.team == "secops"', "payload.maybe > 1", "1 + 1",
    'action.startsWith("servicenow")', 'now > "2026-04-14T10:00:30Z"',
]
RANK = {"ALLOW": 0, "APPROVAL_REQUIRED": 1, "DENY": 2}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rules(draw: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        when, cond = draw(st.sampled_from(WHENS)), draw(st.sampled_from(CONDITIONS))
        if draw(st.booleans()):
            out.append(deny(f"r{i}", when, cond))
        else:
            out.append(approve(f"r{i}", when, cond, severity=draw(st.sampled_from(["low", "medium", "high"]))))
    return out


@st.composite
def policies(draw: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        thresholds = None
        if draw(st.booleans()):
            review = draw(st.integers(20, 90))
            thresholds = {"review": review, "deny": draw(st.integers(review + 1, 101))}
        selector = draw(st.sampled_from([None, {"env": "prod"}, {"env": "dev"}]))
        out.append(policy(f"p{i}", *draw(rules()), thresholds=thresholds, selector=selector))
    return out


@st.composite
def calls(draw: Any) -> Call:
    payload: dict[str, Any] = {"n": draw(st.integers(0, 5))}
    if draw(st.booleans()):
        payload["flag"] = draw(st.booleans())
    if draw(st.booleans()):
        payload["maybe"] = draw(st.integers(0, 3))
    target = draw(st.sampled_from([None, {"env": "prod"}, {"env": "dev"}, {"env": "staging"}]))
    return call(draw(st.sampled_from(ACTIONS)), payload=payload, target=target,
                ts=T0 + timedelta(seconds=draw(st.integers(0, 59))))


def _agents(throttled: bool, status: str = "active") -> list[AgentInfo]:
    return [AgentInfo.from_doc(agent_doc(), status=status, throttled=throttled)]


def _decide(docs: list[dict[str, Any]], c: Call, throttled: bool = False, grants: tuple = (), warm: int = 0):
    """A fresh state; `warm` earlier calls in the same session put the frequency component in play."""
    s = state(*docs, agents=_agents(throttled), grants=grants)
    for i in range(warm):
        decide(call("servicenow.change.read", ts=c.ts - timedelta(milliseconds=warm - i)), s)  # type: ignore[operator]
    return decide(c, s).to_record()


def _outcome(record: dict[str, Any]) -> tuple:
    return (record["verdict"], record["reason"], sorted(record["rules"]), record["score"], record.get("approval"),
            record["message"], record.get("grant"))


def recompute(record: dict[str, Any]) -> str:
    """An auditor's verdict from the record alone."""
    score = record["score"]
    parts = score["operation"] + score["connector"] + score["frequency"] + score["target"] + score.get("fixed", 0)
    assert parts == score["total"]
    if record["reason"] in INTERCEPT_REASONS:
        assert score["total"] == 100 and score.get("fixed") == 100
        return "DENY"
    if record["reason"] == "policy-error":
        return "DENY"
    verdict = RANK[band(score["total"], record["thresholds"]["review"], record["thresholds"]["deny"])]
    for m in record["matched"]:
        verdict = max(verdict, 2 if m["outcome"] == "deny" else 1)
    if record["reason"] == "throttled":
        verdict = max(verdict, 1)
    if verdict == 1 and "grant" in record:
        verdict = 0
    return ["ALLOW", "APPROVAL_REQUIRED", "DENY"][verdict]


@SETTINGS
@given(policies(), calls(), st.booleans(), st.integers(0, 14), st.randoms(use_true_random=False))
def test_rule_and_policy_order_never_matters(docs, c, throttled, warm, rnd: random.Random) -> None:
    baseline = _decide(docs, c, throttled, warm=warm)
    shuffled = []
    for doc in docs:
        copy = {**doc, "spec": {**doc["spec"], "rules": list(doc["spec"]["rules"])}}
        rnd.shuffle(copy["spec"]["rules"])
        shuffled.append(copy)
    rnd.shuffle(shuffled)
    again = _decide(shuffled, c, throttled, warm=warm)
    assert _outcome(again) == _outcome(baseline)
    assert again["policy_revision"] == baseline["policy_revision"]


@SETTINGS
@given(policies(), calls(), st.sampled_from(WHENS), st.sampled_from(CONDITIONS), st.integers(0, 4))
def test_adding_a_deny_rule_is_never_less_restrictive(docs, c, when, cond, where) -> None:
    before = _decide(docs, c)
    extra = deny("added", when, cond)
    if docs and where < len(docs):
        changed = [*docs]
        changed[where] = {**docs[where], "spec": {**docs[where]["spec"],
                                                   "rules": [*docs[where]["spec"]["rules"], extra]}}
    else:
        changed = [*docs, policy("added-policy", extra)]
    after = _decide(changed, c)
    assert RANK[after["verdict"]] >= RANK[before["verdict"]]


@SETTINGS
@given(policies(), calls(), st.booleans())
def test_a_grant_never_lifts_a_deny(docs, c, throttled) -> None:
    before = _decide(docs, c, throttled)
    covering = grant(actions=(c.action,))
    after = _decide(docs, c, throttled, grants=(covering,))
    if before["verdict"] == "DENY" and before["reason"] != "not-in-manifest":
        assert after["verdict"] == "DENY"
        assert after["reason"] == before["reason"]
    if before["verdict"] == "APPROVAL_REQUIRED":
        assert (after["verdict"], after["reason"], after["grant"]) == ("ALLOW", "grant", "fix-0414")
    if before["verdict"] == "ALLOW":
        assert after["verdict"] == "ALLOW"


@SETTINGS
@given(policies(), calls(), st.booleans())
def test_any_cel_error_denies(docs, c, throttled) -> None:
    covering = (grant(actions=(c.action,)),)
    before = _decide(docs, c, throttled, grants=covering)
    broken = policy("zz-broken", approve("explodes", c.action, "payload.no_such_field > 1"))
    after = _decide([*docs, broken], c, throttled, grants=covering)
    if before["reason"] in INTERCEPT_REASONS:
        assert after["reason"] == before["reason"]
    else:
        assert (after["verdict"], after["reason"]) == ("DENY", "policy-error")
        assert after["score"] == before["score"]


@SETTINGS
@given(policies(), calls(), st.booleans(), st.integers(0, 30), st.booleans(),
       st.sampled_from(["active", "suspended", "decommissioned"]))
def test_components_sum_and_recompute(docs, c, throttled, warm, granted, status) -> None:
    s = state(*docs, agents=_agents(throttled, status), grants=(grant(actions=(c.action,)),) if granted else ())
    for i in range(warm):
        decide(call("servicenow.change.read", ts=c.ts - timedelta(milliseconds=warm - i)), s)  # type: ignore[operator]
    record = decide(c, s).to_record()
    assert recompute(record) == record["verdict"]
    assert record["session_count"] == warm + 1
