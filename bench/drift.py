"""Drift and assess benchmark: drift check throughput and memory beside the bare parse of the same stream.

Set-up: 40 agents drawn from the built-in catalog (4 connectors each, prod/staging/dev targets, half with a
declared perMinute rate), a gzip NDJSON activity file of N calls (default 400,000) in time order with about 2%
calls to 3 undeclared actions of one of the agent's connectors, 1% to 3 foreign actions, 1% to prod for one
action (another env for agents whose first connector is not prod). The variety of findings saturates early, so
the memory figure isolates the effect of volume.

Figures:
- the anchor: gunzip + orjson.loads of every line, nothing else (the floor any streaming reader pays);
- `drift check` on the same file (read, validate, compare with the manifests, rate windows, report);
- a `decide` replay of the same calls through the engine (what `simulate` pays per call), for scale;
- the peak Python memory of the drift check (tracemalloc) at N/4 and N calls: flat memory means a ratio near 1
  (memory follows the number of distinct findings and the last 11 minutes of call times, never the call count);
- `assess` on a store holding 1,000 agents and 100,000 decision records, beside a bare full scan of the chain.
Targets: drift <= 4x the parse floor, memory ratio N/(N/4) <= 1.5, assess <= 2 s.

Run: .venv/bin/python bench/drift.py [--calls 400000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arxctl.chain import store as chain  # noqa: E402
from arxctl.clock import format_ts  # noqa: E402
from arxctl.policy.catalog import builtin  # noqa: E402
from arxctl.policy.compiler import compile_policies  # noqa: E402
from arxctl.policy.engine import Call, EngineState, decide  # noqa: E402
from arxctl.registry import assess, drift  # noqa: E402
from arxctl.registry import config as project  # noqa: E402
from arxctl.registry import resources as registry  # noqa: E402
from arxctl.resources.validation import check_text  # noqa: E402
from arxctl.store.sqlite import Store  # noqa: E402

T0 = datetime(2026, 4, 14, 0, 0, 0, tzinfo=UTC)
ENVS = ("prod", "staging", "dev")


def manifests(rnd: random.Random, count: int) -> list[dict[str, Any]]:
    catalog = builtin()
    names = sorted(c for c in catalog.connectors if len(catalog.connectors[c].actions) >= 6)
    docs = []
    for i in range(count):
        entries = []
        for name in rnd.sample(names, 4):
            actions = sorted(catalog.connectors[name].actions)
            entries.append({"name": name, "target": {"system": f"{name}-{i}", "env": rnd.choice(ENVS)},
                            "actions": rnd.sample(actions, min(5, len(actions)))})
        spec: dict[str, Any] = {"owner": {"name": f"Owner {i}", "email": f"o{i}@bank.example", "team": "t"},
                                "purpose": "bench", "connectors": entries}
        if i % 2 == 0:
            spec["rate"] = {"perMinute": 600}
        docs.append({"apiVersion": "arx.dev/v1alpha1", "kind": "Agent",
                     "metadata": {"name": f"agent-{i:03d}", "labels": {"env": "prod"}}, "spec": spec})
    return docs


def write_activity(path: Path, docs: list[dict[str, Any]], calls: int, rnd: random.Random) -> None:
    catalog = builtin()
    foreign = random.Random(1).sample(sorted(catalog.actions), 3)
    extra = {}
    for doc in docs:
        entry = max(doc["spec"]["connectors"], key=lambda e: len(catalog.connectors[e["name"]].actions))
        spare = sorted(set(catalog.connectors[entry["name"]].actions) - set(entry["actions"]))
        extra[doc["metadata"]["name"]] = (entry, random.Random(doc["metadata"]["name"]).sample(spare, 3))
    ts = T0
    with gzip.open(path, "wb", compresslevel=3) as out:
        for i in range(calls):
            doc = docs[i % len(docs)]
            entry = rnd.choice(doc["spec"]["connectors"])
            action = rnd.choice(entry["actions"])
            target = dict(entry["target"])
            roll = rnd.random()
            if roll < 0.02:
                entry, spare = extra[doc["metadata"]["name"]]
                action, target = rnd.choice(spare), dict(entry["target"])
            elif roll < 0.03:
                action = rnd.choice(foreign)
            elif roll < 0.04:
                first = doc["spec"]["connectors"][0]
                action, target = first["actions"][0], {**first["target"], "env": "prod"}
            if i % len(docs) == 0:
                ts += timedelta(milliseconds=rnd.randint(50, 1000))
            record = {"ts": format_ts(ts), "agent": doc["metadata"]["name"], "session": f"s-{i // 500}",
                      "action": action, "target": target, "payload": {"id": i, "note": "x" * rnd.randint(0, 40)}}
            out.write(orjson.dumps(record) + b"\n")


def parse_floor(path: Path) -> int:
    n = 0
    with gzip.open(path, "rb") as stream:
        for line in stream:
            orjson.loads(line)
            n += 1
    return n


def drift_check(path: Path, agents: dict[str, drift.Declared], state: EngineState) -> drift.Report:
    with drift.open_activity(path) as stream:
        return drift.analyze(drift.iter_activity(stream, str(path)), agents, state, source=str(path))


def decide_replay(path: Path, state: EngineState) -> int:
    n = 0
    with gzip.open(path, "rb") as stream:
        for line in stream:
            decide(Call.from_dict(orjson.loads(line)), state)
            n += 1
    return n


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def peak_memory(fn: Any, *args: Any) -> tuple[int, int]:
    """Peak traced memory of a drift check, and how many findings it reported."""
    gc.collect()
    tracemalloc.start()
    report = fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, sum(len(a.findings) for a in report.agents)


def build_store(directory: Path, docs: list[dict[str, Any]], decisions: int, rnd: random.Random) -> Store:
    store = Store(directory)
    report = check_text("\n---\n".join(orjson.dumps(d).decode() for d in docs))
    registry.register(store, report.resources, actor="bench")
    batch = []
    for i in range(decisions):
        doc = docs[rnd.randrange(len(docs))]
        body = {"ts": format_ts(T0 + timedelta(seconds=i)), "agent": doc["metadata"]["name"], "action": "x.y.z",
                "verdict": "ALLOW", "session": "s"}
        batch.append(chain.Entry("decision", doc["metadata"]["name"], "bench", body, body["ts"]))
        if len(batch) == 10_000:
            with store.transaction() as conn:
                chain.append_many(conn, batch)
            batch = []
    if batch:
        with store.transaction() as conn:
            chain.append_many(conn, batch)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    docs = manifests(rnd, 40)
    catalog = builtin()
    agents = {d["metadata"]["name"]: drift.declared_from_doc(d, "active", catalog) for d in docs}
    state = EngineState.build([a.info for a in agents.values()], compile_policies([]), catalog)
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "activity.ndjson.gz", Path(tmp) / "quarter.ndjson.gz"
        write_activity(big, docs, args.calls, random.Random(args.seed))
        write_activity(small, docs, args.calls // 4, random.Random(args.seed))
        print(f"set-up: {len(docs)} agents, {args.calls:,} calls, {big.stat().st_size / 1e6:.1f} MB gzip")

        floor_s, n = timed(parse_floor, big)
        drift_s, report = timed(drift_check, big, agents, state)
        replay_s, _ = timed(decide_replay, big, EngineState.build(
            [a.info for a in agents.values()], compile_policies([]), catalog))
        print(f"anchor: gunzip + orjson.loads  {n / floor_s:12,.0f} lines/s  ({floor_s:.2f} s)")
        print(f"drift check                    {n / drift_s:12,.0f} calls/s  ({drift_s:.2f} s, "
              f"{len(report.agents)} agents drifted, {sum(len(a.findings) for a in report.agents)} findings)")
        print(f"decide replay (for scale)      {n / replay_s:12,.0f} calls/s  ({replay_s:.2f} s)")
        ratio = drift_s / floor_s
        print(f"ratio: drift / parse floor = {ratio:.2f}x   decide replay / drift = {replay_s / drift_s:.2f}x")

        quarter, few = peak_memory(drift_check, small, agents, state)
        full, many = peak_memory(drift_check, big, agents, state)
        memory_ratio = full / quarter
        print(f"memory: peak {quarter / 1e6:.2f} MB at {args.calls // 4:,} calls ({few} findings), "
              f"{full / 1e6:.2f} MB at {args.calls:,} calls ({many} findings) (ratio {memory_ratio:.2f})")

        fleet = manifests(random.Random(args.seed + 1), 1000)
        store = build_store(Path(tmp) / "state", fleet, 100_000, rnd)
        scan_s, _ = timed(lambda: sum(1 for _ in chain.iter_line_bytes(store.conn)))
        assess_s, result = timed(assess.assess, store, project.ProjectConfig(), now=T0 + timedelta(days=2))
        records = chain.size(store.conn)
        print(f"assess: {assess_s:.2f} s on 1,000 agents and {records:,} chain records (stage {result.stage}); "
              f"anchor full chain scan {scan_s:.2f} s; ratio {assess_s / scan_s:.2f}x")
        store.close()
    met = ratio <= 4.0 and memory_ratio <= 1.5 and assess_s <= 2.0
    print(f"targets (drift <= 4x parse floor, memory ratio <= 1.5, assess <= 2 s): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
