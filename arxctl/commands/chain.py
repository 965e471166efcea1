"""`arxctl chain`: read and verify the audit chain."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from arxctl.commands._common import Output, StateOpt, print_json, table

app = typer.Typer(help="Show and verify the hash-chained audit record.", no_args_is_help=True)


class VerifyFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def show(
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's records.")] = None,
    tail: Annotated[int, typer.Option("--tail", "-n", help="How many of the newest records.")] = 20,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """Show the newest chain records.

    Example: arxctl chain show --agent triage-cs-01 --tail 5
    """
    from arxctl.chain import store as chain
    from arxctl.store.sqlite import open_store

    store = open_store(state, create=False)
    records = chain.tail(store.conn, tail, agent=agent)
    if output == Output.json:
        print_json([r.to_dict() for r in records])
        return
    if output == Output.yaml:
        from arxctl.commands._common import print_yaml

        print_yaml([r.to_dict() for r in records])
        return
    table(
        ["SEQ", "TIME", "TYPE", "AGENT", "ACTOR", "SUMMARY", "HASH"],
        [[r.seq, r.ts, r.type, r.agent or "-", r.actor or "-", _summary(r.body), r.hash[7:19]] for r in records],
    )


def _summary(body: dict) -> str:
    parts = []
    for key in ("kind", "name", "version", "verdict", "reason"):
        if key in body and body[key] is not None:
            parts.append(f"{key}={body[key]}")
    return " ".join(parts)


@app.command()
def verify(
    format: Annotated[VerifyFormat, typer.Option("--format", "-f")] = VerifyFormat.text,
    state: StateOpt = None,
) -> None:
    """Recompute every hash and link of the local chain; report every broken record.

    Exit 0 when the chain verifies, 1 on any problem.

    Example: arxctl chain verify --format json
    """
    from arxctl.chain import store as chain
    from arxctl.chain.verify import verify_lines
    from arxctl.store.sqlite import open_store

    store = open_store(state, create=False)
    result = verify_lines(chain.iter_lines(store.conn))
    if format == VerifyFormat.json:
        print_json(result.to_dict())
    else:
        for p in result.problems:
            where = f"seq {p.seq}" if p.seq is not None else f"line {p.line}"
            typer.echo(f"{where}: {p.kind}: {p.detail}")
        status = "ok" if result.ok else "FAILED"
        typer.echo(f"{status}: {result.records} record(s), {len(result.problems)} problem(s), tip {result.tip}")
    raise typer.Exit(0 if result.ok else 1)
