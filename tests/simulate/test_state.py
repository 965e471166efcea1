"""Replays against the embedded state: registered policies, the chain's decisions, the registry's history."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import orjson
import pytest

from .conftest import FIXTURES

V1 = """apiVersion: arx.dev/v1alpha1
kind: Agent
metadata:
  name: ops-bot
  labels: {env: prod, team: ops}
spec:
  owner: {name: Ada Ops, email: ada@bank.example, team: ops}
  purpose: Close resolved change tickets and post updates.
  connectors:
    - name: servicenow
      dataClass: confidential
      target: {system: servicenow-prod, env: prod}
      actions: [servicenow.change.read, servicenow.change.close]
"""


@pytest.fixture
def fx(cli, state_dir: Path) -> Path:
    target = state_dir.parent / "fx"
    shutil.copytree(FIXTURES, target)
    return target


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def test_registered_policies_are_the_default_baseline(cli, fx: Path) -> None:
    _ok(cli("register", "fx/manifests", "fx/baseline"))
    result = cli("simulate", "fx/activity.ndjson", "--policy", "fx/proposed", "-f", "json")
    _ok(result)
    report = orjson.loads(result.stdout)
    assert report["sides"]["baseline"]["source"] == "registered policies"
    assert report["registry"] == "current (today's agent versions, statuses and throttles)"
    assert report["flips"] == [{"from": "ALLOW", "to": "APPROVAL_REQUIRED", "count": 6},
                               {"from": "ALLOW", "to": "DENY", "count": 2}]


def test_from_chain_replays_recorded_decisions_and_says_what_it_cannot_evaluate(cli, fx: Path,
                                                                               state_dir: Path) -> None:
    _ok(cli("register", "fx/manifests", "fx/baseline"))
    calls = [
        ("2026-04-14T10:02:00Z", "ops-bot", "servicenow.change.close", '{"change_ids":["CHG1"]}'),
        ("2026-04-14T10:04:00Z", "ops-bot", "servicenow.change.close", '{"change_ids":["CHG2","CHG3"]}'),
        ("2026-04-14T10:06:00Z", "dev-bot", "github.pulls.merge", '{"repo":"sandbox","number":7}'),
        ("2026-04-14T10:07:00Z", "ops-bot", "slack.chat.post", '{"channel":"#ops"}'),
    ]
    for ts, agent, action, payload in calls:
        _ok(cli("decide", "--agent", agent, "--action", action, "--payload", payload, "--session", "s1", "--record",
                env={"ARX_NOW": ts}))
    result = cli("simulate", "--from-chain", "--policy", "fx/proposed", "-f", "json")
    _ok(result)
    report = orjson.loads(result.stdout)
    # Both sides have close-over-one, which reads the payload: both change.close calls are unevaluable (DENY).
    assert report["events"] == 4
    assert report["unevaluable"] == {"baseline": 2, "proposed": 2}
    assert report["baseline"] == {"ALLOW": 2, "APPROVAL_REQUIRED": 0, "DENY": 2}
    assert report["proposed"] == {"ALLOW": 1, "APPROVAL_REQUIRED": 0, "DENY": 3}
    assert report["flips"] == [{"from": "ALLOW", "to": "DENY", "count": 1}]
    assert report["input"]["payloads"] is False
    assert report["examples"][0]["payload"] is None
    with sqlite3.connect(state_dir / "state.db") as conn:
        seq = conn.execute("SELECT seq FROM chain WHERE type = 'decision' AND agent = 'dev-bot'").fetchone()[0]
    assert [e["location"] for e in report["examples"]] == [f"chain:{seq}"]
    recorded = orjson.loads(cli("simulate", "--from-chain", "--policy", "fx/proposed", "--baseline", "recorded",
                                "-f", "json").stdout)
    assert recorded["baseline"] == {"ALLOW": 3, "APPROVAL_REQUIRED": 1, "DENY": 0}
    assert recorded["flips"] == [{"from": "ALLOW", "to": "DENY", "count": 2},
                                 {"from": "APPROVAL_REQUIRED", "to": "DENY", "count": 1}]


def test_registry_as_of_event_uses_the_versions_and_statuses_then(cli, fx: Path) -> None:
    (fx / "v1.yaml").write_text(V1, encoding="utf-8")
    _ok(cli("register", "fx/v1.yaml", "fx/baseline", env={"ARX_NOW": "2026-04-14T00:00:00Z"}))
    _ok(cli("register", "fx/manifests", env={"ARX_NOW": "2026-04-14T10:30:00Z"}))
    _ok(cli("agents", "suspend", "ops-bot", "--reason", "test", env={"ARX_NOW": "2026-04-14T12:00:00Z"}))
    activity = fx / "timeline.ndjson"
    activity.write_bytes(b"".join(
        orjson.dumps({"ts": ts, "agent": "ops-bot", "session": f"s{i}", "action": "slack.chat.post",
                      "payload": {"channel": "#ops"}}) + b"\n"
        for i, ts in enumerate(["2026-04-13T09:00:00Z", "2026-04-14T10:07:00Z", "2026-04-14T11:00:00Z",
                                "2026-04-14T12:30:00Z"])))
    now = orjson.loads(cli("simulate", "fx/timeline.ndjson", "--policy", "fx/baseline", "-f", "json").stdout)
    assert now["by_reason"]["baseline"] == {"agent-suspended": 4}
    then = cli("simulate", "fx/timeline.ndjson", "--policy", "fx/baseline", "--registry-as-of-event", "-f", "json")
    _ok(then)
    report = orjson.loads(then.stdout)
    assert report["registry"] == "as of each event (agent versions and lifecycle records by time)"
    assert report["by_reason"]["baseline"] == {"agent-suspended": 1, "agent-unknown": 1, "not-in-manifest": 1,
                                               "threshold": 1}
    assert report["flips"] == []
