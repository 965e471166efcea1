"""Options and rendering helpers shared by the command modules."""

from __future__ import annotations

import getpass
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

StateOpt = Annotated[
    Path | None,
    typer.Option("--state", envvar="ARX_HOME", help="State directory (default: ./.arx).", show_default=False),
]
CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option("--catalog", help="Extra ConnectorCatalog file(s) to extend the built-in catalog.", exists=True),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only what scripts need.")]
ActorOpt = Annotated[
    str | None,
    typer.Option("--as", help="Who is acting (default: $ARX_ACTOR, else the OS user).", show_default=False),
]


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def actor(value: str | None) -> str:
    if value:
        return value
    env = os.environ.get("ARX_ACTOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def color_enabled() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def console(stderr: bool = False):  # -> rich.console.Console
    from rich.console import Console

    return Console(
        stderr=stderr, highlight=False, no_color=not color_enabled(),
        force_terminal=None if color_enabled() else False,
        width=None if sys.stdout.isatty() else 200,
    )


def echo(text: str = "") -> None:
    typer.echo(text)


def print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_yaml(data: Any) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    yaml.dump(data, sys.stdout)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console().print(t)
