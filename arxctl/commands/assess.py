"""`arxctl assess`: find your stage (Stuck, Operating, Scaling) and what is missing for the next one."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import StateOpt, echo, print_json

app = typer.Typer()


class Format(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


class Stage(StrEnum):
    Stuck = "Stuck"
    Operating = "Operating"
    Scaling = "Scaling"


@app.command()
def assess(
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    fail_below: Annotated[
        Stage | None, typer.Option("--fail-below", help="Exit 1 when the fleet is below this stage (for CI).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Project config (default: <state>/config.yaml).", show_default=False),
    ] = None,
    state: StateOpt = None,
) -> None:
    """Report the fleet's stage from the registry and the chain, with each missing item and the command that fixes it.

    Read-only. Exit 0 whatever the stage, unless --fail-below names a stage the fleet has not reached (exit 1);
    a bad config exits 2.

    Example: arxctl assess --format markdown --fail-below Operating
    """
    from arxctl.clock import now
    from arxctl.registry import assess as core
    from arxctl.registry import config as project
    from arxctl.store.sqlite import existing_store, resolve_state_dir

    directory = resolve_state_dir(state)
    settings = project.load(directory, config)
    store = existing_store(state)
    result = core.assess(store, settings, now=now(), config_hint=str(config or directory / project.CONFIG_FILE))
    if format == Format.json:
        print_json(result.to_dict())
    elif format == Format.markdown:
        echo(core.render_markdown(result))
    else:
        echo(core.render_text(result))
    raise typer.Exit(1 if fail_below is not None and not core.at_least(result.stage, str(fail_below)) else 0)
