"""Every lifecycle flow end to end through the CLI, with the chain verified after each one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.lifecycle.helpers import CONFIG

T0 = "2026-04-14T10:00:00Z"
CLOSE_TWO = ["decide", "--agent", "triage-cs-01", "--action", "servicenow.change.close", "--payload",
             '{"change_ids":["CHG1","CHG2"],"api_token":"tok-9f8e7d6c"}', "--session", "s-1"]


@pytest.fixture
def world(cli, state_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The example agents and the change-control policy registered, the project config in place, time pinned."""
    monkeypatch.setenv("ARX_NOW", T0)
    result = cli("register", str(EXAMPLES / "manifests"), str(EXAMPLES / "policies" / "change-control.yaml"))
    assert result.exit_code == 0, result.stderr
    (state_dir / "config.yaml").write_text(CONFIG)
    return cli


def at(monkeypatch: pytest.MonkeyPatch, ts: str) -> None:
    monkeypatch.setenv("ARX_NOW", ts)


def verified(cli) -> None:
    result = cli("chain", "verify", "--format", "json")
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["ok"] is True


def run(cli, *args: str, code: int = 0, input: str | None = None):
    result = cli(*args, input=input)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_approval_gate_flow(world, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(world, *CLOSE_TWO, "--record", "--current-state", '{"change_ids":["CHG1"],"api_token":"old-tok"}',
                "--exit-code", code=3)
    pending = json.loads(run(world, "approvals", "list", "--group", "secops-leads", "-o", "json").stdout)
    assert len(pending) == 1
    aid = pending[0]["id"]
    assert first.stderr.splitlines()[-1] == (
        f"approval {aid} opened: group secops-leads must answer by 2026-04-14T14:00:00Z "
        f"(arxctl approvals approve {aid} --as USER)")
    shown = run(world, "approvals", "show", aid).stdout
    assert "tok-9f8e7d6c" not in shown and "old-tok" not in shown
    assert shown.splitlines() == [
        f"id              {aid}",
        "status          pending",
        "agent           triage-cs-01",
        "action          servicenow.change.close",
        "session         s-1",
        "requested_by    tester",
        "requested_at    2026-04-14T10:00:00Z",
        "expires_at      2026-04-14T14:00:00Z",
        "policy          change-control",
        "rule            change-close-over-one",
        "severity        high",
        "group           secops-leads",
        "timeout         4h",
        f"payload_digest  {pending[0]['payload_digest']}",
        "target          servicenow-prod (prod)",
        'payload         {"api_token":"***","change_ids":["CHG1","CHG2"]}',
        "diff against current state:",
        '  replace $.change_ids  ["CHG1"] -> ["CHG1","CHG2"]',
    ]
    assert run(world, "approvals", "approve", aid, "--as", "triage-cs-01", code=1).stderr == (
        "error: agent 'triage-cs-01' cannot approve its own call (segregation of duties)\n")
    assert run(world, "approvals", "approve", aid, "--as", "tester", code=1).stderr == (
        f"error: 'tester' requested approval '{aid}' and cannot approve it (segregation of duties)\n")
    assert run(world, "approvals", "approve", aid, "--as", "priya", code=1).stderr == (
        f"error: 'priya' may not approve approval '{aid}': not a member of group 'secops-leads'\n")
    at(monkeypatch, "2026-04-14T10:05:00Z")
    digest = pending[0]["payload_digest"]
    assert run(world, "approvals", "approve", aid, "--as", "alice", "--comment", "verified").stdout == (
        f"approval {aid} approved by alice: triage-cs-01 servicenow.change.close (payload {digest}) may run once "
        "until 2026-04-14T14:05:00Z\n")
    used = run(world, *CLOSE_TWO, "--record", "-o", "json")
    record = json.loads(used.stdout)
    assert (record["verdict"], record["reason"], record["approval_id"]) == ("ALLOW", "approval", aid)
    assert used.stderr.splitlines()[-1] == f"approval {aid} consumed by this call"
    again = json.loads(run(world, *CLOSE_TWO, "--record", "-o", "json").stdout)
    assert again["verdict"] == "APPROVAL_REQUIRED"
    statuses = [(a["id"] == aid, a["status"]) for a in json.loads(
        run(world, "approvals", "list", "--status", "all", "-o", "json").stdout)]
    assert statuses == [(True, "consumed"), (False, "pending")]
    verified(world)


def test_silence_is_not_consent_flow(world, monkeypatch: pytest.MonkeyPatch) -> None:
    run(world, *CLOSE_TWO, "--record")
    aid = json.loads(run(world, "approvals", "list", "-o", "json").stdout)[0]["id"]
    at(monkeypatch, "2026-04-14T14:00:00Z")
    assert json.loads(run(world, "approvals", "list", "-o", "json").stdout) == []
    expired = json.loads(run(world, "approvals", "list", "--status", "expired", "-o", "json").stdout)
    assert [(a["id"], a["status"]) for a in expired] == [(aid, "expired")]
    assert run(world, "approvals", "approve", aid, "--as", "alice", code=2).stderr == (
        f"error: approval '{aid}' expired at 2026-04-14T14:00:00Z without an answer and was declined "
        "(silence is not consent)\n")
    assert run(world, "approvals", "expire").stdout == "0 approval(s) recorded as expired\n"
    events = json.loads(run(world, "chain", "show", "--agent", "triage-cs-01", "-o", "json").stdout)
    assert [e["type"] for e in events][-3:] == ["decision", "approval.requested", "approval.expired"]
    verified(world)


def test_grant_flow(world, monkeypatch: pytest.MonkeyPatch) -> None:
    decide = ["decide", "--agent", "cloud-posture-remediation", "--action", "aws.s3.put_bucket_policy",
              "--payload", '{"bucket":"bank-logs-prod"}', "-o", "json"]
    assert json.loads(run(world, *decide).stdout)["reason"] == "not-in-manifest"
    made = json.loads(run(world, "grants", "request", "--agent", "cloud-posture-remediation", "--action",
                          "aws.s3.put_bucket_policy", "--scope", "bucket=bank-logs-prod", "--ttl", "15m",
                          "--reason", "CSPM-1182 public bucket", "--as", "cloud-posture-remediation",
                          "-o", "json").stdout)
    gid = made["id"]
    assert (made["phase"], made["active"], made["scope"], made["requestedBy"]) == (
        "Pending", False, {"bucket": "bank-logs-prod"}, "cloud-posture-remediation")
    assert run(world, "grants", "approve", gid, "--as", "cloud-posture-remediation", code=1).stderr == (
        f"error: 'cloud-posture-remediation' requested grant '{gid}' and cannot approve it (segregation of duties)\n")
    assert run(world, "grants", "approve", gid, "--as", "priya").stdout == (
        f"grant {gid} approved by priya: aws.s3.put_bucket_policy for cloud-posture-remediation "
        "(bucket=bank-logs-prod) until 2026-04-14T10:15:00Z\n")
    allowed = json.loads(run(world, *decide).stdout)
    assert (allowed["verdict"], allowed["reason"], allowed["grant"]) == ("ALLOW", "grant", gid)
    other = [*decide[:6], '{"bucket":"other"}', "-o", "json"]
    assert json.loads(run(world, *other).stdout)["reason"] == "not-in-manifest"
    at(monkeypatch, "2026-04-14T10:15:00Z")
    assert json.loads(run(world, *decide).stdout)["reason"] == "not-in-manifest"
    listed = json.loads(run(world, "grants", "list", "-o", "json").stdout)
    assert [(g["id"], g["phase"], g["active"]) for g in listed] == [(gid, "Expired", False)]
    assert run(world, "grants", "expire").stdout == (
        f"grant {gid} expired at 2026-04-14T10:15:00Z\n1 grant(s) recorded as expired\n")
    assert run(world, "grants", "expire").stdout == "0 grant(s) recorded as expired\n"
    verified(world)


def test_revoke_and_bad_grant_input(world) -> None:
    gid = json.loads(run(world, "grants", "request", "--agent", "triage-cs-01", "--action", "slack.chat.post",
                         "--ttl", "1h", "--reason", "r", "-o", "json").stdout)["id"]
    run(world, "grants", "approve", gid, "--as", "carol")
    assert run(world, "grants", "revoke", gid, "--as", "priya", "--reason", "done").stdout == (
        f"grant {gid} revoked by priya at 2026-04-14T10:00:00Z\n")
    assert run(world, "grants", "request", "--agent", "triage-cs-01", "--action", "slack.chat.post", "--ttl", "2d",
               "--reason", "r", code=2).stderr == "error: --ttl 2d exceeds the 24h maximum for a grant\n"
    verified(world)


def test_suspend_reactivate_throttle_flow(world) -> None:
    decide = ["decide", "--agent", "triage-cs-01", "--action", "servicenow.change.close", "--payload",
              '{"change_ids":["CHG1"]}', "-o", "json"]
    assert run(world, "agents", "suspend", "triage-cs-01", "--reason", "closing tickets outside its queue",
               "--as", "dana").stdout.startswith("agent/triage-cs-01 suspended (chain seq ")
    denied = json.loads(run(world, *decide).stdout)
    assert (denied["verdict"], denied["reason"], denied["score"]["total"]) == ("DENY", "agent-suspended", 100)
    assert run(world, "agents", "reactivate", "triage-cs-01", "--as", "alice", "--reason", "fixed", code=1).stderr \
        == (f"error: 'alice' may not reactivate agent 'triage-cs-01': only an admin listed under `admins` in "
            f"{Path.cwd() / 'state' / 'config.yaml'} may\n")
    assert run(world, "agents", "reactivate", "triage-cs-01", "--as", "carol", "--reason", "filter fixed").stdout \
        .startswith("agent/triage-cs-01 reactivated by carol (chain seq ")
    assert json.loads(run(world, *decide).stdout)["verdict"] == "ALLOW"
    run(world, "agents", "throttle", "triage-cs-01", "--reason", "rate 5x declared")
    throttled = json.loads(run(world, *decide).stdout)
    assert (throttled["verdict"], throttled["reason"]) == ("APPROVAL_REQUIRED", "throttled")
    status = json.loads(run(world, "agents", "status", "triage-cs-01", "-o", "json").stdout)
    assert (status["status"], status["throttled"], status["throttle_reason"], status["throttled_by"]) == (
        "active", True, "rate 5x declared", "tester")
    run(world, "agents", "unthrottle", "triage-cs-01", "--reason", "rate normal")
    assert json.loads(run(world, *decide).stdout)["verdict"] == "ALLOW"
    assert run(world, "agents", "suspend", "ghost", "--reason", "r", code=2).stderr == (
        "error: no agent 'ghost' (register it with `arxctl register`)\n")
    verified(world)


def test_credentials_and_handles_flow(world, state_dir: Path) -> None:
    secret = "sn-svc-secret-4242"
    outputs = []
    stored = run(world, "credentials", "set", "servicenow", "--reason", "service account", input=secret + "\n")
    outputs.append(stored.stdout + stored.stderr)
    listed = json.loads(run(world, "credentials", "list", "-o", "json").stdout)
    assert [(c["connector"], c["agent"], c["version"]) for c in listed] == [("servicenow", None, 1)]
    assert stored.stdout == f"credential for servicenow stored as v1, fingerprint {listed[0]['fingerprint']}\n"
    issued = run(world, "handles", "issue", "--agent", "triage-cs-01", "--connector", "servicenow", "--reason",
                 "run 42")
    token = issued.stdout.strip()
    hid = json.loads(run(world, "handles", "list", "-o", "json").stdout)[0]["id"]
    assert issued.stderr == f"handle {hid} for triage-cs-01 on servicenow expires at 2026-04-14T10:15:00Z\n"
    assert run(world, "handles", "check", token).stdout == (
        f"valid: handle {hid} for triage-cs-01 on servicenow until 2026-04-14T10:15:00Z\n")
    rotated = run(world, "credentials", "rotate", "servicenow", "--reason", "quarterly", input="sn-svc-new-9999")
    outputs.append(rotated.stdout)
    assert run(world, "handles", "check", "-", input=token).exit_code == 0
    run(world, "handles", "revoke", hid, "--reason", "token pasted into a ticket")
    assert run(world, "handles", "check", token, code=1).stdout == f"refused: revoked (handle {hid})\n"
    revoked = json.loads(run(world, "handles", "list", "--revoked", "-o", "json").stdout)
    assert [(h["id"], h["state"]) for h in revoked] == [(hid, "revoked")]
    assert run(world, "handles", "issue", "--agent", "triage-cs-01", "--connector", "slack", "--reason", "r",
               code=2).stderr == ("error: the platform holds no credential for connector 'slack' (store one with "
                                  "`arxctl credentials set slack`)\n")
    outputs.append(run(world, "chain", "show", "-n", "100", "-o", "json").stdout)
    for text in outputs:
        assert secret not in text and "sn-svc-new-9999" not in text
    assert all(secret.encode() not in p.read_bytes() for p in state_dir.iterdir() if p.is_file())
    verified(world)


def test_decommission_flow(world, monkeypatch: pytest.MonkeyPatch) -> None:
    run(world, "credentials", "set", "servicenow", "--agent", "triage-cs-01", "--reason", "own account",
        input="own-secret")
    run(world, "credentials", "set", "slack", "--reason", "shared bot", input="shared-secret")
    token = run(world, "handles", "issue", "--agent", "triage-cs-01", "--connector", "slack", "--reason",
                "r", "--ttl", "1h").stdout.strip()
    hid = json.loads(run(world, "handles", "list", "-o", "json").stdout)[0]["id"]
    gid = json.loads(run(world, "grants", "request", "--agent", "triage-cs-01", "--action", "jira.issue.create",
                         "--ttl", "4h", "--reason", "r", "-o", "json").stdout)["id"]
    run(world, "grants", "approve", gid, "--as", "priya")
    run(world, *CLOSE_TWO, "--record")
    aid = json.loads(run(world, "approvals", "list", "-o", "json").stdout)[0]["id"]
    at(monkeypatch, "2026-04-14T10:30:00Z")
    done = run(world, "decommission", "triage-cs-01", "--reason", "replaced by triage-cs-02", "--retention-class",
               "sox-7yr", "--replaced-by", "triage-cs-02", "--as", "dana")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("agent/triage-cs-01 decommissioned by dana at 2026-04-14T10:30:00Z: replaced by "
                               "triage-cs-02 (chain seq ")
    assert lines[1:6] == [
        f"  approvals declined: {aid}; approved-unused revoked: none",
        f"  grants revoked now: {gid}; already expired: none",
        f"  handles invalidated: {hid}",
        "  credentials deleted: servicenow",
        lines[5],
    ]
    assert lines[5].startswith("  record sealed: retention sox-7yr (chain seq ")
    assert lines[6:] == [
        "  replaced by: triage-cs-02",
        "orphan check:",
        "  ok    status       agent status is decommissioned",
        "  ok    grants       no pending or live grant",
        "  ok    handles      no live handle",
        "  ok    credentials  no credential bound to the agent",
        "  ok    approvals    no pending or usable approval",
        "  ok    seal         personnel record sealed",
    ]
    denied = json.loads(run(world, "decide", "--agent", "triage-cs-01", "--action", "slack.chat.post",
                            "--record", "-o", "json").stdout)
    assert (denied["verdict"], denied["reason"], denied["score"]["total"]) == ("DENY", "agent-decommissioned", 100)
    assert run(world, "handles", "check", token, code=1).stdout == f"refused: revoked (handle {hid})\n"
    listed = json.loads(run(world, "credentials", "list", "-o", "json").stdout)
    assert [(c["connector"], c["agent"]) for c in listed] == [("slack", None)]
    walk = json.loads(run(world, "agents", "lineage", "triage-cs-02", "-o", "json").stdout)
    assert [(a["name"], a["via"], a["status"], a["reason"], a["retired_by"]) for a in walk] == [
        ("triage-cs-02", "self", "active", None, None),
        ("triage-cs-01", "spec.parent", "decommissioned", "replaced by triage-cs-02", "dana"),
    ]
    table = run(world, "agents", "lineage", "triage-cs-02").stdout.splitlines()
    assert [line.split()[:3] for line in table] == [
        ["NAME", "LINK", "STATUS"], ["triage-cs-02", "-", "active"],
        ["triage-cs-01", "spec.parent", "of"]]
    assert run(world, "decommission", "triage-cs-01", "--reason", "again", "--retention-class", "sox-7yr",
               code=2).stderr == ("error: agent 'triage-cs-01' was already decommissioned at 2026-04-14T10:30:00Z by "
                                  "dana\n")
    verified(world)


def test_decommission_bad_input_writes_nothing(world, state_dir: Path) -> None:
    before = run(world, "chain", "show", "-n", "1000", "-o", "json").stdout
    assert run(world, "decommission", "triage-cs-01", "--reason", "r", "--retention-class", "forever",
               code=2).stderr == ("error: unknown retention class 'forever'; known: bank-10yr, finra-6yr, gdpr-min, "
                                  "hipaa-6yr, pci-1yr, sox-7yr, standard-1yr\n")
    (state_dir / "config.yaml").write_text("groups:\n  leads: alice\n")
    assert run(world, "decommission", "triage-cs-01", "--reason", "r", "--retention-class", "sox-7yr",
               code=2).stderr == (f"error: {state_dir / 'config.yaml'}:2:10: ARX103 $.groups.leads: expected a list "
                                  "of user names, got str\n")
    assert run(world, "chain", "show", "-n", "1000", "-o", "json").stdout == before
    status = json.loads(run(world, "agents", "status", "triage-cs-01", "-o", "json").stdout)
    assert status["status"] == "active"


def test_every_command_has_an_example(cli) -> None:
    for group in (["approvals"], ["grants"], ["handles"], ["credentials"]):
        names = {"approvals": ["list", "show", "approve", "deny", "expire"],
                 "grants": ["request", "approve", "deny", "revoke", "list", "expire"],
                 "handles": ["issue", "check", "revoke", "list"],
                 "credentials": ["set", "rotate", "delete", "list"]}[group[0]]
        for name in names:
            assert "Example:" in cli(*group, name, "--help").stdout, (group, name)
    for args in (["decommission"], ["agents", "suspend"], ["agents", "reactivate"], ["agents", "throttle"],
                 ["agents", "unthrottle"], ["agents", "status"], ["agents", "lineage"]):
        assert "Example:" in cli(*args, "--help").stdout, args
