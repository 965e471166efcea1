"""`arxctl validate`: check resource files against their schemas and semantics."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import CatalogOpt, QuietOpt, StateOpt

app = typer.Typer()


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"
    junit = "junit"


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched for *.yaml, *.yml).")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Check Agent, Policy, Grant and ConnectorCatalog files against their schemas and semantics.

    Exit 0 when clean, 1 when a resource has errors, 2 when a file cannot be read or parsed.

    Example: arxctl validate examples/ --format sarif > validate.sarif
    """
    from arxctl import diagnostics as d
    from arxctl.registry import resources as registry
    from arxctl.resources.validation import check_paths
    from arxctl.store.sqlite import existing_store

    store = existing_store(state)
    base = registry.catalog(store)
    report = check_paths(paths, catalog_files=catalog or [], base_catalog=base)
    if format == Format.json:
        typer.echo(d.render_json(report.diagnostics))
    elif format == Format.sarif:
        typer.echo(d.render_sarif(report.diagnostics))
    elif format == Format.junit:
        typer.echo(d.render_junit(report.diagnostics, report.files))
    else:
        text = d.render_text(report.diagnostics, len(report.files))
        if quiet:
            text = "\n".join(x.render() for x in report.diagnostics)
        if text:
            typer.echo(text)
    raise typer.Exit(d.exit_code(report.diagnostics, input_error=report.input_error))
