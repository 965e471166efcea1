"""`arxctl drift check` end to end: detection, --apply through lifecycle, the signed webhook, idempotence, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from arxctl.chain import store as chain
from arxctl.registry import config as project
from arxctl.registry import lifecycle
from arxctl.store.sqlite import Store
from tests.conftest import EXAMPLES
from tests.drift.conftest import SECRET, Receiver

NOW = "2026-04-14T12:00:00Z"
ACTOR = "secops-bot"


def event(ts: str, agent: str, action: str, system: str, env: str, **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "agent": agent, "session": "s-1", "action": action, "target": {"system": system, "env": env},
            **extra}


ACTIVITY = [
    event("2026-04-14T10:00:00Z", "triage-cs-01", "servicenow.change.read", "servicenow-prod", "prod"),
    event("2026-04-14T10:01:00Z", "triage-cs-01", "aws.s3.delete_object", "aws-prod", "prod",
          payload={"bucket": "bank-logs-prod"}, verdict="DENY"),
    event("2026-04-14T10:02:00Z", "triage-cs-01", "aws.s3.delete_object", "aws-prod", "prod",
          payload={"bucket": "bank-logs-prod"}),
    event("2026-04-14T10:05:00Z", "pr-reviewer", "github.pulls.merge", "github-bank", "prod"),
    event("2026-04-14T10:06:00Z", "incident-responder", "crowdstrike.incident.read", "falcon-us1", "prod"),
    event("2026-04-14T10:07:00Z", "triage-cs-02", "servicenow.change.update", "servicenow-staging", "staging"),
]


def write_activity(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.fixture
def fleet(cli, state_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example fleet registered, a config whose webhook is the loopback receiver, time pinned at NOW."""
    monkeypatch.setenv("ARX_NOW", NOW)
    monkeypatch.setenv("ARX_TEST_WEBHOOK_SECRET", SECRET)
    result = cli("register", str(EXAMPLES / "manifests"), str(EXAMPLES / "policies"))
    assert result.exit_code == 0, result.output
    (state_dir / "config.yaml").write_text(
        f'admins: [carol]\nwebhook: {{url: "{receiver.url}", secret_env: ARX_TEST_WEBHOOK_SECRET, timeout: 2s, '
        "retries: 2}\n")
    return write_activity(state_dir.parent / "activity.ndjson", ACTIVITY)


def records(state_dir: Path, start: int = 1) -> list[dict[str, Any]]:
    with Store(state_dir) as store:
        return [orjson.loads(line) for line in chain.iter_lines(store.conn, start=start)]


def check_json(cli, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("drift", "check", *args, "--format", "json")
    return result.exit_code, orjson.loads(result.stdout)


def decide(cli, agent: str, action: str) -> tuple[str, str, int]:
    result = cli("decide", "--agent", agent, "--action", action, "-o", "json")
    assert result.exit_code == 0, result.output
    record = orjson.loads(result.stdout)
    return record["verdict"], record["reason"], record["score"]["total"]


def test_apply_suspends_throttles_alerts_and_fires_the_signed_webhook(cli, fleet: Path, state_dir: Path,
                                                                      receiver: Receiver) -> None:
    code, out = check_json(cli, "--activity", str(fleet), "--apply", "--as", ACTOR)
    assert code == 1
    ids = {a["agent"]: a["report_id"] for a in out["agents"]}
    assert [(a["agent"], a["severity"], a["response"], a["webhook"],
             [(f["kind"], f["subject"], f["severity"], f["count"]) for f in a["findings"]]) for a in out["agents"]] == [
        ("triage-cs-01", "critical", "suspend", True,
         [("new-operation-class", "destructive", "critical", 2), ("undeclared-connector", "aws", "high", 2)]),
        ("pr-reviewer", "medium", "throttle", False, [("undeclared-action", "github.pulls.merge", "medium", 1)]),
        ("incident-responder", "low", "alert", False,
         [("undeclared-action", "crowdstrike.incident.read", "low", 1)]),
    ]
    assert (out["events"], out["agents_seen"], out["by_severity"]) == (
        6, 4, {"low": 1, "medium": 1, "high": 0, "critical": 1})
    assert out["applied"] == [
        {"agent": "triage-cs-01", "report_id": ids["triage-cs-01"], "severity": "critical", "response": "suspend",
         "outcome": "suspended", "detected_seq": 11, "already_recorded": False, "action_seq": 12,
         "webhook": {"delivery": ids["triage-cs-01"], "delivered": True, "outcome": "delivered",
                     "detail": "HTTP 200", "attempts": 1}},
        {"agent": "pr-reviewer", "report_id": ids["pr-reviewer"], "severity": "medium", "response": "throttle",
         "outcome": "throttled", "detected_seq": 14, "already_recorded": False, "action_seq": 15, "webhook": None},
        {"agent": "incident-responder", "report_id": ids["incident-responder"], "severity": "low",
         "response": "alert", "outcome": "alerted", "detected_seq": 16, "already_recorded": False,
         "action_seq": None, "webhook": None},
    ]

    written = records(state_dir, start=10)
    assert [(r["seq"], r["type"], r["agent"], r["actor"], r["ts"]) for r in written] == [
        (10, "drift.checked", None, ACTOR, NOW),
        (11, "drift.detected", "triage-cs-01", ACTOR, NOW),
        (12, "agent.suspended", "triage-cs-01", ACTOR, NOW),
        (13, "webhook.delivery", "triage-cs-01", ACTOR, NOW),
        (14, "drift.detected", "pr-reviewer", ACTOR, NOW),
        (15, "agent.throttled", "pr-reviewer", ACTOR, NOW),
        (16, "drift.detected", "incident-responder", ACTOR, NOW),
    ]
    r1 = ids["triage-cs-01"]
    assert written[0]["body"] == {
        "source": str(fleet), "events": 6, "agents_seen": 4, "agents_drifted": 3,
        "by_severity": {"low": 1, "medium": 1, "high": 0, "critical": 1}, "reports": list(ids.values())}
    assert written[1]["body"] == {"report_id": r1, **out["agents"][0]}
    assert written[2]["body"] == {
        "reason": f"drift critical ({r1}): new-operation-class destructive, undeclared-connector aws",
        "source": "drift"}
    delivery = dict(written[3]["body"])
    assert isinstance(delivery.pop("latency_ms"), int)
    port = receiver.server.server_address[1]
    assert delivery == {"report_id": r1, "event": "drift.detected", "agent": "triage-cs-01", "delivery": r1,
                        "attempt": 1, "outcome": "delivered", "status": 200, "detail": "HTTP 200", "final": True,
                        "target": f"http://127.0.0.1:{port}"}

    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    assert (got.signature_ok, got.fresh, got.headers["X-Arx-Delivery"]) == (True, True, r1)
    assert got.json() == {
        "type": "drift.detected", "id": r1, "ts": NOW, "agent": "triage-cs-01", "severity": "critical",
        "response": "suspend", "status": "active", "findings": out["agents"][0]["findings"],
        "chain": {"seq": 11, "hash": written[1]["hash"]}}

    everything = b"".join(orjson.dumps(r) for r in records(state_dir))
    assert SECRET.encode() not in everything and b"q-secret-path" not in everything
    verify = cli("chain", "verify")
    assert verify.exit_code == 0, verify.output
    assert decide(cli, "triage-cs-01", "servicenow.change.read") == ("DENY", "agent-suspended", 100)
    assert decide(cli, "pr-reviewer", "github.pulls.review") == ("APPROVAL_REQUIRED", "throttled", 48)
    assert decide(cli, "pr-reviewer", "github.pulls.read") == ("ALLOW", "threshold", 33)
    assert decide(cli, "incident-responder", "crowdstrike.host.read") == ("ALLOW", "threshold", 41)


def test_applying_the_same_evidence_twice_changes_nothing(cli, fleet: Path, state_dir: Path,
                                                          receiver: Receiver) -> None:
    assert cli("drift", "check", "--activity", str(fleet), "--apply").exit_code == 1
    before = records(state_dir)
    code, out = check_json(cli, "--activity", str(fleet), "--apply")
    assert code == 1
    assert [(a["agent"], a["outcome"], a["detected_seq"], a["already_recorded"], a["action_seq"], a["webhook"])
            for a in out["applied"]] == [
        ("triage-cs-01", "skipped: this report was handled at chain seq 11", 11, True, None,
         {"delivery": out["applied"][0]["report_id"], "delivered": True, "outcome": "skipped",
          "detail": "already delivered (chain seq 13)", "attempts": 0}),
        ("pr-reviewer", "skipped: this report was handled at chain seq 14", 14, True, None, None),
        ("incident-responder", "skipped: this report was handled at chain seq 16", 16, True, None, None),
    ]
    after = records(state_dir)
    assert after[:-1] == before
    assert (after[-1]["seq"], after[-1]["type"]) == (17, "drift.checked")
    assert len(receiver.requests) == 1
    assert cli("chain", "verify").exit_code == 0


def test_new_evidence_while_suspended_is_recorded_but_not_suspended_twice(cli, fleet: Path, state_dir: Path) -> None:
    assert cli("drift", "check", "--activity", str(fleet), "--apply").exit_code == 1
    more = write_activity(state_dir.parent / "more.ndjson", [
        event("2026-04-14T11:00:00Z", "triage-cs-01", "aws.s3.delete_bucket", "aws-prod", "prod")])
    code, out = check_json(cli, "--activity", str(more), "--apply")
    assert code == 1
    assert [(a["agent"], a["outcome"], a["already_recorded"], a["webhook"]["outcome"]) for a in out["applied"]] == [
        ("triage-cs-01", "skipped: already suspended", False, "delivered")]
    assert [r["type"] for r in records(state_dir, start=17)] == ["drift.checked", "drift.detected", "webhook.delivery"]
    suspensions = [r for r in records(state_dir) if r["type"] == "agent.suspended"]
    assert len(suspensions) == 1


def test_evidence_older_than_a_reactivation_does_not_suspend_again(cli, fleet: Path, state_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("drift", "check", "--activity", str(fleet), "--apply").exit_code == 1
    with Store(state_dir) as store:
        lifecycle.reactivate(store, "triage-cs-01", actor="carol", reason="bad deploy rolled back",
                             config=project.load(state_dir), ts="2026-04-14T12:30:00Z")
    part = write_activity(state_dir.parent / "part.ndjson", ACTIVITY[:2])
    code, out = check_json(cli, "--activity", str(part), "--apply")
    assert code == 1
    reactivated = [r["seq"] for r in records(state_dir) if r["type"] == "agent.reactivated"]
    assert [(a["agent"], a["outcome"]) for a in out["applied"]] == [
        ("triage-cs-01", f"skipped: the evidence predates the reactivation at 2026-04-14T12:30:00Z "
                         f"(chain seq {reactivated[0]})")]
    assert decide(cli, "triage-cs-01", "servicenow.change.read") == ("ALLOW", "threshold", 41)

    monkeypatch.setenv("ARX_NOW", "2026-04-14T14:00:00Z")
    fresh = write_activity(state_dir.parent / "fresh.ndjson", [
        *ACTIVITY[:2], event("2026-04-14T13:00:00Z", "triage-cs-01", "aws.s3.delete_object", "aws-prod", "prod")])
    code, out = check_json(cli, "--activity", str(fresh), "--apply")
    assert [(a["agent"], a["outcome"]) for a in out["applied"]] == [("triage-cs-01", "suspended")]
    assert decide(cli, "triage-cs-01", "servicenow.change.read") == ("DENY", "agent-suspended", 100)
    assert cli("chain", "verify").exit_code == 0


def test_failed_attempts_are_retried_and_each_is_recorded(cli, fleet: Path, state_dir: Path,
                                                          receiver: Receiver) -> None:
    receiver.fail_first = 1
    code, out = check_json(cli, "--activity", str(fleet), "--apply")
    assert code == 1
    assert out["applied"][0]["webhook"] == {"delivery": out["applied"][0]["report_id"], "delivered": True,
                                            "outcome": "delivered", "detail": "HTTP 200", "attempts": 2}
    deliveries = [r["body"] for r in records(state_dir) if r["type"] == "webhook.delivery"]
    assert [(d["attempt"], d["outcome"], d["status"], d["final"]) for d in deliveries] == [
        (1, "http-error", 503, False), (2, "delivered", 200, True)]
    assert [r.signature_ok for r in receiver.requests] == [True, True]


def test_without_the_secret_the_webhook_is_recorded_as_not_sent_and_sent_on_a_later_run(
        cli, fleet: Path, state_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARX_TEST_WEBHOOK_SECRET")
    result = cli("drift", "check", "--activity", str(fleet), "--apply")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[lines.index("  applied: suspended (chain seq 12), recorded at chain seq 11") + 1] == (
        "  webhook: not-sent after 0 attempts: environment variable ARX_TEST_WEBHOOK_SECRET (webhook.secret_env) "
        "is empty or unset")
    assert receiver.requests == []
    deliveries = [r["body"] for r in records(state_dir) if r["type"] == "webhook.delivery"]
    assert [(d["attempt"], d["outcome"], d["final"], d["target"]) for d in deliveries] == [
        (0, "not-sent", True, f"http://127.0.0.1:{receiver.server.server_address[1]}")]

    monkeypatch.setenv("ARX_TEST_WEBHOOK_SECRET", SECRET)
    code, out = check_json(cli, "--activity", str(fleet), "--apply")
    assert code == 1
    assert (out["applied"][0]["outcome"], out["applied"][0]["webhook"]["outcome"]) == (
        "skipped: this report was handled at chain seq 11", "delivered")
    assert [r.signature_ok for r in receiver.requests] == [True]


def test_a_hanging_receiver_is_bounded_by_the_webhook_deadline(cli, fleet: Path, state_dir: Path,
                                                              receiver: Receiver) -> None:
    receiver.hang = True
    code, out = check_json(cli, "--activity", str(fleet), "--apply", "--webhook-deadline", "1s")
    assert code == 1
    assert out["applied"][0]["webhook"] == {
        "delivery": out["applied"][0]["report_id"], "delivered": False, "outcome": "timeout",
        "detail": "no answer within 1.0s; gave up: deadline reached", "attempts": 1}
    assert out["applied"][0]["outcome"] == "suspended"


def test_drift_from_the_chain_suspends_and_the_engine_then_denies(cli, fleet: Path, state_dir: Path) -> None:
    for action in ("servicenow.change.read", "crowdstrike.host.contain"):
        assert cli("decide", "--agent", "triage-cs-01", "--action", action, "--record").exit_code == 0
    code, out = check_json(cli, "--from-chain", "--apply")
    assert code == 1
    assert [(a["agent"], a["severity"], [(f["kind"], f["subject"], f["first_at"]) for f in a["findings"]])
            for a in out["agents"]] == [
        ("triage-cs-01", "critical", [("new-operation-class", "containment", "chain seq 11"),
                                      ("undeclared-connector", "crowdstrike", "chain seq 11")])]
    assert out["applied"][0]["outcome"] == "suspended"
    assert decide(cli, "triage-cs-01", "servicenow.change.read") == ("DENY", "agent-suspended", 100)
    assert cli("chain", "verify").exit_code == 0


def test_no_drift_exits_0(cli, fleet: Path, state_dir: Path) -> None:
    clean = write_activity(state_dir.parent / "clean.ndjson", [ACTIVITY[0]])
    result = cli("drift", "check", "--activity", str(clean))
    assert (result.exit_code, result.stdout) == (0, (
        f"drift check: 1 call by 1 agent from {clean}, 2026-04-14T10:00:00Z .. 2026-04-14T10:00:00Z\n"
        "no drift: every call is inside its agent's declared manifest\n"))


def test_the_text_report(cli, fleet: Path, state_dir: Path) -> None:
    two = write_activity(state_dir.parent / "two.ndjson", ACTIVITY[3:5])
    result = cli("drift", "check", "--activity", str(two))
    code, out = check_json(cli, "--activity", str(two))
    ids = [a["report_id"] for a in out["agents"]]
    assert (result.exit_code, code) == (1, 1)
    assert result.stdout == (
        f"drift check: 2 calls by 2 agents from {two}, 2026-04-14T10:05:00Z .. 2026-04-14T10:06:00Z\n"
        "\n"
        f"pr-reviewer [active]: MEDIUM drift -> throttle  ({ids[0]})\n"
        "  medium   undeclared-action     github.pulls.merge           1 call    github.pulls.merge (write) is not "
        f"declared for connector github  (first: {two}:1)\n"
        "\n"
        f"incident-responder [active]: LOW drift -> alert  ({ids[1]})\n"
        "  low      undeclared-action     crowdstrike.incident.read    1 call    crowdstrike.incident.read (read) is "
        f"not declared for connector crowdstrike  (first: {two}:2)\n"
        "\n"
        "2 agents drifted: 1 medium, 1 low; re-run with --apply to respond\n")
    assert [r["type"] for r in records(state_dir, start=10)] == []


def test_bad_activity_writes_nothing_even_with_apply(cli, fleet: Path, state_dir: Path) -> None:
    bad = state_dir.parent / "bad.ndjson"
    lines = [orjson.dumps(ACTIVITY[1]), orjson.dumps(ACTIVITY[2]), b'{"ts":"2026-04-14T10:00:00Z"}\n']
    bad.write_bytes(b"\n".join(lines))
    before = records(state_dir)
    result = cli("drift", "check", "--activity", str(bad), "--apply")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", f"error: {bad}:3:1: activity record is missing field 'agent'\n")
    assert records(state_dir) == before


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "last week"],
     "error: --since 'last week': use an RFC 3339 timestamp or a duration such as 24h or 7d\n"),
    (["--webhook-deadline", "soon"], "error: --webhook-deadline: invalid duration 'soon': use a number and a unit, "
                                     "e.g. 30s, 15m, 4h, 1h30m, 7d\n"),
    ([], "error: give exactly one of --activity FILE or --from-chain\n"),
])
def test_usage_errors_exit_2(cli, fleet: Path, args: list[str], message: str) -> None:
    result = cli("drift", "check", *args)
    assert (result.exit_code, result.stderr) == (2, message)


def test_a_bad_config_is_reported_with_its_position(cli, fleet: Path, state_dir: Path) -> None:
    (state_dir / "config.yaml").write_text("webhook: {url: ftp://x}\n")
    result = cli("drift", "check", "--activity", str(fleet), "--apply")
    assert (result.exit_code, result.stderr) == (
        2, f"error: {state_dir / 'config.yaml'}:1:16: ARX103 $.webhook.url: url 'ftp://x' must start with http:// "
           "or https://\n")
