"""Lifecycle benchmark: what grants, approvals, handles and decommissioning cost, beside anchors in the same run.

Figures:
- load_state with every grant ever approved (10 agents x H expired + 5 live) against only the grants that can
  still be live at the call's time (what `decide` loads); decide p50/p99 for a granted (undeclared) action,
  against decide for a declared action (the engine's plain path): the grant lookup's overhead as a ratio.
- handle check on use (HMAC, SQLite row, agent status, credential) p50/p99, against cedarpy `is_authorized`
  with a pre-parsed one-permit policy (an authorization check a connector could make instead).
- recorded decide with the approval gate (`record_call`: expiry sweep, decide, chain append, approval request)
  per call, against a bare chain append of the same decision record.
- decommission wall time for an agent holding G grants, H handles, A approvals and C bound credentials,
  with the orphan check and the seal.

Run: .venv/bin/python bench/lifecycle.py [--history 500] [--calls 5000] [--decommission 200]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arxctl.chain import store as chain  # noqa: E402
from arxctl.clock import parse_ts  # noqa: E402
from arxctl.policy.engine import Call, decide  # noqa: E402
from arxctl.policy.state import load_state, record_call  # noqa: E402
from arxctl.registry import approvals, credentials, grants, handles  # noqa: E402
from arxctl.registry import config as project  # noqa: E402
from arxctl.registry import resources as registry  # noqa: E402
from arxctl.registry.decommission import decommission  # noqa: E402
from arxctl.resources.validation import check_text  # noqa: E402
from arxctl.store.sqlite import Store  # noqa: E402

T0 = parse_ts("2026-04-14T10:00:00Z")
LIVE = 5
CONFIG = "groups: {leads: [alice]}\nadmins: [carol]\napprovals: {default_group: leads}\ngrants: {approvers: leads}\n"


def agent_yaml(name: str) -> str:
    return f"""
apiVersion: arx.dev/v1alpha1
kind: Agent
metadata: {{name: {name}, labels: {{env: prod}}}}
spec:
  owner: {{name: Owner, email: o@bank.example}}
  purpose: bench
  connectors:
    - name: servicenow
      dataClass: confidential
      target: {{system: sn, env: prod}}
      actions: [servicenow.change.read, servicenow.change.close]
    - name: slack
      target: {{system: slack, env: prod}}
      actions: [slack.chat.post]
"""


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def time_each(fn: Any, items: list[Any]) -> list[int]:
    gc.disable()
    try:
        out = []
        for item in items:
            start = time.perf_counter_ns()
            fn(item)
            out.append(time.perf_counter_ns() - start)
        return out
    finally:
        gc.enable()


def setup(directory: Path, agents: int) -> Store:
    store = Store(directory)
    report = check_text("\n---\n".join(agent_yaml(f"agent-{i:03d}") for i in range(agents)))
    assert report.ok, report.diagnostics[:3]
    registry.register(store, report.resources, actor="bench")
    (directory / "config.yaml").write_text(CONFIG)
    return store


def bench_grants(directory: Path, history: int, calls: int) -> None:
    store = setup(directory, 10)
    config = project.load(directory)
    catalog = registry.catalog(store)
    for i in range(10):
        agent = f"agent-{i:03d}"
        for j in range(history + LIVE):
            when = T0 - timedelta(days=2, minutes=j) if j < history else T0
            g = grants.request(store, agent=agent, actions=["jira.issue.create"], scope={"project": f"P{j}"},
                               ttl="15m", reason="bench", requested_by="ops", catalog=catalog, at=when)
            grants.approve(store, g.id, actor="alice", config=config, at=when)
    start = time.perf_counter()
    everything = load_state(store)
    full = time.perf_counter() - start
    start = time.perf_counter()
    state = load_state(store, grants_since=T0)
    recent = time.perf_counter() - start
    total = sum(len(v) for v in everything.grants.values())
    live = sum(len(v) for v in state.grants.values())
    granted = [Call(ts=T0 + timedelta(seconds=i % 600), agent=f"agent-{i % 10:03d}", action="jira.issue.create",
                    payload={"project": f"P{history + LIVE - 1}"}, session=f"s{i}") for i in range(calls)]
    plain = [Call(ts=T0 + timedelta(seconds=i % 600), agent=f"agent-{i % 10:03d}", action="servicenow.change.read",
                  payload={"id": "C1"}, session=f"s{i}") for i in range(calls)]
    assert decide(granted[0], state).reason == "grant"
    assert decide(granted[0], everything).reason == "grant"
    g50, g99 = percentiles(time_each(lambda c: decide(c, state), granted))
    a50, a99 = percentiles(time_each(lambda c: decide(c, everything), granted))
    p50, p99 = percentiles(time_each(lambda c: decide(c, state), plain))
    print(f"load_state, every grant ever approved ({total}): {full * 1000:8.1f} ms")
    print(f"load_state, grants live at the call's time ({live}):  {recent * 1000:8.1f} ms  "
          f"(ratio {full / recent:5.1f}x faster)")
    print(f"decide, granted action, {LIVE} live grants/agent:          p50 {g50:8.2f} us  p99 {g99:8.2f} us")
    print(f"decide, granted action, {history + LIVE} grants/agent in state:    p50 {a50:8.2f} us  p99 {a99:8.2f} us")
    print(f"decide, declared action (anchor, no grant lookup):  p50 {p50:8.2f} us  p99 {p99:8.2f} us")
    print(f"ratio granted / declared: p50 {g50 / p50:5.2f}x  p99 {g99 / p99:5.2f}x")
    store.close()


def bench_handles(directory: Path, calls: int) -> None:
    import json

    import cedarpy

    store = setup(directory, 10)
    catalog = registry.catalog(store)
    credentials.set_credential(store, "slack", b"xoxb-bench", actor="ops", reason="bench", catalog=catalog, at=T0)
    tokens = [handles.issue(store, agent=f"agent-{i % 10:03d}", connector="slack", actor="gw", reason="bench",
                            ttl="1h", at=T0)[1] for i in range(100)]
    at = T0 + timedelta(minutes=1)
    assert handles.check(store, tokens[0], at=at).valid
    items = [tokens[i % len(tokens)] for i in range(calls)]
    h50, h99 = percentiles(time_each(lambda t: handles.check(store, t, at=at), items))
    policy = cedarpy.PolicySet.from_str(
        'permit(principal == Agent::"agent-001", action == Action::"use", resource == Connector::"slack");')
    entities = cedarpy.Entities.from_json_str(json.dumps([]))
    request = {"principal": 'Agent::"agent-001"', "action": 'Action::"use"', "resource": 'Connector::"slack"',
               "context": {}}
    assert cedarpy.is_authorized(request, policy, entities).decision == cedarpy.Decision.Allow
    c50, c99 = percentiles(time_each(lambda r: cedarpy.is_authorized(r, policy, entities), [request] * calls))
    print(f"handle check on use (HMAC + SQLite):   p50 {h50:8.2f} us  p99 {h99:8.2f} us")
    print(f"cedarpy is_authorized (anchor):        p50 {c50:8.2f} us  p99 {c99:8.2f} us")
    print(f"ratio handle check / cedarpy: p50 {h50 / c50:5.2f}x  p99 {h99 / c99:5.2f}x")
    store.close()


def bench_record(directory: Path, calls: int) -> None:
    store = setup(directory, 10)
    config = project.load(directory)
    gated = [Call(ts=T0 + timedelta(seconds=i), agent=f"agent-{i % 10:03d}", action="servicenow.change.close",
                  payload={"change_ids": [f"C{i}"]}, session=f"s{i}") for i in range(calls)]
    from arxctl.registry import lifecycle

    for i in range(10):
        lifecycle.throttle(store, f"agent-{i:03d}", actor="ops", reason="bench", ts="2026-04-14T10:00:00Z")
    first = record_call(store, gated[0], actor="ops", config=config)
    assert first.approval_created
    r50, r99 = percentiles(time_each(lambda c: record_call(store, c, actor="ops", config=config), gated[1:]))
    body = first.decision.to_record()

    def bare(_: int) -> None:
        with store.transaction() as conn:
            chain.append(conn, chain.Entry(type="decision", agent="agent-000", actor="ops", body=body, ts=body["ts"]))

    b50, b99 = percentiles(time_each(bare, list(range(calls))))
    print(f"recorded decide + approval request:    p50 {r50:8.2f} us  p99 {r99:8.2f} us")
    print(f"bare chain append (anchor):            p50 {b50:8.2f} us  p99 {b99:8.2f} us")
    print(f"ratio gated record / bare append: p50 {r50 / b50:5.1f}x  p99 {r99 / b99:5.1f}x")
    print(f"pending approvals now: {len(approvals.list_approvals(store, at=T0, status='pending'))}")
    store.close()


def bench_decommission(directory: Path, count: int) -> None:
    store = setup(directory, 2)
    config = project.load(directory)
    catalog = registry.catalog(store)
    credentials.set_credential(store, "slack", b"shared", actor="ops", reason="b", catalog=catalog, at=T0)
    credentials.set_credential(store, "servicenow", b"own", actor="ops", reason="b", catalog=catalog,
                               agent="agent-000", at=T0)
    for j in range(count):
        g = grants.request(store, agent="agent-000", actions=["jira.issue.create"], scope={"n": j}, ttl="1h",
                           reason="b", requested_by="ops", catalog=catalog, at=T0)
        grants.approve(store, g.id, actor="alice", config=config, at=T0)
        handles.issue(store, agent="agent-000", connector="slack", actor="gw", reason="b", ttl="1h", at=T0)
        record_call(store, Call(ts=T0, agent="agent-000", action="servicenow.change.close",
                                payload={"change_ids": [f"A{j}", f"B{j}"]}), actor="ops", config=config)
    first_seq = chain.size(store.conn)
    start = time.perf_counter()
    done = decommission(store, "agent-000", actor="dana", reason="bench", retention_class="sox-7yr", config=config,
                        at=T0 + timedelta(minutes=5))
    elapsed = time.perf_counter() - start
    assert done.orphans.ok
    revoked = done.revoked
    print(f"decommission of an agent with {len(revoked['grants']['revoked'])} grants, {len(revoked['handles'])} "
          f"handles, {len(revoked['approvals']['declined'])} approvals, {len(revoked['credentials'])} credential: "
          f"{elapsed * 1000:8.1f} ms in one transaction ({done.seal_seq - first_seq} chain records, orphan check "
          "and seal included)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=500, help="expired grants per agent (10 agents)")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--decommission", type=int, default=200, help="grants, handles and approvals to revoke")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bench_grants(base / "grants", args.history, args.calls)
        bench_handles(base / "handles", args.calls)
        bench_record(base / "record", min(args.calls, 2000))
        bench_decommission(base / "decommission", args.decommission)


if __name__ == "__main__":
    main()
