"""Approval gates: a call decided APPROVAL_REQUIRED waits as a pending approval bound to that exact call.

Bound means: the agent, action, payload digest and resolved target of the decision. Approvers see the payload
with secret-looking fields masked (the unmasked payload is never stored) and, when the caller supplied the
current state, the diff against it. Only a member of the rule's approver group may answer; the agent and the
requester never approve their own call. No answer inside the timeout declines the call (`approval.expired`:
silence is not consent). An approved call is authorized once, by a recorded decision that consumes it, within
one timeout after the approval.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from arxctl.canonical import canonical_str, digest
from arxctl.chain.store import sealed_agents
from arxctl.clock import format_ts, now, parse_ts
from arxctl.durations import format_duration, parse_duration
from arxctl.errors import InputError, NotFoundError, StateError
from arxctl.jsonarg import read_json_argument
from arxctl.policy.compiler import APPROVAL_REQUIRED
from arxctl.policy.engine import ApprovedCall, Decision
from arxctl.policy.masking import mask
from arxctl.registry.config import NotPermitted, ProjectConfig
from arxctl.registry.diff import diff
from arxctl.registry.lifecycle import Target, connection, record, write

PENDING, APPROVED, DENIED, EXPIRED, CONSUMED, REVOKED = (
    "pending", "approved", "denied", "expired", "consumed", "revoked"
)
STATUSES = (PENDING, APPROVED, DENIED, EXPIRED, CONSUMED, REVOKED)
SILENCE = "no answer inside the timeout: declined (silence is not consent)"
UNUSED = "approved but not used inside the timeout"
_COLUMNS = (
    "id, agent, action, session, decision_id, decision_seq, payload_digest, target, payload, diff, policy, rule, "
    "severity, grp, timeout, requested_by, requested_ts, expires_ts, status, decided_by, decided_ts, comment, "
    "usable_until, consumed_ts, consumed_decision"
)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A stored approval: the call it is bound to, what approvers see, and its answer."""

    id: str
    agent: str
    action: str
    session: str
    decision_id: str
    decision_seq: int | None
    payload_digest: str
    target: dict[str, str]
    payload: Any
    diff: list[dict[str, Any]] | None
    policy: str | None
    rule: str | None
    severity: str | None
    group: str | None
    timeout: str
    requested_by: str
    requested_at: str
    expires_at: str
    status: str
    decided_by: str | None
    decided_at: str | None
    comment: str | None
    usable_until: str | None
    consumed_at: str | None
    consumed_decision: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ApprovalRecord:
        values = list(row)
        values[7] = orjson.loads(values[7])
        values[8] = orjson.loads(values[8])
        values[9] = orjson.loads(values[9]) if values[9] is not None else None
        return cls(*values)

    def effective_status(self, at: datetime) -> str:
        """The status at `at`: unanswered past the timeout, or approved and unused past its window, is expired."""
        if self.status == PENDING and at >= parse_ts(self.expires_at):
            return EXPIRED
        if self.status == APPROVED and self.usable_until is not None and at >= parse_ts(self.usable_until):
            return EXPIRED
        return self.status

    def approved_call(self) -> ApprovedCall:
        assert self.usable_until is not None
        return ApprovedCall(self.id, self.agent, self.action, self.payload_digest, self.target["system"],
                            self.target["env"], parse_ts(self.usable_until))

    def to_dict(self, at: datetime) -> dict[str, Any]:
        """As printed to approvers: the masked payload and diff, the rule, and the status as of `at`."""
        return {
            "id": self.id, "agent": self.agent, "action": self.action, "session": self.session,
            "target": self.target, "payload": self.payload, "payload_digest": self.payload_digest,
            "diff": self.diff, "policy": self.policy, "rule": self.rule, "severity": self.severity,
            "group": self.group, "timeout": self.timeout, "requested_by": self.requested_by,
            "requested_at": self.requested_at, "expires_at": self.expires_at, "status": self.effective_status(at),
            "decided_by": self.decided_by, "decided_at": self.decided_at, "comment": self.comment,
            "usable_until": self.usable_until, "consumed_at": self.consumed_at,
            "decision_id": self.decision_id, "decision_seq": self.decision_seq,
            "consumed_decision": self.consumed_decision,
        }


def parse_current_state(text: str) -> Any:
    """`--current-state`: JSON, or `@file` holding JSON; errors name the line and column."""
    return read_json_argument(text, "--current-state", "current state")


def _rows(conn: sqlite3.Connection, where: str = "", args: Sequence[Any] = ()) -> list[ApprovalRecord]:
    query = f"SELECT {_COLUMNS} FROM approvals {where} ORDER BY requested_ts, id"
    return [ApprovalRecord.from_row(r) for r in conn.execute(query, tuple(args)).fetchall()]


def _load(conn: sqlite3.Connection, approval_id: str) -> ApprovalRecord:
    found = _rows(conn, "WHERE id = ?", (approval_id,))
    if not found:
        raise NotFoundError(f"no approval '{approval_id}'")
    return found[0]


def get(store: Target, approval_id: str) -> ApprovalRecord:
    return _load(connection(store), approval_id)


def list_approvals(store: Target, *, at: datetime, group: str | None = None, agent: str | None = None,
                   status: str | None = None) -> list[ApprovalRecord]:
    """Approvals filtered by approver group, agent and status as of `at`, oldest first."""
    clauses, args = [], []
    if group is not None:
        clauses.append("grp = ?")
        args.append(group)
    if agent is not None:
        clauses.append("agent = ?")
        args.append(agent)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    found = _rows(connection(store), where, args)
    return [a for a in found if status is None or a.effective_status(at) == status]


def expire_due(store: Target, *, actor: str, at: datetime | None = None, agent: str | None = None) -> list[str]:
    """Record `approval.expired` for unanswered approvals past their timeout and approved ones never used.

    Timestamps are compared in Python; SQL only narrows to rows whose text sorts before the next whole second.
    """
    moment = at or now()
    ts = format_ts(moment)
    expired: list[str] = []
    with write(store) as conn:
        bound = format_ts(moment.replace(microsecond=0) + timedelta(seconds=1))
        where = "WHERE ((status = ? AND expires_ts < ?) OR (status = ? AND usable_until < ?))"
        args: list[Any] = [PENDING, bound, APPROVED, bound]
        if agent is not None:
            where += " AND agent = ?"
            args.append(agent)
        sealed = sealed_agents(conn)
        for approval in _rows(conn, where, args):
            if approval.effective_status(moment) != EXPIRED or approval.agent in sealed:
                continue
            conn.execute("UPDATE approvals SET status = ? WHERE id = ?", (EXPIRED, approval.id))
            was_pending = approval.status == PENDING
            record(conn, "approval.expired", approval.agent, actor, {
                "id": approval.id, "decision_id": approval.decision_id, "was": approval.status,
                "reason": SILENCE if was_pending else UNUSED,
                "expired_at": approval.expires_at if was_pending else approval.usable_until,
            }, ts)
            expired.append(approval.id)
    return expired


def request(
    conn: sqlite3.Connection, decision: Decision, *, payload: Any, requested_by: str, config: ProjectConfig,
    decision_seq: int | None, current_state: Any = None,
) -> tuple[ApprovalRecord, bool]:
    """The pending approval for an APPROVAL_REQUIRED decision: an open one for the same call is reused.

    Returns the approval and whether it was created now.
    """
    if decision.verdict != APPROVAL_REQUIRED or decision.approval is None or decision.resolved is None:
        raise ValueError("only an APPROVAL_REQUIRED decision creates an approval")
    if decision.payload_digest is None:
        raise ValueError("an approval needs a payload digest")
    at = decision.ts
    target = {"system": decision.resolved.system, "env": decision.resolved.env}
    for open_one in _rows(conn, "WHERE agent = ? AND status = ? AND action = ? AND payload_digest = ?",
                          (decision.agent, PENDING, decision.action, decision.payload_digest)):
        if open_one.target == target and open_one.effective_status(at) == PENDING:
            return open_one, False
    gate = decision.approval
    group = gate.group or config.default_group
    timeout = gate.timeout or format_duration(config.default_timeout)
    try:
        window = parse_duration(timeout)
    except ValueError as exc:
        raise InputError(f"approval timeout of rule {gate.policy}/{gate.rule}: {exc}") from None
    shown = mask(payload)
    changes = diff(mask(current_state), shown) if current_state is not None and gate.diff_shown else None
    approval_id = "ap-" + secrets.token_hex(5)
    ts = format_ts(at)
    expires = format_ts(at + window)
    conn.execute(
        f"INSERT INTO approvals ({_COLUMNS}) VALUES ({','.join('?' * 25)})",
        (approval_id, decision.agent, decision.action, decision.session, decision.id, decision_seq,
         decision.payload_digest, canonical_str(target), canonical_str(shown),
         canonical_str(changes) if changes is not None else None, gate.policy, gate.rule, gate.severity, group,
         timeout, requested_by, ts, expires, PENDING, None, None, None, None, None, None),
    )
    record(conn, "approval.requested", decision.agent, requested_by, {
        "id": approval_id, "decision_id": decision.id, "decision_seq": decision_seq, "action": decision.action,
        "target": target, "payload_digest": decision.payload_digest,
        "diff_digest": digest(changes) if changes is not None else None, "policy": gate.policy, "rule": gate.rule,
        "severity": gate.severity, "group": group, "timeout": timeout, "expires_at": expires,
    }, ts)
    return _load(conn, approval_id), True


def _answer(store: Target, approval_id: str, *, actor: str, config: ProjectConfig, comment: str | None,
            approve: bool, at: datetime | None) -> ApprovalRecord:
    moment = at or now()
    ts = format_ts(moment)
    expire_due(store, actor=actor, at=moment)
    verb = "approve" if approve else "deny"
    with write(store) as conn:
        approval = _load(conn, approval_id)
        if approval.status == EXPIRED:
            raise InputError(f"approval '{approval_id}' expired at {approval.expires_at} without an answer and was "
                             "declined (silence is not consent)")
        if approval.status != PENDING:
            raise InputError(f"approval '{approval_id}' is {approval.status}, not pending")
        if approve and actor == approval.agent:
            raise NotPermitted(f"agent '{actor}' cannot approve its own call (segregation of duties)")
        if approve and actor == approval.requested_by:
            raise NotPermitted(f"'{actor}' requested approval '{approval_id}' and cannot approve it "
                               "(segregation of duties)")
        config.require_member(actor, approval.group, f"{verb} approval '{approval_id}'")
        body: dict[str, Any] = {"id": approval_id, "decision_id": approval.decision_id,
                                "payload_digest": approval.payload_digest, "group": approval.group,
                                "comment": comment}
        if approve:
            usable = format_ts(moment + parse_duration(approval.timeout))
            conn.execute("UPDATE approvals SET status = ?, decided_by = ?, decided_ts = ?, comment = ?, "
                         "usable_until = ? WHERE id = ?", (APPROVED, actor, ts, comment, usable, approval_id))
            body["usable_until"] = usable
        else:
            conn.execute("UPDATE approvals SET status = ?, decided_by = ?, decided_ts = ?, comment = ? WHERE id = ?",
                         (DENIED, actor, ts, comment, approval_id))
        record(conn, "approval.approved" if approve else "approval.denied", approval.agent, actor, body, ts)
        return _load(conn, approval_id)


def approve(store: Target, approval_id: str, *, actor: str, config: ProjectConfig, comment: str | None = None,
            at: datetime | None = None) -> ApprovalRecord:
    """Approve a pending call: a member of its group, never the agent or the requester."""
    return _answer(store, approval_id, actor=actor, config=config, comment=comment, approve=True, at=at)


def deny(store: Target, approval_id: str, *, actor: str, config: ProjectConfig, comment: str | None = None,
         at: datetime | None = None) -> ApprovalRecord:
    """Decline a pending call (a member of its group)."""
    return _answer(store, approval_id, actor=actor, config=config, comment=comment, approve=False, at=at)


def usable(conn: sqlite3.Connection, agent: str, at: datetime) -> list[ApprovedCall]:
    """The agent's approved, unconsumed approvals still inside their use window, for the engine."""
    found = _rows(conn, "WHERE agent = ? AND status = ?", (agent, APPROVED))
    return [a.approved_call() for a in found if a.effective_status(at) == APPROVED]


def check_usable(conn: sqlite3.Connection, approval_id: str, agent: str, action: str, payload_digest: str | None,
                 at: datetime) -> ApprovedCall:
    """The approval a caller named, or an input error saying why it cannot authorize this call."""
    approval = _load(conn, approval_id)
    status = approval.effective_status(at)
    if status != APPROVED:
        raise InputError(f"approval '{approval_id}' is {status}, not approved")
    if (approval.agent, approval.action) != (agent, action):
        raise InputError(f"approval '{approval_id}' is for {approval.agent} {approval.action}, not {agent} {action}")
    if approval.payload_digest != payload_digest:
        raise InputError(f"approval '{approval_id}' was approved for a different payload ({approval.payload_digest})")
    return approval.approved_call()


def consume(conn: sqlite3.Connection, approval_id: str, *, decision: Decision, decision_seq: int | None,
            actor: str) -> None:
    """Mark an approval used by the recorded decision it authorized (it authorizes nothing else)."""
    ts = format_ts(decision.ts)
    approval = _load(conn, approval_id)
    if approval.status != APPROVED:
        raise StateError(f"approval '{approval_id}' is {approval.status}; it cannot authorize a call")
    conn.execute("UPDATE approvals SET status = ?, consumed_ts = ?, consumed_decision = ? WHERE id = ?",
                 (CONSUMED, ts, decision.id, approval_id))
    record(conn, "approval.consumed", approval.agent, actor, {
        "id": approval_id, "decision_id": decision.id, "decision_seq": decision_seq,
        "payload_digest": approval.payload_digest,
    }, ts)


def end_all(conn: sqlite3.Connection, agent: str, *, actor: str, reason: str, at: datetime) -> dict[str, list[str]]:
    """For decommissioning: decline every pending approval and revoke approved unused ones."""
    expired = expire_due(conn, actor=actor, at=at, agent=agent)
    ts = format_ts(at)
    declined: list[str] = []
    revoked: list[str] = []
    for approval in _rows(conn, "WHERE agent = ? AND status IN (?, ?)", (agent, PENDING, APPROVED)):
        pending = approval.status == PENDING
        conn.execute("UPDATE approvals SET status = ?, decided_by = COALESCE(decided_by, ?), "
                     "decided_ts = COALESCE(decided_ts, ?), comment = COALESCE(comment, ?) WHERE id = ?",
                     (DENIED if pending else REVOKED, actor, ts, reason, approval.id))
        record(conn, "approval.denied" if pending else "approval.revoked", agent, actor,
               {"id": approval.id, "decision_id": approval.decision_id, "reason": reason, "was": approval.status}, ts)
        (declined if pending else revoked).append(approval.id)
    return {"declined": declined, "revoked": revoked, "expired": expired}


def open_approvals(conn: sqlite3.Connection, agent: str, at: datetime) -> list[str]:
    """Ids of the agent's approvals still pending or approved-and-usable at `at` (the orphan check wants none)."""
    found = _rows(conn, "WHERE agent = ? AND status IN (?, ?)", (agent, PENDING, APPROVED))
    return [a.id for a in found if a.effective_status(at) in (PENDING, APPROVED)]
