"""`arxctl analyze`: derive the connector graph from agent code and Dockerfiles and diff it against the manifest."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import CatalogOpt, StateOpt, print_json

app = typer.Typer()


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"
    markdown = "markdown"


class FailOn(StrEnum):
    error = "error"
    warning = "warning"


ManifestOpt = Annotated[
    Path | None, typer.Option("--manifest", "-m", help="Agent manifest (YAML) to diff the derived graph against.")
]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="Registered agent to diff against (instead of -m).")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-j", min=1, help="Processes for large trees (default: all cores).")
]


def print_diagnostics(exc: Exception) -> None:
    """Print every diagnostic of a ValidationFailed to stderr."""
    for d in getattr(exc, "diagnostics", []):
        typer.echo(d.render(), err=True)


@app.command()
def analyze(
    paths: Annotated[list[Path], typer.Argument(help="Python files, Dockerfiles or folders to analyse.")],
    manifest: ManifestOpt = None,
    agent: AgentOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Exit 1 when a finding is at least this severe.")] = (
        FailOn.error
    ),
    workers: WorkersOpt = None,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Find every connector call in agent code and images, with exact positions, and diff against the manifest.

    Undeclared connectors and actions are errors (fail closed); declared but unused actions are info.
    Exit 0 clean, 1 when a finding reaches --fail-on, 2 on bad input.

    Example: arxctl analyze examples/agents/triage -m examples/manifests/triage-cs-01.yaml --format sarif > a.sarif
    """
    from arxctl.analyze import report as rep
    from arxctl.analyze import sarif, session
    from arxctl.errors import ValidationFailed

    try:
        result = session.run(paths, manifest_file=manifest, agent=agent, state=state, catalog_files=catalog or [],
                             workers=workers)
    except ValidationFailed as exc:
        print_diagnostics(exc)
        typer.echo(f"error: {manifest}: invalid manifest; nothing analysed", err=True)
        raise typer.Exit(2) from None
    if format == Format.json:
        print_json(result.to_dict())
    elif format == Format.sarif:
        print_json(sarif.render(result))
    elif format == Format.markdown:
        typer.echo(rep.render_markdown(result), nl=False)
    else:
        typer.echo(rep.render_text(result))
    raise typer.Exit(rep.exit_code(result, fail_on.value))
