"""`arxctl decide` and `arxctl policy explain` end to end against an embedded store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from arxctl.chain import store as chain
from arxctl.policy.compiler import compile_policies
from arxctl.store.sqlite import open_store
from tests.policy.helpers import agent_doc, approve, deny, policy

NOW = "2026-04-14T10:00:00Z"
POLICY = policy(
    "change-control",
    approve("change-close-over-one", "servicenow.change.close", "size(payload.change_ids) > 1"),
    deny("no-prod-deletes", "aws.s3.delete_object", 'target.env == "prod"', "prod deletes go through change control"),
    selector={"env": "prod"},
)
REVISION = compile_policies([POLICY]).revision


def _dump(path: Path, doc: dict) -> Path:
    yaml = YAML()
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path


@pytest.fixture
def registered(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """triage-cs-01 and the change-control policy registered; time pinned to NOW."""
    monkeypatch.setenv("ARX_NOW", NOW)
    src = tmp_path / "src"
    src.mkdir()
    _dump(src / "agent.yaml", agent_doc())
    _dump(src / "policy.yaml", POLICY)
    result = cli("register", str(src))
    assert result.exit_code == 0, result.stderr
    return cli


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_decide_table(registered) -> None:
    result = registered("decide", "--agent", "triage-cs-01", "--action", "servicenow.change.close",
                        "--payload", '{"change_ids":["C1","C2"],"api_token":"s3cr3t"}', "--session", "s-1")
    assert result.exit_code == 0, result.stderr
    record = json.loads(registered("decide", "--agent", "triage-cs-01", "--action", "servicenow.change.close",
                                   "--payload", '{"change_ids":["C1","C2"],"api_token":"s3cr3t"}',
                                   "--session", "s-1", "-o", "json").stdout)
    assert result.stdout.splitlines() == [
        "verdict   APPROVAL_REQUIRED (rule)",
        "why       rule change-control/change-close-over-one requires APPROVAL_REQUIRED",
        "agent     triage-cs-01  session s-1",
        "action    servicenow.change.close",
        "inputs    operation write, data class confidential, target servicenow-prod (prod), "
        "call 1 in the session window",
        "score     56 = operation 20 + connector 16 + frequency 0 + target 20  (review 60, deny 80)",
        "rules     change-control/change-close-over-one (approvalRequired)",
        "approval  severity high, approvers secops-leads, timeout 4h, diff shown",
        'payload   {"api_token":"***","change_ids":["C1","C2"]}',
        "digest    " + _digest(b'{"api_token":"s3cr3t","change_ids":["C1","C2"]}'),
        "revision  " + REVISION,
        "decision  " + record["decision_id"],
    ]
    assert "s3cr3t" not in result.stdout


def test_decide_json_is_the_decision_record(registered) -> None:
    result = registered("decide", "--agent", "triage-cs-01", "--action", "aws.s3.delete_object", "--env", "prod",
                        "--payload", '{"Key":"a"}', "-o", "json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record == {
        "decision_id": record["decision_id"],
        "ts": NOW,
        "agent": "triage-cs-01",
        "session": "cli",
        "action": "aws.s3.delete_object",
        "verdict": "DENY",
        "reason": "rule",
        "score": {"operation": 30, "connector": 25, "frequency": 0, "target": 20, "total": 75},
        "thresholds": {"review": 60, "deny": 80},
        "rules": ["no-prod-deletes"],
        "policy_revision": REVISION,
        "payload_digest": _digest(b'{"Key":"a"}'),
        "message": "rule change-control/no-prod-deletes requires DENY: prod deletes go through change control",
        "matched": [{"policy": "change-control", "rule": "no-prod-deletes", "outcome": "deny"}],
        "session_count": 1,
        "operation": "destructive",
        "data_class": "restricted",
        "target": {"system": "aws-dev", "env": "prod"},
    }
    assert record["decision_id"].startswith("d-") and len(record["decision_id"]) == 34


@pytest.mark.parametrize(("action", "payload", "code"), [
    ("servicenow.change.read", "{}", 0),
    ("servicenow.change.close", '{"change_ids":["C1","C2"]}', 3),
    ("github.pulls.merge", "{}", 1),
])
def test_exit_codes(registered, action: str, payload: str, code: int) -> None:
    plain = registered("decide", "--agent", "triage-cs-01", "--action", action, "--payload", payload)
    strict = registered("decide", "--agent", "triage-cs-01", "--action", action, "--payload", payload, "--exit-code")
    assert (plain.exit_code, strict.exit_code) == (0, code)


def test_record_appends_to_the_chain_and_feeds_the_window(registered, state_dir: Path, monkeypatch) -> None:
    args = ["decide", "--agent", "triage-cs-01", "--action", "servicenow.change.read", "--session", "s-7",
            "--record", "-o", "json"]
    first = registered(*args)
    assert first.exit_code == 0, first.stderr
    assert first.stderr == "recorded as chain seq 3\n"
    monkeypatch.setenv("ARX_NOW", "2026-04-14T10:00:59Z")
    second = registered(*args)
    assert second.stderr == "recorded as chain seq 4\n"
    assert json.loads(second.stdout)["session_count"] == 2
    monkeypatch.setenv("ARX_NOW", "2026-04-14T10:01:00Z")
    other_session = registered("decide", "--agent", "triage-cs-01", "--action", "servicenow.change.read",
                               "--session", "s-8", "-o", "json")
    assert json.loads(other_session.stdout)["session_count"] == 1
    third = registered(*args[:-3], "-o", "json")
    assert json.loads(third.stdout)["session_count"] == 2
    store = open_store(state_dir, create=False)
    try:
        lines = [json.loads(line) for line in chain.iter_lines(store.conn)]
    finally:
        store.close()
    assert [r["type"] for r in lines] == ["agent.registered", "policy.registered", "decision", "decision"]
    assert lines[2]["body"] == json.loads(first.stdout)
    assert (lines[2]["agent"], lines[2]["actor"], lines[2]["ts"]) == ("triage-cs-01", "tester", NOW)
    assert registered("chain", "verify").exit_code == 0


def test_unknown_agent_without_state(cli, state_dir: Path) -> None:
    result = cli("decide", "--agent", "ghost", "--action", "slack.chat.post", "-o", "json", "--exit-code")
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert (record["verdict"], record["reason"], record["score"]) == (
        "DENY", "agent-unknown", {"operation": 0, "connector": 0, "frequency": 0, "target": 0, "fixed": 100,
                                  "total": 100})
    assert not state_dir.exists()


@pytest.mark.parametrize(("payload", "message"), [
    ('{"a":', "error: --payload:1:6: payload is not valid JSON: unexpected end of data\n"),
    ("[1]", "error: --payload: the payload must be a JSON object, got list\n"),
    ("@/nonexistent/p.json", "error: /nonexistent/p.json: cannot read the payload: "
                             "[Errno 2] No such file or directory: '/nonexistent/p.json'\n"),
])
def test_bad_payload_exits_2_and_records_nothing(registered, state_dir: Path, payload: str, message: str) -> None:
    result = registered("decide", "--agent", "triage-cs-01", "--action", "slack.chat.post", "--payload", payload,
                        "--record")
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message)
    store = open_store(state_dir, create=False)
    try:
        assert chain.size(store.conn) == 2
    finally:
        store.close()


def test_payload_from_file(registered, tmp_path: Path) -> None:
    f = tmp_path / "payload.json"
    f.write_text('{\n  "change_ids": ["C1", "C2"]\n}\n')
    result = registered("decide", "--agent", "triage-cs-01", "--action", "servicenow.change.close",
                        "--payload", f"@{f}", "-o", "json")
    assert json.loads(result.stdout)["rules"] == ["change-close-over-one"]
    f.write_text('{\n  "change_ids": [\n')
    bad = registered("decide", "--agent", "triage-cs-01", "--action", "servicenow.change.close", "--payload", f"@{f}")
    assert (bad.exit_code, bad.stderr) == (2, f"error: {f}:3:1: payload is not valid JSON: unexpected end of data\n")


def test_policy_dir_replaces_the_registered_policies(registered, tmp_path: Path) -> None:
    folder = tmp_path / "proposed"
    folder.mkdir()
    proposed = policy("strict", deny("no-slack", "slack.*"))
    _dump(folder / "strict.yaml", proposed)
    result = registered("decide", "--agent", "triage-cs-01", "--action", "slack.chat.post", "--policy", str(folder),
                        "-o", "json")
    record = json.loads(result.stdout)
    assert (record["verdict"], record["rules"], record["policy_revision"]) == (
        "DENY", ["no-slack"], compile_policies([proposed]).revision)


def test_invalid_policy_dir_exits_2(registered, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: arx.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n"
                   "    - name: r\n      when: slack.chat.post\n      if: payload.x +\n"
                   "      then: {deny: {reason: x}}\n")
    result = registered("decide", "--agent", "triage-cs-01", "--action", "slack.chat.post", "--policy", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{bad}:8:22: ARX140 $.spec.rules[0].if: CEL: ")
    assert lines[-1] == "error: the --policy files are not valid; nothing was decided"


def test_explain_table(registered) -> None:
    result = registered("policy", "explain", "--agent", "triage-cs-01", "--action", "aws.s3.delete_object")
    assert result.exit_code == 0, result.stderr
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines == [
        "agent     triage-cs-01 (active)",
        "action    aws.s3.delete_object, declared in the manifest",
        "inputs    operation destructive, data class restricted, target aws-dev (dev)",
        "score     55..70  (operation 30 + connector 25 + frequency 0..15 + target 0)",
        "by score  ALLOW..APPROVAL_REQUIRED  (review 60, deny 80)",
        "policies  change-control",
        "revision  " + REVISION,
        "POLICY          RULE             WHEN                  IF                    OUTCOME",
        'change-control  no-prod-deletes  aws.s3.delete_object  target.env == "prod"  DENY: prod deletes go through '
        "change control",
    ]


def test_explain_json(registered) -> None:
    result = registered("policy", "explain", "--agent", "triage-cs-01", "--action", "github.pulls.merge",
                        "--env", "staging", "-o", "json")
    assert json.loads(result.stdout) == {
        "agent": "triage-cs-01",
        "action": "github.pulls.merge",
        "status": "active",
        "declared": False,
        "operation": "write",
        "data_class": "internal",
        "target": {"system": "github", "env": "staging"},
        "score_range": {
            "min": {"operation": 20, "connector": 8, "frequency": 0, "target": 10, "total": 38},
            "max": {"operation": 20, "connector": 8, "frequency": 15, "target": 10, "total": 53},
        },
        "thresholds": {"review": 60, "deny": 80},
        "threshold_verdicts": {"min": "ALLOW", "max": "ALLOW"},
        "policies": ["change-control"],
        "rules": [],
        "policy_revision": REVISION,
    }


def test_explain_unknown_agent(registered) -> None:
    result = registered("policy", "explain", "--agent", "ghost", "--action", "slack.chat.post")
    assert (result.exit_code, result.stderr) == (2, "error: no agent 'ghost' (register it with `arxctl register`)\n")


@pytest.mark.parametrize("args", [["decide"], ["policy", "explain"]])
def test_help_has_an_example(cli, args: list[str]) -> None:
    result = cli(*args, "--help")
    assert result.exit_code == 0
    assert "Example: arxctl " + args[0] in result.stdout


def test_bad_env_is_a_usage_error(registered) -> None:
    result = registered("decide", "--agent", "triage-cs-01", "--action", "slack.chat.post", "--env", "production")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[:2] == ["Usage: arxctl decide [OPTIONS]", "Try 'arxctl decide -h' for help."]
