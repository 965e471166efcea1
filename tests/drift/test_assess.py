"""`arxctl assess`: the stage from the registry, lifecycle and chain, each missing item with its fix."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from arxctl.chain import keys
from arxctl.chain import store as chain
from arxctl.chain.checkpoints import publish
from arxctl.chain.witness import FileWitness
from arxctl.clock import parse_ts
from arxctl.policy.catalog import builtin
from arxctl.policy.engine import Call
from arxctl.policy.state import decide_call, load_state
from arxctl.registry import assess as core
from arxctl.registry import config as project
from arxctl.registry import drift, grants, lifecycle
from arxctl.store.sqlite import Store
from tests.drift.helpers import SERVICENOW, manifest
from tests.lifecycle.helpers import register
from tests.policy.helpers import approve, policy

T = "2026-04-14T10:00:00Z"
NOW = parse_ts(T)
CONFIG = """\
groups: {secops-leads: [alice], cloud-sec-leads: [priya]}
admins: [carol]
grants: {approvers: cloud-sec-leads}
webhook: {url: "https://hooks.example/arx/t0k3n", secret_env: ARX_TEST_WEBHOOK_SECRET}
"""
GATE = policy("change-control", approve("close-many", "servicenow.change.close", "size(payload.change_ids) > 1"))


def agents(**overrides: dict) -> list[dict]:
    """triage and reader, each with a team, a backup owner and a declared rate."""
    docs = [manifest("triage", rate={"perMinute": 30}), manifest("reader", [SERVICENOW], rate={"perDay": 1000})]
    for doc in docs:
        doc["metadata"]["annotations"] = {"arx.dev/backup-owner": "sam@bank.example"}
        for key, value in overrides.get(doc["metadata"]["name"], {}).items():
            doc["spec"][key] = value
    return docs


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fleet that meets every check at T."""
    monkeypatch.setenv("ARX_NOW", T)
    monkeypatch.setenv("ARX_TEST_WEBHOOK_SECRET", "s3")
    state = tmp_path / "state"
    store = Store(state)
    register(store, *agents(), GATE)
    (state / "config.yaml").write_text(CONFIG)
    decide_call(store, Call(ts=T, agent="triage", action="servicenow.change.read"), record=True, actor="gateway")
    drift.apply(store, drift.check(store, from_chain=True), actor="arxctl-drift", ts=T)
    with store.transaction() as conn:
        keys.generate(conn, state, key_id="k1")
    publish(store, FileWitness(tmp_path / "witness"), keys.signer(store.conn, state))
    simulated(store, load_state(store).policies.revision)
    yield store
    store.close()


def simulated(store: Store, revision: str) -> None:
    with store.transaction() as conn:
        chain.append(conn, chain.Entry("policy.simulated", None, "ci", {"policy_revision": revision}, T))


def run(store: Store | None, now_offset: timedelta = timedelta(0), config: str | None = None) -> core.Assessment:
    settings = project.load(store.directory) if store is not None and config is None else project.ProjectConfig()
    if config is not None and store is not None:
        (store.directory / "config.yaml").write_text(config)
        settings = project.load(store.directory)
    return core.assess(store, settings, now=NOW + now_offset)


def check(result: core.Assessment, check_id: str) -> core.Check:
    return next(c for c in result.checks if c.id == check_id)


def items(result: core.Assessment, check_id: str) -> list[tuple[str, str, str]]:
    return [(i.subject, i.detail, i.fix) for i in check(result, check_id).items]


def test_a_fresh_machine_is_stuck() -> None:
    result = core.assess(None, project.ProjectConfig(), now=NOW)
    assert (result.stage, result.next_stage, len(result.missing())) == ("Stuck", "Operating", 5)
    assert [(c.id, c.stage, c.ok, c.summary) for c in result.checks] == [
        ("registry", "Operating", False, "no agent is registered"),
        ("owners", "Operating", True, "0 agents with a named owner and team"),
        ("policies", "Operating", False, "no policy is registered"),
        ("decisions", "Operating", False, "no decision is recorded"),
        ("approvals", "Operating", False, "no approval gate"),
        ("drift", "Operating", False, "drift never checked"),
        ("holds", "Operating", True, "0 agents on hold"),
        ("signing-key", "Scaling", False, "no signing key"),
        ("witness", "Scaling", False, "never published"),
        ("simulation", "Scaling", False, "never simulated"),
        ("grants", "Scaling", True, "0 active grants, every one expiring"),
        ("backup-owners", "Scaling", True, "0 agents with a backup owner"),
        ("rates", "Scaling", True, "0 agents with a declared rate"),
        ("webhook", "Scaling", False, "no webhook"),
    ]
    assert [(c.id, i.fix) for c, i in result.missing()] == [
        ("registry", 'arxctl register examples/manifests/ --reason "initial import"'),
        ("policies", "arxctl register examples/policies/"),
        ("decisions", "arxctl decide --agent NAME --action ACTION --record (or route calls through the gateway)"),
        ("approvals", "add a rule with `then: {approvalRequired: {approvers: {group: G}, timeout: 4h}}`, then "
                      "`arxctl register <policy>`"),
        ("drift", "arxctl drift check --from-chain --since 7d --apply"),
    ]


def test_a_complete_fleet_is_scaling(fleet: Store) -> None:
    result = run(fleet)
    witness = (fleet.directory.parent / "witness").resolve().as_uri()
    assert (result.stage, result.next_stage, result.missing()) == ("Scaling", None, [])
    assert [(c.id, c.summary) for c in result.checks] == [
        ("registry", "2 agents registered"),
        ("owners", "2 agents with a named owner and team"),
        ("policies", "1 policy enforced"),
        ("decisions", "1 decision recorded"),
        ("approvals", "1 approval gate with approvers"),
        ("drift", f"last checked {T}"),
        ("holds", "0 agents on hold, none older than 72h"),
        ("signing-key", "signing key k1 (ed25519)"),
        ("witness", f"last published {T} to {witness}"),
        ("simulation", f"enforced revision {load_state(fleet).policies.revision[:19]}… was simulated"),
        ("grants", "0 active grants, every one expiring"),
        ("backup-owners", "2 agents with a backup owner"),
        ("rates", "2 agents with a declared rate"),
        ("webhook", "webhook to https://hooks.example"),
    ]
    assert result.to_dict()["facts"] == {"agents": 2, "decommissioned": 0, "policies": 1, "chain_records": 6,
                                         "decisions": 1}


def test_owners_must_be_people_with_a_team(fleet: Store) -> None:
    register(fleet, *agents(triage={"owner": {"name": "TBD", "email": "tbd@bank.example", "team": "x"}},
                            reader={"owner": {"name": "Ana Ruiz", "email": "ana@bank.example"}}))
    result = run(fleet)
    assert result.stage == "Stuck"
    assert items(result, "owners") == [
        ("reader", "owner Ana Ruiz <ana@bank.example> has no team: nobody to escalate to",
         "set spec.owner.team in the manifest of reader, then `arxctl register <manifest>`"),
        ("triage", "owner 'TBD <tbd@bank.example>' is a placeholder, not a person",
         "set spec.owner in the manifest of triage, then `arxctl register <manifest>`"),
    ]


def test_approval_groups_need_members(fleet: Store) -> None:
    where = fleet.directory / "config.yaml"
    result = run(fleet, config=CONFIG.replace("secops-leads: [alice]", "secops-leads: []"))
    assert result.stage == "Stuck"
    assert items(result, "approvals") == [
        ("change-control/close-many", f"approver group 'secops-leads' has no members in {where}: its approvals can "
         "only time out", f"add `groups: {{secops-leads: [USER, ...]}}` to {where}")]


def test_a_stale_drift_check_is_missing(fleet: Store) -> None:
    assert check(run(fleet, timedelta(days=7)), "drift").ok
    result = run(fleet, timedelta(days=8))
    assert items(result, "drift") == [
        ("drift", f"last drift check was {T} (8 days ago; at most 7 allowed)",
         "arxctl drift check --from-chain --since 7d --apply")]


def test_suspensions_must_be_investigated(fleet: Store) -> None:
    lifecycle.suspend(fleet, "reader", actor="arxctl-drift", reason="drift high", source="drift", ts=T)
    assert [(c.ok, c.summary) for c in [check(run(fleet, timedelta(hours=72)), "holds")]] == [
        (True, "1 agent on hold, none older than 72h")]
    result = run(fleet, timedelta(hours=73))
    assert result.stage == "Stuck"
    assert items(result, "holds") == [
        ("reader", f"suspended since {T} by arxctl-drift (drift: drift high) and never investigated",
         'arxctl agents reactivate reader --as ADMIN --reason "..." or '
         'arxctl decommission reader --reason "..." --retention-class CLASS')]
    where = fleet.directory / "config.yaml"
    result = run(fleet, config=CONFIG.replace("admins: [carol]\n", ""))
    assert items(result, "holds") == [
        ("admins", f"no admin is listed in {where}: a suspended agent can never be reactivated",
         f"add `admins: [USER]` to {where}")]


def test_throttles_must_be_investigated_too(fleet: Store) -> None:
    lifecycle.throttle(fleet, "triage", actor="arxctl-drift", reason="drift medium", source="drift", ts=T)
    assert [i[1] for i in items(run(fleet, timedelta(days=4)), "holds")] == [
        f"throttled since {T} by arxctl-drift (drift: drift medium) and never investigated"]


def test_the_witness_must_keep_up(fleet: Store) -> None:
    assert check(run(fleet, timedelta(hours=25)), "witness").items[0].detail == (
        f"1 record since the last checkpoint published at {T} (25h ago)")
    assert check(run(fleet, timedelta(hours=23)), "witness").ok


def test_the_enforced_revision_must_be_simulated(fleet: Store) -> None:
    register(fleet, policy("change-control", approve("close-many", "servicenow.change.close")))
    revision = load_state(fleet).policies.revision
    result = run(fleet)
    assert result.stage == "Operating"
    assert items(result, "simulation") == [
        ("simulation", f"the enforced policy set ({revision[:19]}…) was never simulated; the last simulation "
         f"(chain seq 6, {T}) was of another revision",
         "arxctl simulate last-30-days.ndjson.gz --policy policies/ --record")]
    simulated(fleet, revision)
    assert run(fleet).stage == "Scaling"


def test_expired_grants_must_be_recorded(fleet: Store) -> None:
    config = project.load(fleet.directory)
    grant = grants.request(fleet, agent="triage", actions=["servicenow.change.update"], scope={}, ttl="15m",
                           reason="fix CHG1", requested_by="triage", catalog=builtin(), at=NOW)
    grants.approve(fleet, grant.id, actor="priya", config=config, at=NOW)
    assert check(run(fleet, timedelta(minutes=14)), "grants").summary == "1 active grant, every one expiring"
    result = run(fleet, timedelta(minutes=15))
    assert items(result, "grants") == [
        (grant.id, "grant for triage expired at 2026-04-14T10:15:00Z but its expiry is not recorded",
         "arxctl grants expire")]
    grants.expire(fleet, actor="ops", at=NOW + timedelta(minutes=15))
    assert check(run(fleet, timedelta(minutes=15)), "grants").ok


def test_backup_owners_and_rates(fleet: Store) -> None:
    docs = agents(reader={"rate": None})
    docs[0]["metadata"]["annotations"] = {"arx.dev/backup-owner": "DANA@bank.example"}
    del docs[1]["spec"]["rate"]
    register(fleet, *docs)
    result = run(fleet)
    assert result.stage == "Operating"
    assert items(result, "backup-owners") == [
        ("triage", "one named owner and no backup: the agent is orphaned when they leave",
         "add `metadata.annotations: {arx.dev/backup-owner: EMAIL}` to the manifest of triage, then "
         "`arxctl register <manifest>`")]
    assert items(result, "rates") == [
        ("reader", "no spec.rate: drift cannot tell a runaway loop from normal work",
         "add `spec.rate: {perMinute: N}` to the manifest of reader, then `arxctl register <manifest>`")]


def test_the_webhook_must_be_signed_and_delivering(fleet: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARX_TEST_WEBHOOK_SECRET")
    assert items(run(fleet), "webhook") == [
        ("webhook", "environment variable ARX_TEST_WEBHOOK_SECRET is not set here: webhooks sent from this "
         "environment are not delivered", "export ARX_TEST_WEBHOOK_SECRET=<secret>")]
    monkeypatch.setenv("ARX_TEST_WEBHOOK_SECRET", "s3")
    with fleet.transaction() as conn:
        chain.append(conn, chain.Entry("webhook.delivery", "triage", "arxctl-drift", {
            "report_id": "drift-aa", "outcome": "timeout", "detail": "no answer within 5.0s", "final": True}, T))
    assert items(run(fleet), "webhook") == [
        ("webhook", f"the last drift.detected webhook (drift-aa) was not delivered: timeout (no answer within 5.0s) "
         f"at {T}, chain seq 7", "arxctl drift check --from-chain --apply (re-sends undelivered reports)")]
    where = fleet.directory / "config.yaml"
    no_hook = "\n".join(line for line in CONFIG.splitlines() if not line.startswith("webhook"))
    assert items(run(fleet, config=no_hook), "webhook") == [
        ("webhook", f"no webhook in {where}: critical drift suspends agents silently",
         f"add `webhook: {{url: https://..., secret_env: ARX_WEBHOOK_SECRET}}` to {where}")]


def test_decommissioned_agents_are_not_counted(fleet: Store) -> None:
    fleet.conn.execute("BEGIN IMMEDIATE")
    fleet.conn.execute("UPDATE heads SET status = 'decommissioned' WHERE name = 'reader'")
    fleet.conn.execute("COMMIT")
    result = run(fleet)
    assert (check(result, "registry").summary, result.to_dict()["facts"]["decommissioned"]) == (
        "1 agent registered", 1)


def test_cli_text_json_markdown_and_fail_below(cli, state_dir: Path) -> None:
    text = cli("assess")
    assert text.exit_code == 0
    assert text.stdout.splitlines()[:6] == [
        "Stage 02: Stuck", "5 items between you and Operating.", "",
        "MISS [Operating] Agents are registered with an owner and a declared connector graph: no agent is registered",
        "       - registry: no agent is registered: nobody can say what is running",
        '         fix: arxctl register examples/manifests/ --reason "initial import"',
    ]
    data = orjson.loads(cli("assess", "--format", "json").stdout)
    assert (data["stage"], data["stage_number"], data["next"], data["missing"]) == ("Stuck", "02", "Operating", 5)
    assert data["checks"][-1] == {
        "id": "webhook", "stage": "Scaling", "title": "Critical drift reaches people through the signed webhook",
        "ok": False, "summary": "no webhook",
        "items": [{"subject": "webhook", "detail": f"no webhook in {state_dir / 'config.yaml'}: critical drift "
                   "suspends agents silently", "fix": "add `webhook: {url: https://..., secret_env: "
                   f"ARX_WEBHOOK_SECRET}}` to {state_dir / 'config.yaml'}"}]}
    markdown = cli("assess", "--format", "markdown").stdout.splitlines()
    assert markdown[:7] == [
        "## Stage 02: Stuck", "", "5 items between you and Operating.", "", "| Stage | Check | Status |",
        "|---|---|---|",
        "| Operating | Agents are registered with an owner and a declared connector graph | **missing 1**: no agent "
        "is registered |",
    ]
    assert markdown[-1] == (f"- [ ] **webhook**: no webhook in {state_dir / 'config.yaml'}: critical drift suspends "
                            "agents silently. Fix: `add webhook: {url: https://..., secret_env: ARX_WEBHOOK_SECRET} "
                            f"to {state_dir / 'config.yaml'}`")
    assert [cli("assess", "--fail-below", stage).exit_code for stage in ("Stuck", "Operating", "Scaling")] == [0, 1, 1]
    assert not state_dir.exists()


def test_cli_bad_config_exits_2(cli, state_dir: Path) -> None:
    bad = state_dir.parent / "config.yaml"
    bad.write_text("groups: [alice]\n")
    result = cli("assess", "--config", str(bad))
    assert (result.exit_code, result.stderr) == (
        2, f"error: {bad}:1:9: ARX103 $.groups: expected a mapping, got list\n")
