"""The memoized replay gives exactly what calling decide() on every call gives (the reference is naive)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from arxctl.policy import simulate as S
from arxctl.policy.catalog import builtin
from arxctl.policy.compiler import compile_policies
from arxctl.policy.engine import AgentInfo, Call, EngineState, Grant, decide

from .conftest import MANIFESTS, resources, run


def _policy(name: str, rules: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "arx.dev/v1alpha1", "kind": "Policy", "metadata": {"name": name},
            "spec": {**spec, "rules": rules}}


def _ask(group: str) -> dict[str, Any]:
    return {"approvalRequired": {"severity": "high", "approvers": {"group": group}, "timeout": "1h"}}


BASELINE = (
    _policy("a", [
        {"name": "count-one", "when": "slack.chat.post", "if": "has(payload.count) && payload.count == 1",
         "then": _ask("g1")},
        {"name": "burst", "when": "slack.*", "if": "session.count > 5", "then": {"deny": {"reason": "burst"}}},
        {"name": "multi", "when": "servicenow.change.close", "if": "size(payload.change_ids) > 1", "then": _ask("g2")},
    ]),
    _policy("b", [
        {"name": "special-session", "when": "servicenow.*", "if": 'session.id == "s-special"',
         "then": {"deny": {"reason": "special"}}},
        {"name": "afternoon", "when": "github.*", "if": 'now > "2026-04-14T12:00:00Z"', "then": _ask("g3")},
        {"name": "prod-writes", "when": "*", "if": 'target.env == "prod" && operation == "write"', "then": _ask("g4")},
    ], selector={"team": "ops"}),
)
PROPOSED = (
    _policy("a", [
        {"name": "count-one", "when": "slack.chat.post", "if": 'has(payload.count) && payload.count == "1"',
         "then": {"deny": {"reason": "strings"}}},
        {"name": "burst", "when": "slack.*", "if": "session.count > 3", "then": {"deny": {"reason": "burst"}}},
        {"name": "multi", "when": "servicenow.change.close", "if": "size(payload.change_ids) > 2", "then": _ask("g2")},
    ], thresholds={"review": 50, "deny": 75}),
    BASELINE[1],
)
GRANT = Grant("g-logs", "ops-bot", frozenset({"aws.s3.delete_object"}), {"bucket": "logs"}, "Approved",
              datetime(2026, 4, 14, 9, 0, tzinfo=UTC), datetime(2026, 4, 14, 13, 0, tzinfo=UTC))
COUNTS = [1, 1.0, True, "1", 2, None]


def _activity(path: Path, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    t = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)
    actions = {"ops-bot": ["slack.chat.post", "servicenow.change.close", "servicenow.change.read",
                           "aws.s3.delete_object"],
               "dev-bot": ["github.pulls.read", "github.pulls.merge", "slack.chat.post"],
               "ghost": ["slack.chat.post"]}
    lines = []
    for i in range(n):
        t += timedelta(seconds=rnd.choice([0.5, 1, 2, 5, 20, 90]))
        agent = rnd.choice(["ops-bot", "ops-bot", "dev-bot", "ghost"])
        action = rnd.choice(actions[agent])
        payload: Any = {"id": f"x{i}"}
        count = rnd.choice(COUNTS)
        if count is not None:
            payload["count"] = count
        if action == "servicenow.change.close":
            payload["change_ids"] = [f"C{rnd.randrange(4)}" for _ in range(rnd.randint(1, 3))]
        if action == "aws.s3.delete_object":
            payload["bucket"] = rnd.choice(["logs", "data"])
        roll = rnd.random()
        if roll < 0.02:
            payload = None
        elif roll < 0.04:
            payload = [1, 2]
        record: dict[str, Any] = {"ts": t.isoformat().replace("+00:00", "Z"), "agent": agent,
                                  "session": rnd.choice(["s-1", "s-2", "s-special"]), "action": action,
                                  "payload": payload}
        if rnd.random() < 0.3:
            record["target"] = {"env": rnd.choice(["prod", "dev", "staging"]), "system": "x"}
        if rnd.random() < 0.05:
            record["operation"] = "destructive"
        lines.append(orjson.dumps(record))
    path.write_bytes(b"\n".join(lines) + b"\n")


def _naive(path: Path) -> dict[str, Any]:
    agents = [AgentInfo.from_doc(d) for d in resources(MANIFESTS, kind="Agent")]
    states = [EngineState.build(agents, compile_policies(docs), builtin(), [GRANT]) for docs in (BASELINE, PROPOSED)]
    pairs: Counter[tuple[str, str, str]] = Counter()
    reasons: list[Counter[str]] = [Counter(), Counter()]
    for line in path.read_bytes().splitlines():
        call = Call.from_dict(orjson.loads(line))
        decisions = [decide(call, state) for state in states]
        pairs[(call.agent, decisions[0].verdict, decisions[1].verdict)] += 1
        for side, d in enumerate(decisions):
            reasons[side][d.reason] += 1
    return {"pairs": pairs, "reasons": reasons}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_equals_decide_on_every_call(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "a.ndjson"
    _activity(path, 2500, seed)
    spec = S.ReplaySpec(
        baseline=S.PolicySource("b", BASELINE), proposed=S.PolicySource("p", PROPOSED),
        agents=S.manifest_snapshots(resources(MANIFESTS, kind="Agent")), catalog=builtin(), grants=(GRANT,),
    )
    report = run(spec, path)
    naive = _naive(path)
    flips: Counter[tuple[str, str]] = Counter()
    for (_, a, b), n in naive["pairs"].items():
        if a != b:
            flips[(a, b)] += n
    assert {(f["from"], f["to"]): f["count"] for f in report["flips"]} == dict(flips)
    for agent, entry in report["by_agent"].items():
        for side, index in (("baseline", 1), ("proposed", 2)):
            expected = Counter()
            for key, n in naive["pairs"].items():
                if key[0] == agent:
                    expected[key[index]] += n
            assert {v: c for v, c in entry[side].items() if c} == dict(expected)
    assert report["by_reason"]["baseline"] == dict(sorted(naive["reasons"][0].items()))
    assert report["by_reason"]["proposed"] == dict(sorted(naive["reasons"][1].items()))
    assert report["malformed"]["count"] == 0
    assert orjson.dumps(run(spec, path, workers=3)) == orjson.dumps(report)
