"""`arxctl decommission`: terminate an agent's identity, seal its record, and prove nothing is left behind."""

from __future__ import annotations

from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, Output, StateOpt, actor, echo
from arxctl.commands.lifecycle import ConfigOpt, ReasonOpt, emit, load_config, open_existing

app = typer.Typer()


@app.command()
def decommission(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    reason: ReasonOpt,
    retention_class: Annotated[
        str, typer.Option("--retention-class", help="How long the sealed record is kept, e.g. sox-7yr.")
    ],
    replaced_by: Annotated[
        str | None, typer.Option("--replaced-by", help="The registered agent that replaces this one.")
    ] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    as_: ActorOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """Terminate an agent: revoke everything now, record who, when and why, seal; then check nothing is left.

    In one transaction: declines its pending approvals, revokes its grants (not at TTL) and live handles,
    deletes the credentials bound to it, marks it decommissioned and seals its record with the retention class.

    Exits 0 when the orphan check passes, 1 when something was left behind.

    Example: arxctl decommission triage-cs-01 --reason "replaced" --retention-class sox-7yr --replaced-by triage-cs-02
    """
    from arxctl.registry.decommission import decommission as terminate

    store = open_existing(state)
    done = terminate(store, name, actor=actor(as_), reason=reason, retention_class=retention_class,
                     replaced_by=replaced_by, config=load_config(store, config))
    if not emit(done.to_dict(), output):
        revoked = done.revoked
        echo(f"agent/{name} decommissioned by {done.actor} at {done.ts}: {done.reason} (chain seq {done.record_seq})")
        echo(f"  approvals declined: {_ids(revoked['approvals']['declined'])}; "
             f"approved-unused revoked: {_ids(revoked['approvals']['revoked'])}")
        echo(f"  grants revoked now: {_ids(revoked['grants']['revoked'])}; "
             f"already expired: {_ids(revoked['grants']['expired'])}")
        echo(f"  handles invalidated: {_ids(revoked['handles'])}")
        echo(f"  credentials deleted: {_ids(revoked['credentials'])}")
        echo(f"  record sealed: retention {done.retention_class} (chain seq {done.seal_seq})")
        if done.replaced_by:
            echo(f"  replaced by: {done.replaced_by}")
        echo("orphan check:")
        for check in done.orphans.checks:
            found = "" if check.ok else f": found {', '.join(check.found)}"
            echo(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name:<11}  {check.description}{found}")
    raise typer.Exit(0 if done.orphans.ok else 1)


def _ids(values: list[str]) -> str:
    return ", ".join(values) if values else "none"
