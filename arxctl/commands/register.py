"""`arxctl register`: validate and store resources as immutable versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, CatalogOpt, QuietOpt, StateOpt, actor, echo

app = typer.Typer()


@app.command()
def register(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders with Agent, Policy, ConnectorCatalog.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why; recorded in the chain.")] = None,
    as_: ActorOpt = None,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Validate and store resources; each changed Agent becomes a new immutable version.

    Everything is stored in one transaction, with one chain record per change, or nothing is.
    Registered Policies are the enforced policy set.

    Example: arxctl register examples/manifests examples/policies --reason "initial import"
    """
    from arxctl.diagnostics import sort_key
    from arxctl.registry import resources as registry
    from arxctl.resources.validation import check_paths
    from arxctl.store.sqlite import open_store

    store = open_store(state)
    report = check_paths(paths, catalog_files=catalog or [], base_catalog=registry.catalog(store))
    if not report.ok:
        for diag in sorted(report.diagnostics, key=sort_key):
            typer.echo(diag.render(), err=True)
        typer.echo("error: nothing was registered", err=True)
        raise typer.Exit(2)
    if not report.resources:
        typer.echo("error: no resources found in the given paths", err=True)
        raise typer.Exit(2)
    grants = [r for r in report.resources if r.kind == "Grant"]
    if grants:
        typer.echo(f"error: {grants[0].path}: Grants are requested with `arxctl grants request`", err=True)
        raise typer.Exit(2)
    # Catalogs first, so agents registered in the same call can use their connectors.
    ordered = sorted(report.resources, key=lambda r: {"ConnectorCatalog": 0, "Agent": 1, "Policy": 2}[r.kind])
    results = registry.register(store, ordered, actor=actor(as_), reason=reason)
    for r in results:
        if quiet and not r.changed:
            continue
        state_word = f"registered v{r.version}" if r.changed else f"unchanged (v{r.version})"
        echo(f"{r.kind.lower()}/{r.name} {state_word}")
