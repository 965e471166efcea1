"""`arxctl gateway`: serve the connector gateway, read its per-agent health, verify its replicas' logs together."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import Output, StateOpt, echo, print_json, table

app = typer.Typer(help="The connector gateway: policy enforced where the credential is; agents hold only handles.",
                  no_args_is_help=True)


class VerifyFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def serve(
    state: StateOpt = None,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="Enforce the operator's bundle (a mounted ConfigMap dir) instead of the state's registry.",
        show_default=False)] = None,
    secrets: Annotated[Path | None, typer.Option(
        "--secrets", help="With --bundle: the mounted Secret dir holding platform.key and the credentials.",
        show_default=False)] = None,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve on.")] = "127.0.0.1:8080",
    replica_id: Annotated[str | None, typer.Option(
        "--replica-id", help="This replica's id; its audit log is <state>/gateway/<id>/ (default: host-pid).",
        show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="gateway.yaml: connector base URLs, timeouts, extra REST drivers.", exists=True,
        show_default=False)] = None,
    approvers: Annotated[Path | None, typer.Option(
        "--approvers-config", help="Project config with approver groups (default: <state>/config.yaml).",
        exists=True, show_default=False)] = None,
    witness: Annotated[str | None, typer.Option(
        "--witness", help="Publish this replica's checkpoints here (file:///dir or s3://bucket/prefix).",
        show_default=False)] = None,
    key_id: Annotated[str | None, typer.Option("--key-id", help="Sign checkpoints with this registered key.",
                                               show_default=False)] = None,
    kms_key_id: Annotated[str | None, typer.Option("--kms-key-id", help="Sign checkpoints with this KMS key.",
                                                   show_default=False)] = None,
    publish_every: Annotated[str, typer.Option("--publish-every", help="Checkpoint interval with --witness.")] = "1m",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", exists=True, help="Serve HTTPS with this cert.",
                                                  show_default=False)] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", exists=True, help="The key of --tls-cert.",
                                                 show_default=False)] = None,
) -> None:
    """Run a gateway replica: agents call it with their handle, it decides, and only allowed calls leave.

    Example: arxctl gateway serve --state .arx --listen 0.0.0.0:8080 --replica-id gw-a --config gateway.yaml
    """
    from arxctl.durations import parse_duration
    from arxctl.errors import InputError
    from arxctl.gateway.server import ServeOptions
    from arxctl.gateway.server import serve as run
    from arxctl.store.sqlite import resolve_state_dir

    try:
        every = parse_duration(publish_every)
    except ValueError as exc:
        raise InputError(f"--publish-every: {exc}") from None
    run(ServeOptions(
        state=resolve_state_dir(state), bundle=bundle, secrets=secrets, listen=listen, replica=replica_id,
        config=config, approvers=approvers, witness=witness, key_id=key_id, kms_key_id=kms_key_id,
        publish_every=every, tls_cert=tls_cert, tls_key=tls_key,
    ))


@app.command()
def health(
    agent: Annotated[str | None, typer.Argument(help="Only this agent.", show_default=False)] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """Per-agent health across the gateway replicas of a state dir: last seen, calls/min, deny rate, drift.

    Example: arxctl gateway health triage-cs-01 -o json
    """
    import time

    from arxctl.gateway.audit import replica_dirs
    from arxctl.gateway.health import read_reports
    from arxctl.store.sqlite import resolve_state_dir

    merged = read_reports(replica_dirs(resolve_state_dir(state)), at=time.time(), agent=agent)
    if output != Output.table:
        from arxctl.commands.lifecycle import emit

        emit(merged, output)
        return
    table(["AGENT", "LAST SEEN", "CALLS/MIN", "DENY RATE", "UNDECLARED", "DRIFT", "REPLICAS"],
          [[name, h["last_seen"] or "-", h["calls_per_minute"], f"{h['deny_rate']:.0%}", h["undeclared_attempts"],
            f"{h['drift']['severity']} -> {h['drift']['applied'] or h['drift']['response']}"
            if h["drift"]["severity"] else "none", ",".join(h["replicas"])] for name, h in merged.items()])


@app.command()
def verify(
    export: Annotated[list[Path], typer.Option("--export", exists=True, help="One export per replica log.")],
    witness: Annotated[str | None, typer.Option("--witness", help="Where the replicas published checkpoints.",
                                                show_default=False)] = None,
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", exists=True, help="Trusted keys: `arxctl keys export-public` JSON or a PEM public key.",
        show_default=False)] = None,
    complete: Annotated[bool, typer.Option("--complete", help="Fail when the witness knows a log not given.")] = False,
    format: Annotated[VerifyFormat, typer.Option("--format", "-f")] = VerifyFormat.text,
) -> None:
    """Verify the audit logs of several gateway replicas together: each log, no log twice, none left out.

    Example: arxctl gateway verify --export a.ndjson.gz --export b.ndjson.gz --witness file:///w --public-key k.json
    """
    from arxctl.chain.verify import verify_chain_set

    result = verify_chain_set(export, witness, public_key, complete=complete)
    if format == VerifyFormat.json:
        print_json(result.to_dict())
    else:
        for log, path, one in result.logs:
            echo(f"{'ok  ' if one.ok else 'FAIL'} log {log or '?'}  {path}  {one.records} records")
            for problem in one.problems:
                where = f"seq {problem.seq}: " if problem.seq is not None else ""
                echo(f"       {where}{problem.kind}: {problem.detail}")
        for problem in result.problems:
            echo(f"FAIL {problem.kind}: {problem.detail}")
        echo(f"{'ok' if result.ok else 'FAILED'}: {len(result.logs)} logs, {result.records} records")
    raise typer.Exit(0 if result.ok else 1)
