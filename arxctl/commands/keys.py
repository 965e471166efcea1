"""`arxctl keys`: the keys that sign audit-chain checkpoints and exports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import Output, StateOpt, echo, print_json, table

app = typer.Typer(help="Generate, list, rotate and export the keys that sign checkpoints.", no_args_is_help=True)

KeyIdOpt = Annotated[
    str | None, typer.Option("--key-id", help="Key id to use (default: ed25519:<first 16 hex of its SHA-256>).")
]
KmsOpt = Annotated[
    str | None, typer.Option("--kms-key-id", help="An AWS KMS ECC_NIST_P256 key id or ARN to sign with instead.")
]


def _store(state: Path | None, create: bool = True):
    from arxctl.store.sqlite import open_store

    return open_store(state, create=create)


@app.command()
def generate(key_id: KeyIdOpt = None, output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
             state: StateOpt = None) -> None:
    """Create an Ed25519 signing key (private PEM 0600 under <state>/keys/) and register its public key.

    Example: arxctl keys generate --key-id prod-2026
    """
    from arxctl.chain import keys

    store = _store(state)
    with store.transaction() as conn:
        key = keys.generate(conn, store.directory, key_id=key_id)
    if output == Output.json:
        print_json(key.to_dict())
        return
    echo(f"generated {key.key_id} (valid from {key.valid_from}); private key {store.directory / key.source[5:]}")


@app.command("list")
def list_(output: Annotated[Output, typer.Option("--output", "-o")] = Output.table, state: StateOpt = None) -> None:
    """List registered signing keys with their validity windows.

    Example: arxctl keys list -o json
    """
    from arxctl.chain import keys

    found = keys.list_keys(_store(state, create=False).conn)
    if output == Output.json:
        print_json([{**k.to_dict(), "source": k.source} for k in found])
        return
    table(["KEY ID", "ALGORITHM", "VALID FROM", "VALID UNTIL", "SOURCE"],
          [[k.key_id, k.algorithm, k.valid_from, k.valid_until or "-", k.source] for k in found])


@app.command("export-public")
def export_public(
    out: Annotated[Path, typer.Option("--out", help="Where to write the keyring JSON auditors verify with.")],
    state: StateOpt = None,
) -> None:
    """Write key ids, PEM public keys and validity windows to a JSON file for offline verification.

    Example: arxctl keys export-public --out keys.json
    """
    import orjson

    from arxctl.chain import keys

    data = keys.export_public(_store(state, create=False).conn)
    out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    echo(f"wrote {len(data['keys'])} public key(s) to {out}")


@app.command()
def rotate(key_id: KeyIdOpt = None, kms_key_id: KmsOpt = None, state: StateOpt = None) -> None:
    """Start a new signing key and close the validity window of every other active key.

    Example: arxctl keys rotate --key-id prod-2027
    """
    from arxctl.chain import keys

    store = _store(state, create=False)
    with store.transaction() as conn:
        key, closed = keys.rotate(conn, store.directory, key_id=key_id, kms_key_id=kms_key_id)
    for old in closed:
        echo(f"closed {old} at {key.valid_from}")
    echo(f"active {key.key_id} from {key.valid_from}")
