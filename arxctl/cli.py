"""The root Typer app: registration of the verb groups only."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from arxctl import __version__
from arxctl.commands import (
    activity,
    agents,
    analyze,
    apply,
    approvals,
    assess,
    chain,
    crds,
    credentials,
    decide,
    decommission,
    drift,
    evidence,
    gateway,
    grants,
    handles,
    keys,
    lifecycle,  # noqa: F401  (adds suspend, reactivate, throttle, status and lineage to `agents`)
    operator,
    policy,
    register,
    router,
    simulate,
    validate,
)


class ArxGroup(TyperGroup):
    """Typed arxctl errors become a one-line message and their exit code; tracebacks only with --debug."""

    def invoke(self, ctx: Any) -> Any:
        from arxctl.errors import ArxError

        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):
            raise
        except ArxError as exc:
            if os.environ.get("ARX_DEBUG"):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if os.environ.get("ARX_DEBUG"):
                raise
            typer.echo(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for a traceback)", err=True)
            raise typer.Exit(70) from None


app = typer.Typer(
    cls=ArxGroup,
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


@app.callback(epilog="Example: arxctl validate examples/ && arxctl register examples/manifests examples/policies")
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Govern AI agents like employees: registry, scored decisions, approvals, grants, drift, audit chain."""
    if debug:
        os.environ["ARX_DEBUG"] = "1"


app.add_typer(validate.app)
app.add_typer(register.app)
app.add_typer(agents.app, name="agents")
app.add_typer(chain.app, name="chain")
app.add_typer(keys.app, name="keys")
app.add_typer(crds.app, name="crds")
app.add_typer(decide.app)
app.add_typer(policy.app, name="policy")
app.add_typer(router.app, name="router")
app.add_typer(analyze.app)
app.add_typer(evidence.app, name="evidence")
app.add_typer(drift.app, name="drift")
app.add_typer(assess.app)
app.add_typer(approvals.app, name="approvals")
app.add_typer(grants.app, name="grants")
app.add_typer(handles.app, name="handles")
app.add_typer(credentials.app, name="credentials")
app.add_typer(decommission.app)
app.add_typer(simulate.app)
app.add_typer(activity.app, name="activity")
app.add_typer(operator.app, name="operator")
app.add_typer(apply.app)
app.add_typer(gateway.app, name="gateway")


def main() -> None:
    """Console-script entry point."""
    app()
