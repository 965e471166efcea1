"""The memoized replay gives exactly what calling decide() on every call gives (the reference is naive)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from arxctl.policy import simulate as S
from arxctl.policy.catalog import builtin
from arxctl.policy.compiler import compile_policies
from arxctl.policy.engine import AgentInfo, Call, EngineState, Grant, call_time, decide

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


# The memo's shortcuts, each against decide() on every call: a field read only through size() or has() keyed by its
# length, session.count keyed by the side of each comparison, agents of one profile sharing outcomes (unless a rule
# reads the name), out-of-order and offset timestamps, payloads that are null, missing or not objects.
CLONES = ("ops-bot-2", "ops-bot-3")
SHORTCUT_BASE = (
    _policy("s", [
        {"name": "multi", "when": "servicenow.change.close", "if": "size(payload.change_ids) > 1", "then": _ask("g1")},
        {"name": "tagged", "when": "servicenow.*", "if": "has(payload.tags) && size(payload.tags) >= 2",
         "then": {"deny": {"reason": "tags"}}},
        {"name": "burst", "when": "slack.*", "if": "session.count >= 4 && session.count < 9", "then": _ask("g2")},
        {"name": "seventh", "when": "slack.chat.post", "if": "session.count == 7", "then": {"deny": {"reason": "7"}}},
        {"name": "named", "when": "servicenow.change.read", "if": 'agent.name == "ops-bot-2"', "then": _ask("g3")},
        {"name": "wide", "when": "github.*", "if": "size(payload) > 2", "then": _ask("g4")},
    ]),
)
SHORTCUT_PROPOSED = (
    _policy("s", [
        {"name": "multi", "when": "servicenow.change.close", "if": "size(payload.change_ids) > 2", "then": _ask("g1")},
        {"name": "tagged", "when": "servicenow.*", "if": "has(payload.tags) && size(payload.tags) >= 1",
         "then": {"deny": {"reason": "tags"}}},
        {"name": "burst", "when": "slack.*", "if": "session.count > 2 && session.count <= 5", "then": _ask("g2")},
        {"name": "seventh", "when": "slack.chat.post", "if": "session.count == 7", "then": {"deny": {"reason": "7"}}},
        {"name": "even", "when": "servicenow.change.read", "if": "session.count % 2 == 0", "then": _ask("g6")},
        {"name": "named", "when": "servicenow.change.read", "if": 'agent.name == "ops-bot-3"', "then": _ask("g3")},
        {"name": "wide", "when": "github.*", "if": "size(payload) > 1", "then": _ask("g4")},
        {"name": "session", "when": "servicenow.change.read", "if": 'session.id == "s-2"', "then": _ask("g5")},
        {"name": "ordered", "when": "servicenow.change.close", "if": 'has(payload.tags) && payload.tags == ["b", "a"]',
         "then": {"deny": {"reason": "order"}}},
    ], thresholds={"review": 55, "deny": 80}),
)
CHANGE_IDS = [["C1"], ["C1", "C2"], ["C3", "C4", "C5"], ["Ä1", "Ö2"], [1, 2], "C1", None, [], "absent"]


def _fleet() -> list[dict[str, Any]]:
    docs = [dict(d) for d in resources(MANIFESTS, kind="Agent")]
    ops = next(d for d in docs if d["metadata"]["name"] == "ops-bot")
    for name in CLONES:
        clone = orjson.loads(orjson.dumps(ops))
        clone["metadata"]["name"] = name
        if name == "ops-bot-3":
            clone["spec"]["owner"]["email"] = "other@bank.example"
        docs.append(clone)
    return docs


def _shortcut_activity(path: Path, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    t = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)
    actions = ["slack.chat.post", "servicenow.change.close", "servicenow.change.read", "github.pulls.read"]
    lines = []
    burst = 0
    agent, session = "ops-bot", "s-1"
    for i in range(n):
        if burst:
            burst -= 1
            t += timedelta(seconds=rnd.choice([0.5, 1, 2, 4]))
        else:
            t += timedelta(seconds=rnd.choice([1, 3, 10, 45, 70]))
            agent = rnd.choice(["ops-bot", "ops-bot-2", "ops-bot-3", "dev-bot"])
            session = rnd.choice(["s-1", "s-2", "s-3"])
            burst = rnd.choice([0, 0, 0, 5, 12, 20])
        action = rnd.choice(actions if agent != "dev-bot" else ["github.pulls.read", "github.pulls.merge"])
        payload: Any = {"id": f"x{i}"}
        ids = rnd.choice(CHANGE_IDS)
        if ids != "absent":
            payload["change_ids"] = ids
        if rnd.random() < 0.3:
            payload["tags"] = rnd.choice([["a"], ["a", "b"], ["b", "a"], 3, "ab"])
        if rnd.random() < 0.2:
            payload["extra"] = rnd.randrange(3)
        roll = rnd.random()
        if roll < 0.02:
            payload = None
        elif roll < 0.03:
            payload = ["not", "an", "object"]
        when = t - timedelta(seconds=rnd.choice([0, 0, 0, 0, 30, 200]))
        stamp = when.isoformat(timespec=rnd.choice(["seconds", "milliseconds", "microseconds"]))
        style = rnd.random()
        if style < 0.05:
            stamp = when.astimezone(timezone(timedelta(hours=2))).isoformat()
        elif style < 0.08:
            stamp = stamp.replace("+00:00", "")
        else:
            stamp = stamp.replace("+00:00", "Z")
        record: dict[str, Any] = {"ts": stamp, "agent": agent, "session": session, "action": action}
        if roll >= 0.01:
            record["payload"] = payload
        if rnd.random() < 0.5:
            record["target"] = {"env": rnd.choice(["prod", "dev", "staging"]), "system": "x"}
        lines.append(orjson.dumps(record))
    path.write_bytes(b"\n".join(lines) + b"\n")


def _outcome(d: Any) -> S.Outcome:
    group = None
    if d.verdict == "APPROVAL_REQUIRED":
        group = (d.approval.group if d.approval is not None else None) or S.DEFAULT_GROUP
    return (d.verdict, d.reason, tuple(m.ref for m in d.matched), group)


@pytest.mark.parametrize(("seed", "limits"), [
    (4, {}),
    (5, {}),
    (6, {"MEMO_LIMIT": 25}),  # memos forgotten now and then
    (8, {"MEMO_LIMIT": 25}),
    (7, {"PLAN_LIMIT": 3, "_PRUNE_AT": 1, "_SESSIONS_MIN": 1}),  # plans forgotten, windows pruned and swept often
])
def test_shortcuts_equal_decide_on_every_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int,
                                              limits: dict[str, int]) -> None:
    for name, value in limits.items():
        monkeypatch.setattr(S, name, value)
    path = tmp_path / "a.ndjson"
    _shortcut_activity(path, 4000, seed)
    fleet = _fleet()
    agents = [AgentInfo.from_doc(d) for d in fleet]
    states = [EngineState.build(agents, compile_policies(docs), builtin())
              for docs in (SHORTCUT_BASE, SHORTCUT_PROPOSED)]
    cells: Counter[tuple[str, str, S.Outcome, S.Outcome]] = Counter()
    days: Counter[tuple[tuple[str | None, str | None], int]] = Counter()
    for line in path.read_bytes().splitlines():
        call = Call.from_dict(orjson.loads(line))
        base, proposed = (_outcome(decide(call, state)) for state in states)
        cells[(call.agent, call.action, base, proposed)] += 1
        if base[3] is not None or proposed[3] is not None:
            day = int(call_time(call).timestamp()) // 86_400
            days[((base[3], proposed[3]), day)] += 1
    spec = S.ReplaySpec(baseline=S.PolicySource("b", SHORTCUT_BASE), proposed=S.PolicySource("p", SHORTCUT_PROPOSED),
                        agents=S.manifest_snapshots(fleet), catalog=builtin())
    replayer = S.Replayer(spec, [str(path)])
    for chunk in S.read_chunks(S.Source(str(path), path), 0, read_size=4096):
        replayer.feed(chunk)
    tally = replayer.result()
    assert tally.cells == dict(cells)
    assert tally.days == dict(days)
    assert tally.malformed_count == 0
    assert sum(cells.values()) == 4000
    shared = [p for st in replayer.states.values() for p in st.plans.values() if p.common]
    assert shared or limits, "agents of one profile must share outcomes for this test to mean anything"
    if not limits:
        assert orjson.dumps(run(spec, path, workers=3)) == orjson.dumps(run(spec, path))


@pytest.mark.parametrize("start", [datetime(2300, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
                                   datetime(9999, 12, 31, 10, tzinfo=UTC)])
def test_times_far_from_now_count_as_decide_counts_them(tmp_path: Path, start: datetime) -> None:
    """Before 1900 and after 2040 float seconds no longer hold every microsecond: the replay rounds each time as the
    engine's window does, so calls 60 s apart to the microsecond count the same way; the first hour of year 1 and
    the last of 9999 are counted too."""
    rnd = random.Random(9)
    t = start
    lines = []
    for i in range(600):
        t += timedelta(seconds=rnd.choice([2, 20, 30, 60]) if i else 1, microseconds=rnd.choice([0, 1, 2, 3]))
        lines.append(orjson.dumps({"ts": t.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                                   "agent": "ops-bot", "session": "s", "action": "slack.chat.post",
                                   "payload": {"i": i}}))
    path = tmp_path / "far.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rules = [{"name": "pair", "when": "slack.*", "if": "session.count >= 2", "then": _ask("g")},
             {"name": "three", "when": "slack.*", "if": "session.count == 3", "then": {"deny": {"reason": "3"}}}]
    docs = (_policy("far", rules),)
    agents = [AgentInfo.from_doc(d) for d in resources(MANIFESTS, kind="Agent")]
    state = EngineState.build(agents, compile_policies(docs), builtin())
    expected: Counter[S.Outcome] = Counter(_outcome(decide(Call.from_dict(orjson.loads(line)), state))
                                           for line in lines)
    spec = S.ReplaySpec(baseline=S.PolicySource("b", docs), proposed=S.PolicySource("p", docs),
                        agents=S.manifest_snapshots(resources(MANIFESTS, kind="Agent")), catalog=builtin())
    replayer = S.Replayer(spec, [str(path)])
    for chunk in S.read_chunks(S.Source(str(path), path), 0):
        replayer.feed(chunk)
    assert {base: n for (_, _, base, _), n in replayer.result().cells.items()} == dict(expected)
    assert len(expected) == 3
