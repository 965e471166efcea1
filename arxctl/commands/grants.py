"""`arxctl grants`: request, approve, deny, revoke, list and expire temporary scoped grants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from arxctl.commands._common import ActorOpt, Output, StateOpt, actor, echo, table
from arxctl.commands.lifecycle import ConfigOpt, ReasonOpt, emit, load_config, open_existing

app = typer.Typer(help="Temporary scoped permissions that expire by themselves.", no_args_is_help=True)

CommentOpt = Annotated[str | None, typer.Option("--comment", help="Recorded with the answer.")]


def _line(grant: Any) -> str:
    scope = ",".join(f"{k}={v}" for k, v in sorted(grant["scope"].items())) or "any payload"
    return f"{','.join(grant['actions'])} for {grant['agent']} ({scope})"


@app.command()
def request(
    agent: Annotated[str, typer.Option("--agent", help="The agent that needs the permission.")],
    action: Annotated[list[str], typer.Option("--action", help="An action to allow (repeatable).")],
    ttl: Annotated[str, typer.Option("--ttl", help="How long it lasts once approved (at most 24h).")],
    reason: ReasonOpt,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Payload field it is limited to: key=value, or key:=json (repeatable)."),
    ] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Ask for a temporary grant; it allows nothing until someone other than the requester approves it.

    Example: arxctl grants request --agent cloud-posture --action aws.s3.put_bucket_acl --ttl 15m --reason CSPM-1182
    """
    from arxctl.clock import now
    from arxctl.registry import grants
    from arxctl.registry import resources as registry

    store = open_existing(state)
    at = now()
    made = grants.request(store, agent=agent, actions=action, scope=grants.parse_scope(scope or []), ttl=ttl,
                          reason=reason, requested_by=actor(as_), catalog=registry.catalog(store), at=at)
    data = made.to_dict(at)
    if not emit(data, output):
        echo(f"grant {made.id} requested: {_line(data)} for {data['ttl']} once approved")


def _decide(grant_id: str, approve: bool, as_: str | None, comment: str | None, config: Path | None,
            state: Path | None) -> None:
    from arxctl.clock import now
    from arxctl.registry import grants

    store = open_existing(state)
    fn = grants.approve if approve else grants.deny
    done = fn(store, grant_id, actor=actor(as_), config=load_config(store, config), comment=comment, at=now())
    data = done.to_dict(now())
    if approve:
        echo(f"grant {done.id} approved by {done.decided_by}: {_line(data)} until {done.expires_at}")
    else:
        echo(f"grant {done.id} denied by {done.decided_by}")


@app.command()
def approve(
    grant_id: Annotated[str, typer.Argument(metavar="ID", help="Grant id.")],
    as_: ActorOpt = None,
    comment: CommentOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """Approve a pending grant: live from now for its TTL. The requester and the agent cannot approve.

    Example: arxctl grants approve g-4be01f2a9c --as priya
    """
    _decide(grant_id, True, as_, comment, config, state)


@app.command()
def deny(
    grant_id: Annotated[str, typer.Argument(metavar="ID", help="Grant id.")],
    as_: ActorOpt = None,
    comment: CommentOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """Deny a pending grant.

    Example: arxctl grants deny g-4be01f2a9c --as priya --comment "use the runbook"
    """
    _decide(grant_id, False, as_, comment, config, state)


@app.command()
def revoke(
    grant_id: Annotated[str, typer.Argument(metavar="ID", help="Grant id.")],
    reason: ReasonOpt,
    as_: ActorOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """End a pending or live grant now (grant approvers, an admin, or its requester).

    Example: arxctl grants revoke g-4be01f2a9c --as priya --reason "fix applied"
    """
    from arxctl.registry import grants

    store = open_existing(state)
    done = grants.revoke(store, grant_id, actor=actor(as_), reason=reason, config=load_config(store, config))
    echo(f"grant {done.id} revoked by {done.revoked_by} at {done.revoked_at}")


@app.command("list")
def list_(
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's grants.")] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """List grants with their phase as of now (an approved grant past its expiry shows Expired).

    Example: arxctl grants list --agent cloud-posture-remediation -o json
    """
    from arxctl.clock import now
    from arxctl.registry import grants

    at = now()
    rows = [g.to_dict(at) for g in grants.list_grants(open_existing(state), agent=agent)]
    if emit(rows, output):
        return
    table(["ID", "AGENT", "ACTIONS", "SCOPE", "TTL", "PHASE", "REQUESTED BY", "DECIDED BY", "EXPIRES"],
          [[r["id"], r["agent"], ",".join(r["actions"]),
            ",".join(f"{k}={v}" for k, v in sorted(r["scope"].items())) or "-", r["ttl"], r["phase"],
            r["requestedBy"], r["decidedBy"] or "-", r["expiresAt"] or "-"] for r in rows])


@app.command()
def expire(
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Record `grant.expired` for approved grants past their TTL (the engine already stopped honouring them).

    Example: arxctl grants expire
    """
    from arxctl.registry import grants

    done = grants.expire(open_existing(state), actor=actor(as_))
    for grant in done:
        echo(f"grant {grant.id} expired at {grant.expires_at}")
    echo(f"{len(done)} grant(s) recorded as expired")
