"""The replay against hand-computed expectations (tests/simulate/fixtures, worked out in the comments)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson
import pytest

from arxctl.errors import InputError
from arxctl.policy import simulate as S
from arxctl.policy.engine import Grant

from .conftest import ACTIVITY, BASELINE, PROPOSED, make_spec, run

# Scores (formats.md section 3) for the fixture agents:
#   ops-bot servicenow.change.read   5 + 16 + 20 = 41      ALLOW under both
#   ops-bot servicenow.change.close 20 + 16 + 20 = 56      baseline ALLOW (< 60) or APPROVAL (rule, 2 ids);
#                                                          proposed review 55 -> APPROVAL (threshold or rule)
#   ops-bot slack.chat.post         20 +  8 + 20 = 48 + f  posts 17-20 of the burst (f = 7..10) reach 55..58:
#                                                          baseline ALLOW, proposed APPROVAL (threshold)
#   dev-bot github.pulls.merge      20 +  8 +  0 = 28      baseline ALLOW, proposed DENY (rule no-merges)
#   ghost (unregistered) and ops-bot aws.s3.delete_object (undeclared): DENY under both


def test_hand_computed_counts(spec: S.ReplaySpec) -> None:
    report = run(spec, ACTIVITY)
    assert report["events"] == 29
    assert report["baseline"] == {"ALLOW": 26, "APPROVAL_REQUIRED": 1, "DENY": 2}
    assert report["proposed"] == {"ALLOW": 18, "APPROVAL_REQUIRED": 7, "DENY": 4}
    assert report["flips"] == [
        {"from": "ALLOW", "to": "APPROVAL_REQUIRED", "count": 6},
        {"from": "ALLOW", "to": "DENY", "count": 2},
    ]
    assert report["by_rule"] == {
        "change-control/close-over-one": {"baseline": 1, "proposed": 1, "new_denies": 0, "new_approvals": 0},
        "change-control/no-merges": {"baseline": 0, "proposed": 2, "new_denies": 2, "new_approvals": 0},
    }
    assert list(report["by_agent"]) == ["ops-bot", "dev-bot", "ghost"]
    assert report["by_agent"]["ops-bot"] == {
        "events": 25, "flips": 6, "new_denies": 0, "new_approvals": 6,
        "baseline": {"ALLOW": 23, "APPROVAL_REQUIRED": 1, "DENY": 1},
        "proposed": {"ALLOW": 17, "APPROVAL_REQUIRED": 7, "DENY": 1},
    }
    assert report["by_agent"]["dev-bot"]["flips"] == 2
    assert report["by_agent"]["ghost"] == {
        "events": 1, "flips": 0, "new_denies": 0, "new_approvals": 0,
        "baseline": {"ALLOW": 0, "APPROVAL_REQUIRED": 0, "DENY": 1},
        "proposed": {"ALLOW": 0, "APPROVAL_REQUIRED": 0, "DENY": 1},
    }
    assert report["approval_load"] == {
        "(default)": {"baseline": 0, "proposed": 6, "peak_day": "2026-04-14", "peak": 5,
                      "days": {"2026-04-14": {"baseline": 0, "proposed": 5},
                               "2026-04-15": {"baseline": 0, "proposed": 1}}},
        "secops-leads": {"baseline": 1, "proposed": 1, "peak_day": "2026-04-14", "peak": 1,
                         "days": {"2026-04-14": {"baseline": 1, "proposed": 1}}},
    }
    assert report["new_denies"] == 2
    assert report["new_approvals"] == 6
    assert report["new_approvals_per_day"] == {"2026-04-14": 5, "2026-04-15": 1}
    assert report["max_new_approvals_per_day"] == 5
    assert report["blocked"] == [{"agent": "dev-bot", "action": "github.pulls.merge", "reason": "rule",
                                  "rules": ["change-control/no-merges"], "from": "ALLOW", "count": 2}]
    assert report["by_reason"] == {
        "baseline": {"agent-unknown": 1, "not-in-manifest": 1, "rule": 1, "threshold": 26},
        "proposed": {"agent-unknown": 1, "not-in-manifest": 1, "rule": 3, "threshold": 24},
    }
    assert report["malformed"] == {"count": 0, "lines": []}
    assert report["input"]["lines"] == 29


def test_examples_are_the_first_flips_with_payloads_masked(spec: S.ReplaySpec) -> None:
    report = run(spec, ACTIVITY)
    assert [(e["from"], e["to"], e["location"]) for e in report["examples"]] == [
        ("ALLOW", "APPROVAL_REQUIRED", f"{ACTIVITY}:2"),
        ("ALLOW", "APPROVAL_REQUIRED", f"{ACTIVITY}:24"),
        ("ALLOW", "APPROVAL_REQUIRED", f"{ACTIVITY}:25"),
        ("ALLOW", "DENY", f"{ACTIVITY}:5"),
        ("ALLOW", "DENY", f"{ACTIVITY}:29"),
    ]
    first = report["examples"][0]
    assert first["payload"] == {"change_ids": ["CHG1"], "api_token": "***"}
    assert first["baseline"] == {"verdict": "ALLOW", "reason": "threshold", "rules": []}
    assert first["proposed"] == {"verdict": "APPROVAL_REQUIRED", "reason": "threshold", "rules": [],
                                 "approvers": "(default)"}
    assert b"tok-123456" not in orjson.dumps(report)


def test_same_policies_give_no_flips() -> None:
    report = run(make_spec(baseline=PROPOSED, proposed=PROPOSED), ACTIVITY)
    assert report["flips"] == []
    assert report["baseline"] == report["proposed"] == {"ALLOW": 18, "APPROVAL_REQUIRED": 7, "DENY": 4}
    assert report["new_denies"] == report["new_approvals"] == 0
    assert report["examples"] == [] and report["blocked"] == []


def test_recorded_baseline_matches_the_computed_one() -> None:
    recorded = run(make_spec(baseline=None), ACTIVITY)
    computed = run(make_spec(), ACTIVITY)
    assert recorded["baseline"] == computed["baseline"]
    assert recorded["flips"] == computed["flips"]
    assert recorded["by_reason"]["baseline"] == {"recorded": 29}


def test_recorded_baseline_needs_a_verdict_per_line(tmp_path) -> None:
    lines = ACTIVITY.read_bytes().splitlines()
    lines[3] = lines[3].replace(b',"verdict":"ALLOW"', b"")
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = run(make_spec(baseline=None), path)
    assert report["events"] == 28
    assert report["malformed"] == {"count": 1, "lines": [
        f"{path}:4: no recorded verdict (ALLOW, APPROVAL_REQUIRED or DENY) for --baseline recorded"]}


def test_since_and_until_select_calls_but_the_window_still_counts_earlier_ones(spec: S.ReplaySpec) -> None:
    since = datetime(2026, 4, 14, 11, 0, 16, tzinfo=UTC)
    until = datetime(2026, 4, 15, 0, 0, tzinfo=UTC)
    report = run(dataclasses.replace(spec, since=since, until=until), ACTIVITY)
    # posts 17-20 of the burst: their frequency still counts posts 1-16, which are before --since
    assert report["events"] == 4
    assert report["flips"] == [{"from": "ALLOW", "to": "APPROVAL_REQUIRED", "count": 4}]
    assert report["input"]["skipped"] == 25


def test_a_grant_admits_an_undeclared_action_only_inside_its_window(spec: S.ReplaySpec) -> None:
    grant = Grant("g-1", "ops-bot", frozenset({"aws.s3.delete_object"}), {"bucket": "logs"}, "Approved",
                  datetime(2026, 4, 14, 10, 0, tzinfo=UTC), datetime(2026, 4, 14, 10, 15, tzinfo=UTC))
    report = run(dataclasses.replace(spec, grants=(grant,)), ACTIVITY)
    # 30 destructive + 16 confidential + 20 prod = 66: APPROVAL (threshold) that the grant turns into ALLOW
    assert report["by_reason"]["proposed"] == {"agent-unknown": 1, "grant": 1, "rule": 3, "threshold": 24}
    assert report["by_reason"]["baseline"] == {"agent-unknown": 1, "grant": 1, "rule": 1, "threshold": 26}
    late = dataclasses.replace(grant, approved_at=datetime(2026, 4, 14, 10, 9, tzinfo=UTC))
    report = run(dataclasses.replace(spec, grants=(late,)), ACTIVITY)
    assert "grant" not in report["by_reason"]["proposed"]
    assert report["by_reason"]["proposed"]["not-in-manifest"] == 1


@pytest.mark.parametrize(("text", "pair"), [("ALLOW->DENY", ("ALLOW", "DENY")),
                                            ("approval_required:deny", ("APPROVAL_REQUIRED", "DENY"))])
def test_parse_flip(text: str, pair: tuple[str, str]) -> None:
    assert S.parse_flip(text) == pair


@pytest.mark.parametrize("text", ["ALLOW", "ALLOW->ALLOW", "ALLOW->MAYBE"])
def test_parse_flip_rejects(text: str) -> None:
    with pytest.raises(InputError):
        S.parse_flip(text)


def test_parse_when() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert S.parse_when("30d", now, "--since") == datetime(2026, 4, 1, tzinfo=UTC)
    assert S.parse_when("2026-04-14", now, "--since") == datetime(2026, 4, 14, tzinfo=UTC)
    assert S.parse_when("2026-04-14T10:00:00+02:00", now, "--since") == datetime(2026, 4, 14, 8, tzinfo=UTC)
    with pytest.raises(InputError):
        S.parse_when("last week", now, "--since")


def test_gates(spec: S.ReplaySpec) -> None:
    report = run(spec, ACTIVITY)
    checks = S.gates(2, 4, ["ALLOW->DENY", "DENY->ALLOW"])
    assert S.apply_gates(report, checks) is False
    assert report["gates"] == [
        {"gate": "max-new-denies", "limit": 2, "value": 2, "ok": True},
        {"gate": "max-new-approvals-per-day", "limit": 4, "value": 5, "ok": False},
        {"gate": "fail-on-flip ALLOW->DENY", "limit": 0, "value": 2, "ok": False},
        {"gate": "fail-on-flip DENY->ALLOW", "limit": 0, "value": 0, "ok": True},
    ]
    assert report["ok"] is False


def test_baseline_side_info(spec: S.ReplaySpec) -> None:
    report = run(spec, ACTIVITY)
    assert report["sides"]["baseline"]["source"] == str(BASELINE)
    assert report["sides"]["baseline"]["policies"] == ["change-control"]
    assert report["sides"]["proposed"]["policies"] == ["change-control", "tighter"]
    assert report["sides"]["baseline"]["revision"] != report["sides"]["proposed"]["revision"]
