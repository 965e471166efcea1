"""Building the engine's state from the embedded store, and deciding (and recording) one call from the CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arxctl.canonical import digest
from arxctl.chain import store as chain
from arxctl.chain.records import Record
from arxctl.clock import parse_ts
from arxctl.errors import InputError, NotFoundError, ValidationFailed
from arxctl.jsonarg import read_json_argument
from arxctl.policy.catalog import Catalog
from arxctl.policy.compiler import APPROVAL_REQUIRED, compile_policies
from arxctl.policy.engine import (
    AgentInfo,
    ApprovedCall,
    Call,
    Decision,
    EngineState,
    Explanation,
    Grant,
    SessionWindow,
    call_time,
    decide,
    explain,
)
from arxctl.policy.risk import RiskModel
from arxctl.store.sqlite import Store

if TYPE_CHECKING:
    from arxctl.registry.approvals import ApprovalRecord
    from arxctl.registry.config import ProjectConfig

DECISION = "decision"
_BATCH = 256


def parse_payload(text: str) -> dict[str, Any]:
    """`--payload`: a JSON object, or `@file` holding one; errors name the line and column."""
    value = read_json_argument(text, "--payload", "payload")
    if not isinstance(value, dict):
        source = text[1:] if text.startswith("@") else "--payload"
        raise InputError(f"{source}: the payload must be a JSON object, got {type(value).__name__}")
    return value


def load_policy_paths(paths: Sequence[Path], catalog_files: Sequence[Path], base: Catalog) -> list[dict[str, Any]]:
    """The Policy resources in files or folders, validated like `arxctl validate`; any error raises."""
    from arxctl.resources.validation import check_paths

    report = check_paths(paths, catalog_files=catalog_files, base_catalog=base)
    if not report.ok or report.input_error:
        raise ValidationFailed([d for d in report.diagnostics if d.severity == "error"])
    return [r.doc for r in report.resources if r.kind == "Policy"]


def extend_catalog(base: Catalog, catalog_files: Sequence[Path]) -> Catalog:
    """The catalog with the ConnectorCatalog documents of `--catalog` files added (validated first)."""
    if not catalog_files:
        return base
    from arxctl.resources.validation import check_paths

    report = check_paths(catalog_files, base_catalog=base)
    if not report.ok or report.input_error:
        raise ValidationFailed([d for d in report.diagnostics if d.severity == "error"])
    catalog = base
    for resource in report.resources:
        if resource.kind == "ConnectorCatalog":
            catalog = catalog.extend(resource.doc["spec"], resource.name)
    return catalog


def load_state(
    store: Store | None, *, policy_docs: Sequence[dict[str, Any]] | None = None, catalog: Catalog | None = None,
    model: RiskModel | None = None, window: SessionWindow | None = None, approvals: Sequence[ApprovedCall] = (),
    grants_since: datetime | None = None,
) -> EngineState:
    """Registered agents (with status and throttle), policies and grants; `policy_docs` replaces the registered
    policies. `approvals` are approved calls the caller will consume when one authorizes its decision;
    `grants_since` leaves out grants that ended before it (for deciding calls at or after that time)."""
    from arxctl.registry import resources as registry

    catalog = catalog or registry.catalog(store)
    agents: list[AgentInfo] = []
    docs: list[dict[str, Any]] = list(policy_docs) if policy_docs is not None else []
    grants: list[Grant] = []
    if store is not None:
        from arxctl.registry.grants import engine_grants
        from arxctl.registry.lifecycle import throttled_agents

        throttled = throttled_agents(store.conn)
        agents = [AgentInfo.from_doc(v.doc, status=h.status, throttled=h.name in throttled)
                  for h, v in registry.current(store, "Agent")]
        if policy_docs is None:
            docs = [v.doc for _, v in registry.current(store, "Policy")]
        grants = engine_grants(store.conn, grants_since)
    return EngineState.build(agents, compile_policies(docs, model), catalog, grants=grants, window=window,
                             approvals=approvals)


def recent_window(
    conn: sqlite3.Connection, agent: str, session: str, before: Call, model: RiskModel,
    lateness: timedelta = timedelta(hours=1),
) -> SessionWindow:
    """A session window holding the recorded decisions of this agent and session that can still count.

    Reads the agent's decision records newest first and stops at the first one older than the window
    plus `lateness` before the call.
    """
    window = SessionWindow(lateness.total_seconds())
    cutoff = call_time(before) - timedelta(seconds=model.frequency_window_s) - lateness
    found: list[int] = []
    last_seq: int | None = None
    window_us = round(model.frequency_window_s * 1_000_000)
    while True:
        rows = conn.execute(
            "SELECT seq, ts, line FROM chain WHERE agent = ? AND type = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (agent, DECISION, last_seq if last_seq is not None else 2**62, _BATCH),
        ).fetchall()
        if not rows:
            break
        done = False
        for seq, ts, line in rows:
            last_seq = seq
            moment = parse_ts(ts)
            if moment < cutoff:
                done = True
                break
            body = Record.from_line(line).body
            if body.get("session") == session:
                found.append(round(moment.timestamp() * 1_000_000))
        if done:
            break
    for t_us in reversed(found):
        window.observe(agent, session, t_us, window_us)
    return window


def decide_call(
    store: Store | None, call: Call, *, policy_docs: Sequence[dict[str, Any]] | None = None,
    catalog: Catalog | None = None, record: bool = False, actor: str | None = None,
) -> tuple[Decision, int | None]:
    """Decide one call against the registered state; with `record`, append the decision record to the chain
    in the same transaction that read the state (returns the decision and the chain seq)."""
    if record:
        if store is None:
            raise InputError("--record needs a state store")
        recorded = record_call(store, call, policy_docs=policy_docs, catalog=catalog, actor=actor)
        return recorded.decision, recorded.seq
    if store is None:
        return decide(call, load_state(None, policy_docs=policy_docs, catalog=catalog)), None
    return _decide_from(store, store.conn, call, policy_docs, catalog), None


def _decide_from(store: Store, conn: sqlite3.Connection, call: Call,
                 policy_docs: Sequence[dict[str, Any]] | None, catalog: Catalog | None,
                 approvals: Sequence[ApprovedCall] = ()) -> Decision:
    state = load_state(store, policy_docs=policy_docs, catalog=catalog, approvals=approvals,
                       grants_since=call_time(call))
    window = recent_window(conn, call.agent, call.session, call, state.policies.model)
    return decide(call, replace(state, window=window))


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A recorded decision, its chain seq, the approval it opened or reused, and the approval it consumed."""

    decision: Decision
    seq: int
    approval: ApprovalRecord | None = None
    approval_created: bool = False
    consumed: str | None = None


def record_call(
    store: Store, call: Call, *, policy_docs: Sequence[dict[str, Any]] | None = None,
    catalog: Catalog | None = None, actor: str | None = None, current_state: Any = None,
    approval_id: str | None = None, config: ProjectConfig | None = None,
) -> RecordedCall:
    """Decide and record one call in one transaction, with the approval gate: an APPROVAL_REQUIRED decision
    opens (or reuses) a pending approval bound to the exact call; an approved one for the exact call turns it
    into ALLOW once and is consumed. A sealed agent's decisions are recorded outside its sealed record."""
    from arxctl.registry import approvals as gate
    from arxctl.registry import config as project

    requester = actor or call.agent
    at = call_time(call)
    with store.transaction() as conn:
        gate.expire_due(conn, actor=requester, at=at, agent=call.agent)
        if approval_id is not None:
            try:
                payload_digest: str | None = digest(call.payload)
            except TypeError:
                payload_digest = None
            usable = [gate.check_usable(conn, approval_id, call.agent, call.action, payload_digest, at)]
        else:
            usable = gate.usable(conn, call.agent, at)
        decision = _decide_from(store, conn, call, policy_docs, catalog, usable)
        body = decision.to_record()
        sealed = conn.execute("SELECT 1 FROM chain_seals WHERE agent = ?", (call.agent,)).fetchone() is not None
        appended = chain.append(
            conn, chain.Entry(type=DECISION, agent=None if sealed else call.agent, actor=actor, body=body,
                              ts=body["ts"])
        )
        opened: ApprovalRecord | None = None
        created = False
        if decision.verdict == APPROVAL_REQUIRED:
            settings = config if config is not None else project.load(store.directory)
            opened, created = gate.request(conn, decision, payload=call.payload, requested_by=requester,
                                           config=settings, decision_seq=appended.seq, current_state=current_state)
        if decision.approval_id is not None:
            gate.consume(conn, decision.approval_id, decision=decision, decision_seq=appended.seq, actor=requester)
        return RecordedCall(decision, appended.seq, opened, created, decision.approval_id)


def explain_action(
    store: Store | None, agent: str, action: str, *, policy_docs: Sequence[dict[str, Any]] | None = None,
    catalog: Catalog | None = None, env: str | None = None,
) -> Explanation:
    """`policy explain` for a registered agent."""
    state = load_state(store, policy_docs=policy_docs, catalog=catalog)
    if agent not in state.agents:
        raise NotFoundError(f"no agent '{agent}' (register it with `arxctl register`)")
    return explain(agent, action, state, env=env)
