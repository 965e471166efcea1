"""`arxctl agents suspend|reactivate|throttle|unthrottle|status|lineage`: an agent's lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from arxctl.commands._common import ActorOpt, Output, StateOpt, actor, echo, print_json, print_yaml, table
from arxctl.commands.agents import app

if TYPE_CHECKING:
    from arxctl.registry.config import ProjectConfig
    from arxctl.store.sqlite import Store

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Project config YAML (default: <state>/config.yaml).", show_default=False),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; recorded in the audit chain.")]


def open_existing(state: Path | None) -> Store:
    """The state store; commands that change lifecycle state need a registry to exist."""
    from arxctl.store.sqlite import open_store

    return open_store(state, create=False)


def load_config(store: Store, path: Path | None) -> ProjectConfig:
    """The project config from `--config`, else `<state>/config.yaml`."""
    from arxctl.registry import config as project

    return project.load(store.directory, path)


def emit(data: Any, output: Output) -> bool:
    """Print json or yaml and return True; False when the caller renders a table."""
    if output == Output.json:
        print_json(data)
    elif output == Output.yaml:
        print_yaml(data)
    else:
        return False
    return True


@app.command()
def suspend(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    reason: ReasonOpt,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Suspend an agent: every call is denied at the intercept (score 100) until an admin reactivates it.

    Example: arxctl agents suspend triage-cs-01 --reason "closing tickets outside its queue"
    """
    from arxctl.registry import lifecycle

    written = lifecycle.suspend(open_existing(state), name, actor=actor(as_), reason=reason)
    echo(f"agent/{name} suspended (chain seq {written.seq}): {written.body['reason']}")


@app.command()
def reactivate(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    reason: ReasonOpt,
    as_: ActorOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """Lift a suspension; only an admin listed in the project config may (there is no auto-resume).

    Example: arxctl agents reactivate triage-cs-01 --as carol --reason "queue filter fixed in v3"
    """
    from arxctl.registry import lifecycle

    store = open_existing(state)
    written = lifecycle.reactivate(store, name, actor=actor(as_), reason=reason, config=load_config(store, config))
    echo(f"agent/{name} reactivated by {written.actor} (chain seq {written.seq})")


@app.command()
def throttle(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    reason: ReasonOpt,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Throttle an agent: its write, destructive and containment calls need approval; reads are unaffected.

    Example: arxctl agents throttle triage-cs-01 --reason "call rate 5x its declared rate"
    """
    from arxctl.registry import lifecycle

    written = lifecycle.throttle(open_existing(state), name, actor=actor(as_), reason=reason)
    echo(f"agent/{name} throttled (chain seq {written.seq}): {lifecycle.THROTTLE_EFFECT}")


@app.command()
def unthrottle(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    reason: ReasonOpt,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Lift a throttle.

    Example: arxctl agents unthrottle triage-cs-01 --reason "rate back under the declared 20/min"
    """
    from arxctl.registry import lifecycle

    written = lifecycle.unthrottle(open_existing(state), name, actor=actor(as_), reason=reason)
    echo(f"agent/{name} unthrottled (chain seq {written.seq})")


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """An agent's lifecycle state: active, suspended or decommissioned, throttle, and who changed them and why.

    Example: arxctl agents status triage-cs-01 -o json
    """
    from arxctl.registry import lifecycle

    held = lifecycle.status(open_existing(state), name).to_dict()
    if emit(held, output):
        return
    width = max(len(k) for k in held)
    for key, value in held.items():
        if value is not None:
            echo(f"{key.ljust(width)}  {value}")


@app.command()
def lineage(
    name: Annotated[str, typer.Argument(help="Agent name (usually the live one).")],
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """Walk back from an agent through every predecessor (spec.parent and --replaced-by) with why each retired.

    Example: arxctl agents lineage triage-cs-02
    """
    from arxctl.registry.decommission import lineage as walk

    rows = [a.to_dict() for a in walk(open_existing(state), name)]
    if emit(rows, output):
        return
    table(["NAME", "LINK", "STATUS", "RETIRED", "BY", "RETENTION", "REASON"],
          [["  " * r["depth"] + r["name"], "-" if r["via"] == "self" else f"{r['via']} of {r['successor']}",
            r["status"], r["retired_at"] or "-", r["retired_by"] or "-", r["retention_class"] or "-",
            r["reason"] or "-"] for r in rows])
