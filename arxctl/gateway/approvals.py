"""Approvals opened by the gateway: the pending approval bound to the exact call, what the approver sees besides
it (the agent's reasoning trace and the blast radius), the agent's poll, and consuming an approval once.

Design: the gateway never stores the unmasked payload. When the approval is granted, the agent (the SDK does
it on its poll) submits the same call again naming the approval; the engine allows it only when the payload
digest, action and target are the approved ones, and the approval is consumed in the state store's write
transaction before the call leaves the gateway. Two replicas racing on one approval: one consumes it, the other
is refused. The call therefore runs exactly once, with exactly the approved payload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from arxctl.canonical import canonical_str
from arxctl.clock import format_ts
from arxctl.errors import NotFoundError
from arxctl.gateway.drivers.base import Current
from arxctl.policy.engine import ApprovedCall, Decision
from arxctl.policy.masking import MASK, is_secret_key
from arxctl.registry import approvals as gate
from arxctl.registry import config as project
from arxctl.store.sqlite import Store

MAX_REASONING_CHARS = 16_384
_TOKEN = re.compile(r"arxh1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
POLL_FIELDS = ("id", "status", "agent", "action", "group", "requested_at", "expires_at", "decided_by", "decided_at",
               "comment", "usable_until", "consumed_at", "payload_digest")


def _secret_values(value: Any, out: set[str], secret: bool = False) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _secret_values(item, out, secret or (isinstance(key, str) and is_secret_key(key)))
    elif isinstance(value, list | tuple):
        for item in value:
            _secret_values(item, out, secret)
    elif secret and isinstance(value, str | int | float) and not isinstance(value, bool) and len(str(value)) >= 4:
        out.add(str(value))


def clean_reasoning(text: str | None, payload: Any) -> str | None:
    """The reasoning trace as stored for approvers: handle tokens and the values of secret-looking payload
    fields masked, at most 16 KiB."""
    if not text:
        return None
    text = _TOKEN.sub(MASK, text[:MAX_REASONING_CHARS])
    values: set[str] = set()
    _secret_values(payload, values)
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def blast_radius(decision: Decision, driver_blast: Mapping[str, Any], current: Current) -> dict[str, Any]:
    """What the call can touch: how many objects of which kind, in which system and environment, the operation
    class and data class, the score, and whether the current state could be shown."""
    r = decision.resolved
    system, env = (r.system, r.env) if r else ("unknown", "unknown")
    operation, data_class = (r.operation, r.data_class) if r else ("unknown", "unknown")
    count, noun = int(driver_blast.get("objects", 1)), str(driver_blast.get("object", "record"))
    plural = noun if count == 1 else (noun[:-1] + "ies" if noun.endswith("y") else noun + "s")
    return {
        "summary": f"{operation} on {count} {plural} in {system} ({env}, {data_class} data)",
        "objects": count, "object": noun, "requests": int(driver_blast.get("requests", 1)),
        "system": system, "env": env, "operation": operation, "data_class": data_class,
        "score": decision.total, "current_state": current.note,
    }


def context(conn: Any, approval_id: str) -> dict[str, Any] | None:
    """The reasoning trace and blast radius the gateway stored with an approval (None for other approvals)."""
    row = conn.execute("SELECT context FROM approval_context WHERE approval_id = ?", (approval_id,)).fetchone()
    return orjson.loads(row[0]) if row else None


class ApprovalDesk:
    """The gateway's side of approvals, on the state store approvers answer from (`arxctl approvals`).

    Every method runs on the gateway's single state thread, one at a time.
    """

    def __init__(self, directory: Path, *, actor: str, config: Path | None = None) -> None:
        self.store = Store(directory)
        self.actor = actor
        self.config_path = config

    def open(self, decision: Decision, payload: Any, current: Current, reasoning: str | None,
             blast: Mapping[str, Any], handle: str | None) -> tuple[gate.ApprovalRecord, bool]:
        """The pending approval for an APPROVAL_REQUIRED decision (an open one for the same call is reused)."""
        settings = project.load(self.store.directory, self.config_path)
        with self.store.transaction() as conn:
            gate.expire_due(conn, actor=self.actor, at=decision.ts, agent=decision.agent)
            record, created = gate.request(conn, decision, payload=payload, requested_by=decision.agent,
                                           config=settings, decision_seq=None, current_state=current.state)
            if created:
                shown = {"reasoning": clean_reasoning(reasoning, payload), "blast_radius": dict(blast),
                         "replica": self.actor, "handle": handle, "decision_id": decision.id}
                conn.execute("INSERT INTO approval_context (approval_id, context, ts) VALUES (?,?,?)",
                             (record.id, canonical_str(shown), format_ts(decision.ts)))
            return record, created

    def check(self, approval_id: str, agent: str, action: str, payload_digest: str | None,
              at: datetime) -> ApprovedCall:
        """The approved call an agent names; InputError saying why it cannot authorize this call."""
        return gate.check_usable(self.store.conn, approval_id, agent, action, payload_digest, at)

    def consume(self, decision: Decision) -> None:
        """Use up the approval that authorized this decision; StateError when another call already used it."""
        assert decision.approval_id is not None
        with self.store.transaction() as conn:
            gate.consume(conn, decision.approval_id, decision=decision, decision_seq=None, actor=self.actor)

    def status(self, approval_id: str, agent: str, at: datetime) -> dict[str, Any]:
        """What the agent's poll sees; an unanswered approval past its timeout is recorded as expired first."""
        try:
            record = gate.get(self.store, approval_id)
        except NotFoundError:
            record = None
        if record is None or record.agent != agent:
            raise NotFoundError(f"no approval '{approval_id}' for agent '{agent}'")
        if record.effective_status(at) != record.status:
            gate.expire_due(self.store, actor=self.actor, at=at, agent=agent)
            record = gate.get(self.store, approval_id)
        shown = record.to_dict(at)
        return {key: shown[key] for key in POLL_FIELDS}

    def close(self) -> None:
        self.store.close()
