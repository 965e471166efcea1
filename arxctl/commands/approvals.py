"""`arxctl approvals`: list, show, approve, deny and expire pending approvals."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, Output, StateOpt, actor, echo, table
from arxctl.commands.lifecycle import ConfigOpt, emit, load_config, open_existing

app = typer.Typer(help="Answer approval gates: calls waiting for a human, bound to their exact payload.",
                  no_args_is_help=True)

CommentOpt = Annotated[str | None, typer.Option("--comment", help="Recorded with the answer.")]


class StatusFilter(StrEnum):
    pending = "pending"
    approved = "approved"
    denied = "denied"
    expired = "expired"
    consumed = "consumed"
    revoked = "revoked"
    all = "all"


@app.command("list")
def list_(
    group: Annotated[str | None, typer.Option("--group", help="Only approvals for this approver group.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's approvals.")] = None,
    status: Annotated[StatusFilter, typer.Option("--status", help="Which approvals.")] = StatusFilter.pending,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """List approvals (pending by default); unanswered ones past their timeout are recorded as expired first.

    Example: arxctl approvals list --group secops-leads -o json
    """
    from arxctl.clock import now
    from arxctl.registry import approvals

    store = open_existing(state)
    at = now()
    approvals.expire_due(store, actor=actor(None), at=at)
    found = approvals.list_approvals(store, at=at, group=group, agent=agent,
                                     status=None if status == StatusFilter.all else str(status))
    rows = [a.to_dict(at) for a in found]
    if emit(rows, output):
        return
    table(["ID", "AGENT", "ACTION", "SEVERITY", "GROUP", "REQUESTED BY", "EXPIRES", "STATUS"],
          [[r["id"], r["agent"], r["action"], r["severity"] or "-", r["group"] or "-", r["requested_by"],
            r["expires_at"], r["status"]] for r in rows])


@app.command()
def show(
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="Approval id.")],
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """What an approver sees: the exact call with secret fields masked, its diff, the rule and the deadline.

    Example: arxctl approvals show ap-3f2a9c01de
    """
    import orjson

    from arxctl.clock import now
    from arxctl.gateway.approvals import context
    from arxctl.registry import approvals

    store = open_existing(state)
    data = {**approvals.get(store, approval_id).to_dict(now()), "context": context(store.conn, approval_id)}
    if emit(data, output):
        return
    for key in ("id", "status", "agent", "action", "session", "requested_by", "requested_at", "expires_at",
                "policy", "rule", "severity", "group", "timeout", "payload_digest"):
        echo(f"{key.ljust(14)}  {data[key] if data[key] is not None else '-'}")
    echo(f"{'target'.ljust(14)}  {data['target']['system']} ({data['target']['env']})")
    echo(f"{'payload'.ljust(14)}  {orjson.dumps(data['payload'], option=orjson.OPT_SORT_KEYS).decode()}")
    if data["diff"] is not None:
        echo("diff against current state:")
        for change in data["diff"]:
            old = orjson.dumps(change.get("old")).decode() if "old" in change else ""
            new = orjson.dumps(change.get("new")).decode() if "new" in change else ""
            echo(f"  {change['op']:<7} {change['path']}  {old}{' -> ' if old and new else ''}{new}")
    if data["context"] is not None:
        echo(f"{'blast radius'.ljust(14)}  {data['context']['blast_radius']['summary']}")
        echo(f"{'current state'.ljust(14)}  {data['context']['blast_radius']['current_state']}")
        for line in (data["context"]["reasoning"] or "-").splitlines():
            echo(f"{'reasoning'.ljust(14)}  {line}")
    for key in ("decided_by", "decided_at", "comment", "usable_until", "consumed_at"):
        if data[key] is not None:
            echo(f"{key.ljust(14)}  {data[key]}")


def _answer(approval_id: str, approve: bool, as_: str | None, comment: str | None, config: Path | None,
            state: Path | None) -> None:
    from arxctl.registry import approvals

    store = open_existing(state)
    settings = load_config(store, config)
    fn = approvals.approve if approve else approvals.deny
    done = fn(store, approval_id, actor=actor(as_), config=settings, comment=comment)
    if approve:
        echo(f"approval {done.id} approved by {done.decided_by}: {done.agent} {done.action} "
             f"(payload {done.payload_digest}) may run once until {done.usable_until}")
    else:
        echo(f"approval {done.id} denied by {done.decided_by}: {done.agent} {done.action}")


@app.command()
def approve(
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="Approval id.")],
    as_: ActorOpt = None,
    comment: CommentOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """Approve a pending call: a member of its approver group, never the agent or the requester.

    Example: arxctl approvals approve ap-3f2a9c01de --as alice --comment "both tickets verified"
    """
    _answer(approval_id, True, as_, comment, config, state)


@app.command()
def deny(
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="Approval id.")],
    as_: ActorOpt = None,
    comment: CommentOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """Decline a pending call (a member of its approver group).

    Example: arxctl approvals deny ap-3f2a9c01de --as bob --comment "close them one by one"
    """
    _answer(approval_id, False, as_, comment, config, state)


@app.command()
def expire(
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Record every approval whose timeout passed without an answer as declined (silence is not consent).

    Example: arxctl approvals expire
    """
    from arxctl.registry import approvals

    expired = approvals.expire_due(open_existing(state), actor=actor(as_))
    for approval_id in expired:
        echo(f"approval {approval_id} expired")
    echo(f"{len(expired)} approval(s) recorded as expired")
