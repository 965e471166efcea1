"""`arxctl credentials`: store, rotate, delete and list connector credentials; secrets are never printed."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, Output, StateOpt, actor, echo, table
from arxctl.commands.lifecycle import ReasonOpt, emit, open_existing

app = typer.Typer(help="Connector credentials held by the platform, encrypted at rest; agents get handles.",
                  no_args_is_help=True)

AgentOpt = Annotated[
    str | None, typer.Option("--agent", help="Bind the credential to this agent (default: shared by the connector).")
]
FromFile = Annotated[Path | None, typer.Option("--from-file", help="Read the secret from this file.")]
FromEnv = Annotated[str | None, typer.Option("--from-env", help="Read the secret from this environment variable.")]


def _secret(from_file: Path | None, from_env: str | None) -> bytes:
    """The secret from a file, an environment variable, a hidden prompt, or piped stdin (never an argument)."""
    from arxctl.errors import InputError

    if from_file is not None and from_env is not None:
        raise InputError("give one of --from-file and --from-env")
    if from_file is not None:
        try:
            return from_file.read_bytes()
        except OSError as exc:
            raise InputError(f"{from_file}: cannot read the secret: {exc.strerror}") from None
    if from_env is not None:
        value = os.environ.get(from_env)
        if not value:
            raise InputError(f"environment variable {from_env} is empty or unset")
        return value.encode("utf-8")
    if sys.stdin.isatty():
        return typer.prompt("secret", hide_input=True).encode("utf-8")
    return sys.stdin.buffer.read()


@app.command("set")
def set_(
    connector: Annotated[str, typer.Argument(help="Connector name from the catalog.")],
    reason: ReasonOpt,
    agent: AgentOpt = None,
    from_file: FromFile = None,
    from_env: FromEnv = None,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Store a connector credential (read from stdin, --from-file or --from-env); prints only its fingerprint.

    Example: arxctl credentials set servicenow --reason "service account svc-arx" < servicenow.token
    """
    from arxctl.registry import credentials
    from arxctl.registry import resources as registry

    store = open_existing(state)
    info = credentials.set_credential(store, connector, _secret(from_file, from_env), actor=actor(as_),
                                      reason=reason, catalog=registry.catalog(store), agent=agent)
    echo(f"credential for {connector}{f' (agent {agent})' if agent else ''} stored as v{info.version}, "
         f"fingerprint {info.fingerprint}")


@app.command()
def rotate(
    connector: Annotated[str, typer.Argument(help="Connector name.")],
    reason: ReasonOpt,
    agent: AgentOpt = None,
    from_file: FromFile = None,
    from_env: FromEnv = None,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Replace a credential under the same identity: issued handles keep working (rotation, not termination).

    Example: arxctl credentials rotate servicenow --reason "quarterly rotation" --from-env NEW_SN_TOKEN
    """
    from arxctl.registry import credentials

    info = credentials.rotate(open_existing(state), connector, _secret(from_file, from_env), actor=actor(as_),
                              reason=reason, agent=agent)
    echo(f"credential for {connector}{f' (agent {agent})' if agent else ''} rotated to v{info.version}, "
         f"fingerprint {info.fingerprint}")


@app.command()
def delete(
    connector: Annotated[str, typer.Argument(help="Connector name.")],
    reason: ReasonOpt,
    agent: AgentOpt = None,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Delete a stored credential; handles that resolved to it are refused from now on.

    Example: arxctl credentials delete slack --reason "slack integration retired"
    """
    from arxctl.registry import credentials

    info = credentials.delete(open_existing(state), connector, actor=actor(as_), reason=reason, agent=agent)
    echo(f"credential for {connector}{f' (agent {agent})' if agent else ''} v{info.version} deleted")


@app.command("list")
def list_(
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """List stored credentials: connector, binding, version and fingerprint (never the secret).

    Example: arxctl credentials list -o json
    """
    from arxctl.registry import credentials

    rows = [c.to_dict() for c in credentials.list_credentials(open_existing(state))]
    if emit(rows, output):
        return
    table(["CONNECTOR", "AGENT", "VERSION", "FINGERPRINT", "CREATED", "UPDATED", "BY"],
          [[r["connector"], r["agent"] or "(shared)", r["version"], r["fingerprint"], r["created_at"],
            r["updated_at"], r["updated_by"]] for r in rows])
