"""`arxctl apply` and `arxctl diff`: validate, then server-side apply (or preview) Agents, Policies and Grants."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from arxctl.commands._common import print_json

if TYPE_CHECKING:
    from arxctl.operator.k8s import Kube

app = typer.Typer()

KubeconfigOpt = Annotated[Path | None, typer.Option("--kubeconfig", help="Default: $KUBECONFIG or ~/.kube/config.")]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Default: the context's namespace.")]
PathsArg = Annotated[list[Path], typer.Argument(help="Files or folders of Agent, Policy, ConnectorCatalog and Grant "
                                                     "YAML.")]


class ApplyOutput(StrEnum):
    text = "text"
    json = "json"


def _prepare(paths: list[Path], kubeconfig: Path | None, context: str | None,
             namespace: str | None) -> tuple[Kube, list[dict[str, Any]]]:
    """Validate like `arxctl validate` (exit 2 with the diagnostics when anything is wrong), then connect."""
    from arxctl import diagnostics as d
    from arxctl.operator.apply import desired_objects
    from arxctl.operator.k8s import Kube
    from arxctl.resources.validation import check_paths

    report = check_paths(paths)
    if not report.ok or report.input_error:
        typer.echo(d.render_text(report.diagnostics, len(report.files)), err=True)
        raise typer.Exit(2)
    kube = Kube.connect(kubeconfig, context)
    return kube, desired_objects(report.resources, namespace or kube.namespace)


@app.command()
def apply(
    paths: PathsArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Server-side dry run: validated by the server, "
                                                            "nothing persisted.")] = False,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Take over fields another manager "
                                                                            "owns.")] = False,
    field_manager: Annotated[str, typer.Option("--field-manager", help="Server-side apply field manager.")] = "arxctl",
    output: Annotated[ApplyOutput, typer.Option("--output", "-o")] = ApplyOutput.text,
) -> None:
    """Validate the resources, then server-side apply them (strict field validation) as GitOps would.

    Exit 0 when applied, 2 when a resource is invalid (nothing is applied) or the server refuses one.

    Example: arxctl apply examples/manifests/ examples/policies/ --namespace payments --dry-run
    """
    from arxctl.operator.apply import apply_objects

    kube, objects = _prepare(paths, kubeconfig, context, namespace)
    done = apply_objects(kube, objects, dry_run=dry_run, force=force_conflicts, field_manager=field_manager)
    if output == ApplyOutput.json:
        print_json({"applied": [a.to_dict() for a in done]})
    else:
        for item in done:
            typer.echo(item.line())


@app.command()
def diff(
    paths: PathsArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    field_manager: Annotated[str, typer.Option("--field-manager", help="Server-side apply field manager.")] = "arxctl",
    output: Annotated[ApplyOutput, typer.Option("--output", "-o")] = ApplyOutput.text,
) -> None:
    """Show what `arxctl apply` would change (a server-side dry run compared with the live objects).

    Exit 0 when nothing would change, 1 when something would, 2 on invalid input.

    Example: arxctl diff examples/policies/ --namespace payments
    """
    from arxctl.operator.apply import UNCHANGED, apply_objects

    kube, objects = _prepare(paths, kubeconfig, context, namespace)
    done = apply_objects(kube, objects, dry_run=True, force=True, field_manager=field_manager)
    changed = any(a.action != UNCHANGED for a in done)
    if output == ApplyOutput.json:
        print_json({"changed": changed, "objects": [a.to_dict() for a in done]})
    else:
        for item in done:
            if item.diff:
                typer.echo(item.diff, nl=False)
    raise typer.Exit(1 if changed else 0)
