"""`arxctl crds`: generate the CustomResourceDefinitions from the schemas and check they are current."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import print_json

app = typer.Typer(help="Generate and check the Kubernetes CRDs (Agent, Policy, Grant, ConnectorCatalog).",
                  epilog="Example: arxctl crds generate --out crds/ && arxctl crds check --dir crds/",
                  no_args_is_help=True)


class CheckFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the CRDs and their kustomization to.")] = Path(
        "crds"),
    stdout: Annotated[bool, typer.Option("--stdout", help="Print all CRDs as one YAML stream instead.")] = False,
) -> None:
    """Write one CRD per kind from arxctl/schemas (the one source), plus a kustomization.yaml.

    Example: arxctl crds generate --out crds/ && kubectl apply -k crds/
    """
    from arxctl.k8s import crds

    if stdout:
        sys.stdout.write(crds.stream())
        return
    for result in crds.write(out):
        action = "removed" if result.state == crds.FileState.orphaned else (
            "unchanged" if result.state == crds.FileState.current else "wrote")
        typer.echo(f"{action} {result.path}")


@app.command()
def check(
    dir: Annotated[Path, typer.Option("--dir", help="Folder that `crds generate` writes to.")] = Path("crds"),
    format: Annotated[CheckFormat, typer.Option("--format", "-f")] = CheckFormat.text,
) -> None:
    """Fail (exit 1) when the CRD folder differs from what `crds generate` would write.

    Example: arxctl crds check --dir crds/ || arxctl crds generate --out crds/
    """
    from arxctl.k8s import crds

    results = crds.check(dir)
    ok = all(r.state == crds.FileState.current for r in results)
    if format == CheckFormat.json:
        print_json({"ok": ok, "files": [r.to_dict() for r in results]})
    else:
        for result in results:
            typer.echo(f"{result.path}: {result.state}")
        if not ok:
            typer.echo(f"{dir} is out of date: run `arxctl crds generate --out {dir}`", err=True)
    raise typer.Exit(0 if ok else 1)
