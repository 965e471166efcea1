"""`arxctl handles`: issue, check, revoke and list the short-lived handles agents hold instead of credentials."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, Output, StateOpt, actor, echo, table
from arxctl.commands.lifecycle import ReasonOpt, emit, open_existing

app = typer.Typer(help="Short-lived signed handles: what an agent holds instead of a connector credential.",
                  no_args_is_help=True)


@app.command()
def issue(
    agent: Annotated[str, typer.Option("--agent", help="The agent that receives the handle.")],
    connector: Annotated[str, typer.Option("--connector", help="A connector the agent declares.")],
    reason: ReasonOpt,
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, at most 1h.")] = "15m",
    output: Annotated[Output, typer.Option("--output", "-o", help="table prints only the token on stdout.")] = (
        Output.table
    ),
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Issue a handle: the token goes to stdout once (hand it to the agent); it is never stored or recorded.

    Example: TOKEN=$(arxctl handles issue --agent triage-cs-01 --connector servicenow --ttl 15m --reason "run 42")
    """
    from arxctl.clock import now
    from arxctl.registry import handles

    at = now()
    info, token = handles.issue(open_existing(state), agent=agent, connector=connector, actor=actor(as_),
                                reason=reason, ttl=ttl, at=at)
    if output == Output.table:
        echo(token)
        typer.echo(f"handle {info.id} for {agent} on {connector} expires at {info.expires_at}", err=True)
    else:
        emit({**info.to_dict(at), "token": token}, output)


@app.command()
def check(
    token: Annotated[str, typer.Argument(help="The handle, or - to read it from stdin.")],
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """Check a handle as a connector does on use; exits 0 when valid, 1 with the reason when refused.

    Example: arxctl handles check - <<< "$TOKEN"
    """
    from arxctl.registry import handles

    text = sys.stdin.read() if token == "-" else token
    result = handles.check(open_existing(state), text)
    if not emit(result.to_dict(), output):
        if result.valid:
            echo(f"valid: handle {result.id} for {result.agent} on {result.connector} until {result.expires_at}")
        else:
            echo(f"refused: {result.reason}" + (f" (handle {result.id})" if result.id else ""))
    raise typer.Exit(0 if result.valid else 1)


@app.command()
def revoke(
    handle_id: Annotated[str, typer.Argument(metavar="ID", help="Handle id (from `handles list`).")],
    reason: ReasonOpt,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Put a handle on the revocation list: its next use is refused.

    Example: arxctl handles revoke h-5e0c2a91b3f4d617 --reason "token pasted into a ticket"
    """
    from arxctl.registry import handles

    done = handles.revoke(open_existing(state), handle_id, actor=actor(as_), reason=reason)
    echo(f"handle {done.id} revoked at {done.revoked_at}")


@app.command("list")
def list_(
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's handles.")] = None,
    revoked: Annotated[
        bool, typer.Option("--revoked", help="Only the revocation list: revoked handles not yet expired.")
    ] = False,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """List issued handles (never their tokens), or with --revoked the revocation list connectors enforce.

    Example: arxctl handles list --revoked -o json
    """
    from arxctl.clock import now
    from arxctl.registry import handles

    store = open_existing(state)
    at = now()
    found = handles.revocation_list(store, at=at) if revoked else handles.list_handles(store, agent=agent)
    rows = [h.to_dict(at) for h in found if agent is None or h.agent == agent]
    if not emit(rows, output):
        table(["ID", "AGENT", "CONNECTOR", "ISSUED", "EXPIRES", "BY", "STATE"],
              [[r["id"], r["agent"], r["connector"], r["issued_at"], r["expires_at"], r["issued_by"], r["state"]]
               for r in rows])
