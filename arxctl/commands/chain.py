"""`arxctl chain`: show, publish, export, verify and seal the audit chain."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, Output, StateOpt, actor, echo, print_json, table

app = typer.Typer(help="Show, publish, export, verify and seal the audit chain.", no_args_is_help=True)


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
    export: Annotated[
        Path | None, typer.Option("--export", help="Verify this export file instead of the local store.")
    ] = None,
    witness: Annotated[
        str | None, typer.Option("--witness", help="file:///dir or s3://bucket/prefix holding the checkpoints.")
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Trusted keys: a PEM public key or `arxctl keys export-public` JSON."),
    ] = None,
    format: Annotated[VerifyFormat, typer.Option("--format", "-f")] = VerifyFormat.text,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Threads scanning --export while one inflates it (default: CPUs, at "
                     "most 4; 1: everything on one thread)."),
    ] = None,
    state: StateOpt = None,
) -> None:
    """Recompute every hash, link and Merkle root; check signatures and the witness history; report every problem.

    With --export it needs no database and no network beyond reading the witness. Exit 0 when everything
    verifies, 1 on any problem.

    Example: arxctl chain verify --export audit.ndjson.gz --witness s3://bank-grc/arx-witness/ --public-key keys.json
    """
    from arxctl.chain.verify import verify_chain, verify_store

    if export is not None:
        result = verify_chain(witness=witness, export=export, public_keys=public_key, workers=workers)
    else:
        from arxctl.store.sqlite import open_store

        result = verify_store(open_store(state, create=False), witness=witness, public_keys=public_key)
    if format == VerifyFormat.json:
        print_json(result.to_dict())
    else:
        for p in result.problems:
            where = f"seq {p.seq}" if p.seq is not None else "chain"
            typer.echo(f"{where}: {p.kind}: {p.detail}")
        status = "ok" if result.ok else "FAILED"
        flags = " ".join(
            f"{name}={'yes' if value else 'no'}"
            for name, value in (
                ("tip_matches_witness", result.tip_matches_witness), ("no_gaps", result.no_gaps),
                ("signatures_valid", result.signatures_valid),
                ("consistent_with_witness_history", result.consistent_with_witness_history),
            )
        )
        typer.echo(f"{status}: {result.records} record(s), {result.checkpoints} checkpoint(s), "
                   f"{len(result.problems)} problem(s), tip {result.tip}; {flags}")
    raise typer.Exit(0 if result.ok else 1)


KeyIdOpt = Annotated[
    str | None, typer.Option("--key-id", help="Sign with this registered key (default: newest active).")
]
KmsOpt = Annotated[
    str | None, typer.Option("--kms-key-id", help="Sign with this AWS KMS ECC_NIST_P256 key (id or ARN).")
]


def _signer(store, key_id: str | None, kms_key_id: str | None):
    from arxctl.chain import keys

    return keys.signer(store.conn, store.directory, key_id=key_id, kms_key_id=kms_key_id)


@app.command()
def publish(
    witness: Annotated[str, typer.Option("--witness", help="file:///dir or s3://bucket/prefix.")],
    every: Annotated[
        str | None, typer.Option("--every", help="Keep publishing at this interval (e.g. 5m) until stopped.")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", help="With --every: stop after this many.", min=1)] = None,
    key_id: KeyIdOpt = None,
    kms_key_id: KmsOpt = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """Sign a checkpoint of the chain and write it to the witness as a new object (never overwriting).

    With nothing new since the last checkpoint it still publishes one (a heartbeat), so gaps in time show.

    Example: arxctl chain publish --witness s3://bank-grc/arx-witness/ --every 5m
    """
    import signal
    import threading

    from arxctl.chain.checkpoints import publish_every
    from arxctl.chain.witness import open_witness
    from arxctl.durations import parse_duration
    from arxctl.errors import InputError
    from arxctl.store.sqlite import open_store

    try:
        interval = parse_duration(every) if every else None
    except ValueError as exc:
        raise InputError(f"--every: {exc}") from None
    store = open_store(state, create=False)
    target = open_witness(witness)
    signer = _signer(store, key_id, kms_key_id)
    stop = threading.Event()

    def show(done) -> None:
        if output == Output.json:
            print_json(done.to_dict())
            return
        cp = done.checkpoint
        kind = "heartbeat" if done.heartbeat else "checkpoint"
        echo(f"{kind} n={cp.n} size={cp.size} root={cp.root} -> {target.uri} ({len(done.objects)} object(s) written)")

    if interval is None:
        publish_every(store, target, signer, parse_duration("1s"), stop, show, count=1)
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        publish_every(store, target, signer, interval, stop, show, count=count)
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="The export file, e.g. exports/2026-04-14.ndjson.gz.")],
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's records.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Records at or after this RFC 3339 time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Records before this RFC 3339 time.")] = None,
    key_id: KeyIdOpt = None,
    kms_key_id: KmsOpt = None,
    state: StateOpt = None,
) -> None:
    """Export the chain up to its latest checkpoint as gzip NDJSON, with proofs for a filtered export.

    Example: arxctl chain export --out exports/2026-04-14.ndjson.gz --agent triage-cs-01 --since 2026-04-01T00:00:00Z
    """
    from arxctl.chain.export import export as run_export
    from arxctl.store.sqlite import open_store

    store = open_store(state, create=False)
    summary = run_export(store, out, _signer(store, key_id, kms_key_id), agent=agent, since=since, until=until)
    kind = "complete" if summary.complete else "filtered"
    echo(f"wrote {summary.records} record(s) ({kind}) to {out}, against checkpoint n={summary.checkpoint.n} "
         f"size={summary.checkpoint.size}")
    if summary.unwitnessed:
        typer.echo(f"note: {summary.unwitnessed} newer record(s) are in no checkpoint yet; publish to include them",
                   err=True)


@app.command()
def seal(
    agent: Annotated[str, typer.Argument(help="The agent whose record is sealed.")],
    retention_class: Annotated[str, typer.Option("--retention-class", help="e.g. sox-7yr, hipaa-6yr, standard-1yr.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded in the seal record.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Retention table YAML (default: <state>/retention.yaml).")
    ] = None,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Append the agent.sealed record: after it nothing more can be appended for the agent.

    Example: arxctl chain seal triage-cs-01 --retention-class sox-7yr --reason "decommissioned, CHG0042"
    """
    from arxctl.chain.seal import retention_table
    from arxctl.chain.seal import seal as run_seal
    from arxctl.store.sqlite import open_store

    store = open_store(state, create=False)
    table_ = retention_table(store.directory, config)
    with store.transaction() as conn:
        record = run_seal(conn, agent, retention_class, actor(as_), reason, table=table_)
    echo(f"sealed {agent} at seq {record.seq} (retention {retention_class})")
