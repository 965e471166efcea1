"""Decision engine benchmark: single-call `decide` latency beside cedarpy `is_authorized` in the same run.

Set-up: 50 rules in 8 policies over 20 connectors (17 built-in, 3 from a catalog), 12 agents, 20,000 calls
drawn from the agents' manifests (about 5% undeclared), sessions of 1-40 calls one second apart, payloads of
2-4 fields. Rules: 16 without `if`, 14 whose `if` reads only agent/target/operation (memoized), 20 that read
the payload or the session (evaluated per call). The Cedar policy set is the same shape: one `permit` per agent
for its declared actions and one `forbid` per rule, globs as `like`, conditions on `context` with `has` guards
(one to one where Cedar has the operator; `size(payload.ids) > 2` becomes `ids.contains("x3")`).

Figures: decide p50/p99 over every call, and split by path (no CEL evaluated / CEL evaluated); cedarpy p50/p99
with pre-parsed PolicySet and Entities (its fastest path) and with policy text parsed per call (the anchor's
~100 us); the ratios; throughput of a replay. Targets: decide p50 <= 10 us, p99 <= 50 us, >= 10x cedarpy.

Run: .venv/bin/python bench/decide.py [--calls 20000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arxctl.policy.catalog import builtin  # noqa: E402
from arxctl.policy.compiler import compile_policies  # noqa: E402
from arxctl.policy.engine import AgentInfo, Call, EngineState, decide  # noqa: E402

T0 = datetime(2026, 4, 14, 8, 0, 0, tzinfo=UTC)
EXTRA_CATALOG = {"connectors": [
    {"name": "acme-ticketing", "dataClass": "confidential",
     "actions": {"ticket.read": "read", "ticket.close": "write", "ticket.purge": "destructive"}},
    {"name": "acme-billing", "dataClass": "restricted",
     "actions": {"invoice.read": "read", "invoice.refund": "write", "invoice.void": "destructive"}},
    {"name": "acme-hr", "dataClass": "restricted",
     "actions": {"employee.read": "read", "employee.update": "write", "employee.offboard": "destructive"}},
]}
ENVS = ["prod", "prod", "staging", "dev"]


def build_catalog():
    return builtin().extend(EXTRA_CATALOG, "bench")


def build_agents(catalog, rnd: random.Random) -> list[dict[str, Any]]:
    connectors = sorted(catalog.connectors)
    docs = []
    for i in range(12):
        chosen = rnd.sample(connectors, 5)
        entries = []
        for name in chosen:
            actions = sorted(catalog.connector(name).actions)
            entries.append({"name": name, "dataClass": rnd.choice(["internal", "confidential", "restricted"]),
                            "target": {"system": f"{name}-sys", "env": rnd.choice(ENVS)},
                            "actions": rnd.sample(actions, min(len(actions), 6))})
        docs.append({"apiVersion": "arx.dev/v1alpha1", "kind": "Agent",
                     "metadata": {"name": f"agent-{i:02d}",
                                  "labels": {"env": rnd.choice(ENVS), "team": rnd.choice(["secops", "platform", "cs"]),
                                             "region": rnd.choice(["us-east", "eu-west"])}},
                     "spec": {"owner": {"name": "Owner", "email": "o@bank.example", "team": "secops"},
                              "purpose": "bench", "connectors": entries}})
    return docs


STATIC_IFS = ['target.env == "prod"', 'operation == "destructive"', 'agent.labels.team != "platform"',
              '"region" in agent.labels && agent.labels.region == "eu-west"', 'operation == "write"']
DYNAMIC_IFS = ["has(payload.count) && payload.count > 3", 'has(payload.mode) && payload.mode == "bulk"',
               "session.count > 20", 'has(payload.ids) && size(payload.ids) > 2',
               'has(payload.reason) && payload.reason.startsWith("urgent")']
CEDAR_IFS = {
    None: None,
    'target.env == "prod"': 'context.target.env == "prod"',
    'operation == "destructive"': 'context.operation == "destructive"',
    'agent.labels.team != "platform"': 'principal.labels.team != "platform"',
    '"region" in agent.labels && agent.labels.region == "eu-west"':
        'principal.labels has region && principal.labels.region == "eu-west"',
    'operation == "write"': 'context.operation == "write"',
    "has(payload.count) && payload.count > 3": "context.payload has count && context.payload.count > 3",
    'has(payload.mode) && payload.mode == "bulk"': 'context.payload has mode && context.payload.mode == "bulk"',
    "session.count > 20": "context.session.count > 20",
    'has(payload.ids) && size(payload.ids) > 2': "context.payload has ids && context.payload.ids.contains(\"x3\")",
    'has(payload.reason) && payload.reason.startsWith("urgent")':
        'context.payload has reason && context.payload.reason like "urgent*"',
}


def build_policies(catalog, agents: list[dict[str, Any]], rnd: random.Random) -> list[dict[str, Any]]:
    declared = sorted({a for doc in agents for c in doc["spec"]["connectors"] for a in c["actions"]})
    connectors = sorted(catalog.connectors)
    conditions: list[str | None] = [None] * 16 + (STATIC_IFS * 3)[:14] + DYNAMIC_IFS * 4
    rnd.shuffle(conditions)
    policies: list[dict[str, Any]] = [{"apiVersion": "arx.dev/v1alpha1", "kind": "Policy",
                                       "metadata": {"name": f"policy-{p}"}, "spec": {"rules": []}} for p in range(8)]
    policies[0]["spec"]["thresholds"] = {"review": 60, "deny": 80}
    policies[1]["spec"]["selector"] = {"env": "prod"}
    policies[1]["spec"]["thresholds"] = {"review": 55, "deny": 85}
    for i, cond in enumerate(conditions):
        when = rnd.choice(declared) if i % 10 < 6 else rnd.choice(connectors) + ".*"
        rule: dict[str, Any] = {"name": f"rule-{i:02d}", "when": when}
        if cond is not None:
            rule["if"] = cond
        if i % 3 == 0:
            rule["then"] = {"deny": {"reason": "bench"}}
        else:
            rule["then"] = {"approvalRequired": {"severity": rnd.choice(["low", "medium", "high"]),
                                                 "approvers": {"group": "leads"}, "timeout": "1h"}}
        policies[i % 8]["spec"]["rules"].append(rule)
    return policies


def build_calls(catalog, agents: list[dict[str, Any]], n: int, rnd: random.Random) -> list[Call]:
    calls: list[Call] = []
    ts = T0
    all_actions = sorted(catalog.actions)
    while len(calls) < n:
        doc = rnd.choice(agents)
        session = f"s-{len(calls)}"
        for _ in range(rnd.randint(1, 40)):
            entry = rnd.choice(doc["spec"]["connectors"])
            action = rnd.choice(all_actions) if rnd.random() < 0.05 else rnd.choice(entry["actions"])
            payload: dict[str, Any] = {"id": f"obj-{rnd.randint(1, 99999)}", "count": rnd.randint(0, 6)}
            if rnd.random() < 0.5:
                payload["mode"] = rnd.choice(["single", "bulk"])
            if rnd.random() < 0.3:
                payload["ids"] = [f"x{k}" for k in range(rnd.randint(1, 4))]
            if rnd.random() < 0.3:
                payload["reason"] = rnd.choice(["urgent: outage", "routine"])
            ts += timedelta(seconds=1)
            calls.append(Call(ts=ts.isoformat().replace("+00:00", "Z"), agent=doc["metadata"]["name"],
                              action=action, payload=payload, session=session, target=None))
    return calls[:n]


def cedar_policies(agents: list[dict[str, Any]], policies: list[dict[str, Any]]) -> str:
    out = []
    for doc in agents:
        actions = sorted({a for c in doc["spec"]["connectors"] for a in c["actions"]})
        listed = ", ".join(f'Action::"{a}"' for a in actions)
        out.append(f'permit(principal == Agent::"{doc["metadata"]["name"]}", action in [{listed}], resource);')
    for p in policies:
        for rule in p["spec"]["rules"]:
            scope = (f'action == Action::"{rule["when"]}"' if "*" not in rule["when"] else "action")
            conds = []
            if "*" in rule["when"]:
                conds.append(f'context.action like "{rule["when"]}"')
            cedar_if = CEDAR_IFS[rule.get("if")]
            if cedar_if:
                conds.append(cedar_if)
            when = f" when {{ {' && '.join(conds)} }}" if conds else ""
            out.append(f"@id(\"{p['metadata']['name']}/{rule['name']}\")\nforbid(principal, {scope}, resource){when};")
    return "\n".join(out)


def cedar_entities(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"uid": {"type": "Agent", "id": d["metadata"]["name"]},
             "attrs": {"labels": d["metadata"]["labels"]}, "parents": []} for d in agents]


def cedar_request(call: Call, state: EngineState) -> dict[str, Any]:
    agent = state.agents.get(call.agent)
    info = state.catalog.lookup(call.action)
    entry = agent.actions.get(call.action) if agent else None
    return {
        "principal": f'Agent::"{call.agent}"', "action": f'Action::"{call.action}"',
        "resource": f'Target::"{entry.system if entry else "unknown"}"',
        "context": {"payload": call.payload, "action": call.action,
                    "operation": info.operation if info else "unknown",
                    "target": {"env": (entry.env if entry else None) or "unknown"},
                    "session": {"id": call.session, "count": 1}},
    }


def percentiles(ns: list[int]) -> tuple[float, float]:
    ordered = sorted(ns)
    return ordered[len(ordered) // 2] / 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000


def time_each(fn, items: list[Any]) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    for item in items:
        start = clock()
        fn(item)
        out.append(clock() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--cedar-calls", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rnd = random.Random(args.seed)

    catalog = build_catalog()
    agent_docs = build_agents(catalog, rnd)
    policy_docs = build_policies(catalog, agent_docs, rnd)
    compiled = compile_policies(policy_docs)
    used = {a.partition(".")[0] for d in agent_docs for c in d["spec"]["connectors"] for a in c["actions"]}
    calls = build_calls(catalog, agent_docs, args.calls, rnd)
    agents = [AgentInfo.from_doc(d) for d in agent_docs]

    def fresh() -> EngineState:
        return EngineState.build(agents, compiled, catalog)

    print(f"set-up: {compiled.rule_count()} rules in {len(compiled.policies)} policies, {len(catalog.connectors)} "
          f"connectors in the catalog ({len(used)} used by the agents), {len(agents)} agents, {len(calls)} calls")

    warm = fresh()
    for c in calls[:2000]:
        decide(c, warm)

    state = fresh()
    gc.disable()
    verdicts: dict[str, int] = {}
    evaluated: list[bool] = []
    for c in calls:
        d = decide(c, state)
        verdicts[d.verdict] = verdicts.get(d.verdict, 0) + 1
    state = fresh()
    ns = time_each(lambda c: decide(c, state), calls)
    gc.enable()
    probe = fresh()
    for c in calls:
        agent = probe.agents.get(c.agent)
        cands = probe.policies.candidates(c.action, agent.labels_key) if agent and c.action in agent.actions else None
        evaluated.append(bool(cands and cands.dynamic))
    p50, p99 = percentiles(ns)
    no_cel = [t for t, e in zip(ns, evaluated, strict=True) if not e]
    with_cel = [t for t, e in zip(ns, evaluated, strict=True) if e]
    print(f"verdicts: {dict(sorted(verdicts.items()))}")
    print(f"decide             p50 {p50:7.2f} us   p99 {p99:7.2f} us   (all {len(ns)} calls)")
    for label, part in (("  no CEL evaluated", no_cel), ("  CEL evaluated", with_cel)):
        if part:
            a, b = percentiles(part)
            print(f"{label:<18} p50 {a:7.2f} us   p99 {b:7.2f} us   ({len(part)} calls)")

    import cedarpy

    text = cedar_policies(agent_docs, policy_docs)
    entities = cedar_entities(agent_docs)
    requests = [cedar_request(c, state) for c in calls[: args.cedar_calls]]
    policy_set = cedarpy.PolicySet.from_str(text)
    entity_set = cedarpy.Entities.from_json_str(json.dumps(entities))
    check = cedarpy.is_authorized(requests[0], policy_set, entity_set)
    assert check.decision in (cedarpy.Decision.Allow, cedarpy.Decision.Deny), check
    for r in requests[:300]:
        cedarpy.is_authorized(r, policy_set, entity_set)
    gc.disable()
    parsed_ns = time_each(lambda r: cedarpy.is_authorized(r, policy_set, entity_set), requests)
    text_ns = time_each(lambda r: cedarpy.is_authorized(r, text, entities), requests[:1000])
    gc.enable()
    c50, c99 = percentiles(parsed_ns)
    t50, t99 = percentiles(text_ns)
    print(f"cedarpy (parsed)   p50 {c50:7.2f} us   p99 {c99:7.2f} us   ({len(parsed_ns)} calls, "
          f"{text.count(';')} Cedar policies)")
    print(f"cedarpy (text)     p50 {t50:7.2f} us   p99 {t99:7.2f} us   ({len(text_ns)} calls)")
    print(f"ratio p50: cedarpy parsed / decide = {c50 / p50:5.1f}x   cedarpy text / decide = {t50 / p50:5.1f}x")
    print(f"ratio p99: cedarpy parsed / decide = {c99 / p99:5.1f}x   cedarpy text / decide = {t99 / p99:5.1f}x")

    state = fresh()
    start = time.perf_counter()
    for c in calls:
        decide(c, state)
    elapsed = time.perf_counter() - start
    print(f"replay: {len(calls) / elapsed:,.0f} decisions/s in one process "
          f"(mean {statistics.fmean(ns) / 1000:.2f} us with per-call timing)")
    ok = p50 <= 10 and p99 <= 50 and c50 / p50 >= 10
    print(f"targets (p50 <= 10 us, p99 <= 50 us, >= 10x cedarpy parsed): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
