"""Every drift rule with its exact severity, the aggregation of findings and the response each manifest asks for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arxctl.registry.drift import rate_severity, target_severity
from tests.drift.helpers import GITHUB, SERVICENOW, T0, burst, call, findings, manifest, report
from tests.policy.helpers import grant


def test_calls_inside_the_manifest_are_not_drift() -> None:
    result = report([call("servicenow.change.read"), call("servicenow.change.close", env="prod"),
                     call("github.pulls.read", system="github-bank")])
    assert (result.events, result.agents_seen, result.drift, result.agents) == (3, 1, False, ())


@pytest.mark.parametrize(("action", "expected"), [
    ("servicenow.incident.read", [("undeclared-action", "servicenow.incident.read", "low", 1)]),
    ("servicenow.change.update", [("undeclared-action", "servicenow.change.update", "medium", 1)]),
    ("servicenow.change.delete", [("new-operation-class", "destructive", "critical", 1),
                                  ("undeclared-action", "servicenow.change.delete", "high", 1)]),
    ("servicenow.widget.frob", [("undeclared-action", "servicenow.widget.frob", "high", 1),
                                ("new-operation-class", "unknown", "high", 1)]),
    ("aws.s3.get_object", [("undeclared-connector", "aws", "high", 1)]),
    ("crowdstrike.host.contain", [("new-operation-class", "containment", "critical", 1),
                                  ("undeclared-connector", "crowdstrike", "high", 1)]),
])
def test_undeclared_actions_connectors_and_operation_classes(action: str, expected: list) -> None:
    assert findings(report([call(action)])) == expected


def test_a_new_operation_class_has_its_own_severity() -> None:
    reader = manifest("reader", [{**SERVICENOW, "actions": ["servicenow.change.read"]}])
    result = report([call("slack.chat.post", "reader"), call("servicenow.change.close", "reader")], reader)
    assert findings(result, "reader") == [
        ("undeclared-connector", "slack", "high", 1),
        ("undeclared-action", "servicenow.change.close", "medium", 1),
        ("new-operation-class", "write", "medium", 2),
    ]


def test_a_riskier_operation_on_a_declared_action_is_a_new_operation_class() -> None:
    result = report([call("servicenow.change.close", operation="destructive")])
    assert findings(result) == [("new-operation-class", "destructive", "critical", 1)]
    assert result.agents[0].findings[0].detail == (
        "destructive calls (first: servicenow.change.close); the manifest declares read, write")


@pytest.mark.parametrize(("declared_env", "system", "env", "expected"), [
    ("prod", None, "staging", ("low", "env staging instead of the declared prod")),
    ("staging", None, "prod", ("high", "env prod is riskier than the declared staging")),
    ("dev", None, "staging", ("high", "env staging is riskier than the declared dev")),
    ("prod", None, "qa", ("medium", "env 'qa' is not one of dev, staging, prod (declared prod)")),
    ("prod", "servicenow-dev", None, ("medium", "system servicenow-dev instead of the declared servicenow-prod")),
    ("prod", "servicenow-dev", "staging",
     ("medium", "env staging instead of the declared prod; system servicenow-dev instead of the declared "
                "servicenow-prod")),
    ("staging", "servicenow-x", "prod",
     ("high", "env prod is riskier than the declared staging; system servicenow-x instead of the declared "
              "servicenow-prod")),
    ("prod", "servicenow-prod", "prod", None),
    (None, None, "prod", None),
])
def test_target_rules(declared_env: str | None, system: str | None, env: str | None, expected: tuple | None) -> None:
    assert target_severity(declared_env, "servicenow-prod", env, system) == expected


def test_targets_outside_the_declared_env_are_drift_per_connector() -> None:
    result = report([
        call("servicenow.change.read", env="staging", where="a:1"),
        call("servicenow.change.close", system="servicenow-dev", env="prod", where="a:2"),
        call("servicenow.change.read", system="servicenow-dev", where="a:3"),
        call("github.pulls.read", env="prod", where="a:4"),
        call("github.pulls.read", system="github-public", where="a:5"),
    ])
    assert findings(result) == [
        ("undeclared-target", "github github-public/None", "medium", 1),
        ("undeclared-target", "servicenow servicenow-dev/prod", "medium", 2),
        ("undeclared-target", "servicenow servicenow-prod/staging", "low", 1),
    ]


def test_an_active_grant_covers_an_undeclared_action_inside_its_scope_only() -> None:
    g = grant("fix-1", "triage", ("servicenow.change.delete",), scope={"change": "CHG1"},
              start=T0 - timedelta(minutes=5))
    events = [
        call("servicenow.change.delete", payload={"change": "CHG1"}, where="a:1"),
        call("servicenow.change.delete", payload={"change": "CHG2"}, where="a:2"),
        call("servicenow.change.delete", ts=T0 + timedelta(minutes=11), payload={"change": "CHG1"}, where="a:3"),
    ]
    result = report(events, grants=(g,))
    assert findings(result) == [("new-operation-class", "destructive", "critical", 2),
                                ("undeclared-action", "servicenow.change.delete", "high", 2)]
    first = result.agents[0].findings[1]
    assert (first.first_at, first.first_ts, first.last_ts) == ("a:2", T0, T0 + timedelta(minutes=11))


def test_unknown_and_decommissioned_agents_are_critical_and_only_alert() -> None:
    retired = manifest("retired", [SERVICENOW])
    result = report([call("servicenow.change.read", "ghost"), call("servicenow.change.read", "retired"),
                     call("servicenow.change.read", "ghost")], manifest(), retired,
                    status={"retired": "decommissioned"})
    assert [(a.agent, a.status, a.severity, a.response, a.webhook) for a in result.agents] == [
        ("ghost", "unknown", "critical", "alert", True),
        ("retired", "decommissioned", "critical", "alert", True),
    ]
    assert findings(result, "ghost") == [("agent-unknown", "ghost", "critical", 2)]
    assert findings(result, "retired") == [("agent-decommissioned", "retired", "critical", 1)]


def test_a_suspended_agent_is_still_compared_with_its_manifest() -> None:
    result = report([call("servicenow.change.update")], status={"triage": "suspended"})
    assert [(a.status, a.severity, a.response) for a in result.agents] == [("suspended", "medium", "throttle")]


@pytest.mark.parametrize(("ratio", "severity"), [
    (0.5, None), (1.0, None), (1.01, "low"), (1.99, "low"), (2.0, "medium"), (4.99, "medium"), (5.0, "high"),
    (9.99, "high"), (10.0, "critical"), (250.0, "critical"),
])
def test_rate_tiers(ratio: float, severity: str | None) -> None:
    assert rate_severity(ratio) == severity


@pytest.mark.parametrize(("calls", "expected"), [
    (10, []),
    (11, [("rate-exceeded", "perMinute", "low", 11)]),
    (20, [("rate-exceeded", "perMinute", "medium", 20)]),
    (50, [("rate-exceeded", "perMinute", "high", 50)]),
    (100, [("rate-exceeded", "perMinute", "critical", 100)]),
])
def test_per_minute_rate_against_the_declared_rate(calls: int, expected: list) -> None:
    doc = manifest(rate={"perMinute": 10})
    events = burst(calls, every=timedelta(seconds=59) / calls)
    assert findings(report(events, doc)) == expected


def test_per_minute_is_a_sliding_window_of_less_than_60_seconds() -> None:
    doc = manifest(rate={"perMinute": 2})
    steady = burst(10, every=timedelta(seconds=30))
    assert findings(report(steady, doc)) == []
    tight = burst(3, every=timedelta(seconds=29))
    result = report(list(reversed(tight)), doc)
    assert findings(result) == [("rate-exceeded", "perMinute", "low", 3)]
    rate = result.agents[0].findings[0].to_dict()
    assert rate == {"kind": "rate-exceeded", "subject": "perMinute", "severity": "low",
                    "detail": "peak 3 calls in 60 s, declared 2/min (1.5x)", "count": 3,
                    "first_ts": "2026-04-14T10:00:58Z", "last_ts": "2026-04-14T10:00:58Z", "first_at": "a.ndjson:1",
                    "peak": 3, "declared": 2, "ratio": 1.5}


def test_per_day_counts_calls_per_utc_calendar_day() -> None:
    doc = manifest(rate={"perDay": 3})
    late = burst(3, start=T0.replace(hour=23), every=timedelta(minutes=10))
    early = burst(3, start=T0.replace(hour=0) + timedelta(days=1), every=timedelta(minutes=10))
    assert findings(report(late + early, doc)) == []
    busy = burst(7, every=timedelta(minutes=1))
    result = report(late + busy, doc)
    assert findings(result) == [("rate-exceeded", "perDay", "medium", 10)]
    assert result.agents[0].findings[0].detail == "peak 10 calls on 2026-04-14, declared 3/day (3.3x)"


def test_the_bar_never_moves_however_often_the_drift_repeats() -> None:
    once = report([call("servicenow.change.update")])
    many = report([call("servicenow.change.update", ts=T0 + timedelta(minutes=i)) for i in range(500)])
    assert findings(once) == [("undeclared-action", "servicenow.change.update", "medium", 1)]
    assert findings(many) == [("undeclared-action", "servicenow.change.update", "medium", 500)]


def test_the_manifest_drift_map_chooses_the_response_and_critical_fires_the_webhook() -> None:
    lenient = manifest("lenient", [SERVICENOW, GITHUB], drift={"medium": "alert", "critical": "throttle"})
    result = report([call("servicenow.change.update", "lenient"), call("servicenow.change.update"),
                     call("servicenow.incident.read", "lenient2"), call("crowdstrike.host.contain", "strict")],
                    manifest(), lenient, manifest("strict"), manifest("lenient2", drift={"low": "suspend"}))
    assert [(a.agent, a.severity, a.response, a.webhook) for a in result.agents] == [
        ("strict", "critical", "suspend", True),
        ("lenient", "medium", "alert", False),
        ("triage", "medium", "throttle", False),
        ("lenient2", "low", "suspend", False),
    ]
    assert result.by_severity() == {"low": 1, "medium": 2, "high": 0, "critical": 1}


def test_report_ids_depend_on_the_evidence_only() -> None:
    a = report([call("servicenow.change.update", where="x:1")]).agents[0]
    b = report([call("servicenow.change.update", where="y:9")]).agents[0]
    c = report([call("servicenow.change.update"), call("servicenow.change.update")]).agents[0]
    assert a.report_id == b.report_id
    assert a.report_id != c.report_id
    assert a.report_id.startswith("drift-") and len(a.report_id) == 26


def test_full_report_shape() -> None:
    result = report([call("servicenow.change.update", where="a.ndjson:7"),
                     call("github.pulls.read", ts=T0 + timedelta(seconds=5), where="a.ndjson:8")])
    drift = result.agents[0]
    assert result.to_dict() == {
        "source": "activity", "events": 2, "agents_seen": 1,
        "window": {"from": "2026-04-14T10:00:00Z", "to": "2026-04-14T10:00:05Z"},
        "drift": True, "by_severity": {"low": 0, "medium": 1, "high": 0, "critical": 0},
        "agents": [{
            "agent": "triage", "report_id": drift.report_id, "status": "active", "severity": "medium",
            "response": "throttle", "webhook": False,
            "findings": [{"kind": "undeclared-action", "subject": "servicenow.change.update", "severity": "medium",
                          "detail": "servicenow.change.update (write) is not declared for connector servicenow",
                          "count": 1, "first_ts": "2026-04-14T10:00:00Z", "last_ts": "2026-04-14T10:00:00Z",
                          "first_at": "a.ndjson:7"}],
        }],
    }


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_the_peak_rate_is_the_busiest_window_whatever_the_input_order(seconds: list[int], rnd) -> None:
    times = [T0 + timedelta(seconds=s) for s in seconds]
    busiest = max(sum(1 for u in times if t - timedelta(seconds=60) < u <= t) for t in times)
    expected = [("rate-exceeded", "perMinute", rate_severity(busiest / 2), busiest)] if busiest > 2 else []
    shuffled = list(times)
    rnd.shuffle(shuffled)
    for order in (times, shuffled, sorted(times, reverse=True)):
        result = report([call("servicenow.change.read", ts=t) for t in order], manifest(rate={"perMinute": 2}))
        assert findings(result) == expected


def test_a_riskier_operation_outside_the_declared_target_shows_both() -> None:
    result = report([call("servicenow.change.close", env="staging", operation="destructive")])
    assert findings(result) == [("new-operation-class", "destructive", "critical", 1),
                                ("undeclared-target", "servicenow servicenow-prod/staging", "low", 1)]


def test_a_grant_never_covers_the_target_check() -> None:
    g = grant("fix-2", "triage", ("servicenow.change.update",), start=T0 - timedelta(minutes=1))
    result = report([call("servicenow.change.update", env="dev")], grants=(g,))
    assert findings(result) == [("undeclared-target", "servicenow servicenow-prod/dev", "low", 1)]


def test_distinct_subjects_per_kind_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("arxctl.registry.drift.MAX_SUBJECTS", 2)
    result = report([call(f"servicenow.widget.v{i}", where=f"a:{i}") for i in range(5)])
    assert findings(result) == [
        ("undeclared-action", "(others)", "high", 3),
        ("undeclared-action", "servicenow.widget.v0", "high", 1),
        ("undeclared-action", "servicenow.widget.v1", "high", 1),
        ("new-operation-class", "unknown", "high", 5),
    ]
    assert result.agents[0].findings[0].detail == "more distinct undeclared-action subjects than the 2 listed"


def test_distinct_unknown_agents_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("arxctl.registry.drift.MAX_UNKNOWN_AGENTS", 2)
    result = report([call("servicenow.change.read", f"ghost-{i}") for i in (0, 1, 2, 3, 1)]
                    + [call("servicenow.change.read")])
    assert [(a.agent, [(f.subject, f.count) for f in a.findings]) for a in result.agents] == [
        ("(other unregistered agents)", [("(others)", 2)]),
        ("ghost-0", [("ghost-0", 1)]),
        ("ghost-1", [("ghost-1", 2)]),
    ]
    assert (result.events, result.agents_seen) == (6, 4)
