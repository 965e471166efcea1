"""The root Typer app: registration of the verb groups only."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from arxctl import __version__
from arxctl.commands import agents, chain, register, validate

app = typer.Typer(
    name="arxctl",
    help="Govern AI agents like employees: registry, scored decisions, approvals, grants, drift, audit chain.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"arxctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """arxctl: govern AI agents the way a company governs employees.

    Example: arxctl validate examples/ && arxctl register examples/manifests examples/policies
    """
    if debug:
        os.environ["ARX_DEBUG"] = "1"


app.add_typer(validate.app)
app.add_typer(register.app)
app.add_typer(agents.app, name="agents")
app.add_typer(chain.app, name="chain")


def main() -> None:
    """Entry point: typed errors become a one-line message and their exit code."""
    from arxctl.errors import ArxError

    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ArxError as exc:
        if os.environ.get("ARX_DEBUG"):
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors and the unexpected
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        if os.environ.get("ARX_DEBUG"):
            raise
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for a traceback)", err=True)
        sys.exit(70)
