"""`arxctl activity generate`: a synthetic fleet's activity for demos and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import CatalogOpt, QuietOpt, StateOpt, print_json

app = typer.Typer(help="Synthetic activity (NDJSON) for demos, simulate and benchmarks.", no_args_is_help=True)


@app.command()
def generate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file; .gz compresses; - writes plain NDJSON to stdout.")
    ],
    agents: Annotated[int, typer.Option("--agents", min=1, help="Agents in the fleet.")] = 20,
    days: Annotated[int, typer.Option("--days", min=1, help="Days of activity.")] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same fleet, same activity.")] = 1,
    calls_per_day: Annotated[
        float, typer.Option("--calls-per-day", help="Mean calls per agent per day (weekdays busier).")
    ] = 2000.0,
    start: Annotated[
        str | None,
        typer.Option("--start", help="First day (2026-04-01); default: so that the activity ends today.",
                     show_default=False),
    ] = None,
    manifests: Annotated[
        list[Path] | None,
        typer.Option("--manifests", help="Build the fleet from these Agent files or folders."),
    ] = None,
    from_registry: Annotated[
        bool, typer.Option("--from-registry", help="Build the fleet from the registered agents (the default).")
    ] = False,
    write_manifests: Annotated[
        Path | None,
        typer.Option("--write-manifests", help="Also write the fleet's Agent manifests here (register them "
                                               "before replaying).", show_default=False),
    ] = None,
    level: Annotated[int, typer.Option("--level", help="gzip level, 0-9.")] = 6,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: QuietOpt = False,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Generate a realistic synthetic fleet's activity: diurnal load, sessions, bursts and a few misbehaving
    agents (undeclared actions, prod targets, bursts). Agents beyond the templates are numbered clones.

    The output is deterministic for a seed and a start day.

    Example: arxctl activity generate --manifests examples/manifests --agents 200 --days 30 --seed 7 --out a.ndjson.gz
    """
    from arxctl.clock import now
    from arxctl.errors import InputError
    from arxctl.policy import activity
    from arxctl.policy import state as engine_state
    from arxctl.registry import resources as registry
    from arxctl.store.sqlite import existing_store

    if manifests and from_registry:
        raise InputError("give --manifests or --from-registry, not both")
    store = existing_store(state)
    try:
        cat = engine_state.extend_catalog(registry.catalog(store), catalog or [])
        docs = activity.templates(store, manifests or [], cat)
    finally:
        if store is not None:
            store.close()
    target = None if str(out) == "-" else out
    summary = activity.generate_file(
        docs, agents=agents, days=days, seed=seed, start=activity.start_from(start, now(), days), out=target,
        calls_per_day=calls_per_day, level=level, catalog=cat, manifests_out=write_manifests,
    )
    if json:
        print_json(summary.to_dict())
    elif not quiet:
        where = "standard output" if target is None else str(target)
        typer.echo(f"wrote {summary.events:,} calls by {summary.agents} agents over {days} days "
                   f"({summary.first_ts} .. {summary.last_ts}) to {where}", err=target is None)
        bad = ", ".join(f"{name} ({', '.join(kinds)})" for name, kinds in sorted(summary.misbehaving.items()))
        typer.echo(f"misbehaving: {bad or 'none'}", err=target is None)
        if write_manifests is not None:
            typer.echo(f"fleet manifests: {write_manifests} (register them before replaying)", err=target is None)
