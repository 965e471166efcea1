"""`arxctl evidence`: write a signed evidence bundle for vendor review, and verify one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from arxctl.commands._common import CatalogOpt, StateOpt, echo, print_json
from arxctl.commands.analyze import AgentOpt, ManifestOpt, WorkersOpt, print_diagnostics


class _DefaultBuild(TyperGroup):
    """`arxctl evidence PATH ...` means `arxctl evidence build PATH ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultBuild, no_args_is_help=True,
    help="Write an evidence bundle for an agent (`arxctl evidence PATH -m M --out DIR`), or verify one.",
)


@app.command("build")
def build(
    paths: Annotated[list[Path], typer.Argument(help="The agent's source folders, files and Dockerfiles.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New (or empty) directory to write the bundle into.")],
    manifest: ManifestOpt = None,
    agent: AgentOpt = None,
    workers: WorkersOpt = None,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Analyse an agent and write index.md, findings, graph (Mermaid, DOT), control tables and an ISO SoA.

    The bundle's manifest.json lists the sha256 of every file; it is signed with the active chain key when
    the state store has one. Exit 0 when written, 2 on bad input.

    Example: arxctl evidence examples/agents/triage -m examples/manifests/triage-cs-01.yaml --out bundle/
    """
    from arxctl.analyze import evidence, session
    from arxctl.errors import ValidationFailed
    from arxctl.store.sqlite import resolve_state_dir

    if manifest is None and agent is None:
        typer.echo("error: an evidence bundle needs the agent: pass --manifest FILE or --agent NAME", err=True)
        raise typer.Exit(2)
    try:
        report = session.run(paths, manifest_file=manifest, agent=agent, state=state, catalog_files=catalog or [],
                             workers=workers)
    except ValidationFailed as exc:
        print_diagnostics(exc)
        typer.echo(f"error: {manifest}: invalid manifest; nothing written", err=True)
        raise typer.Exit(2) from None
    written = evidence.write(report, out, state_dir=resolve_state_dir(state))
    echo(f"wrote {len(written.files)} files to {written.path}")
    for c in report.coverage:
        echo(c.sentence)
    if written.key_id:
        echo(f"signed manifest.json with {written.key_id}")
    else:
        echo(f"unsigned: {written.unsigned_reason}")


@app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="An evidence bundle directory.")],
    source: Annotated[
        Path | None, typer.Option("--source", help="Source checkout to re-check spans in (default: as recorded).")
    ] = None,
    keys: Annotated[
        Path | None, typer.Option("--keys", help="Public keys (arxctl keys export-public JSON, or a PEM).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    state: StateOpt = None,
) -> None:
    """Re-hash every bundle file, check the signature and re-check the sha256 of every pinned source span.

    Exit 0 when everything matches, 1 on any problem, 2 when the bundle cannot be read.

    Example: arxctl evidence verify bundle/ --source . --keys chain-keys.json
    """
    from arxctl.analyze import evidence
    from arxctl.store.sqlite import resolve_state_dir

    result = evidence.verify(bundle, source=source, keys_file=keys, state_dir=resolve_state_dir(state))
    if json_out:
        print_json(result.to_dict())
    else:
        for p in result.problems:
            where = f"{p['path']}:{p['line']}" if p["line"] else p["path"]
            echo(f"{where}: {p['kind']}: {p['detail']}")
        verdict = "ok" if result.ok else "FAILED"
        echo(f"{verdict}: {result.files_checked} file(s), {result.spans_checked} span(s) checked; "
             f"signature {result.signature}")
    raise typer.Exit(0 if result.ok else 1)
