"""`arxctl simulate`: replay recorded activity against a proposed policy set before enforcing it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from arxctl.commands._common import ActorOpt, CatalogOpt, QuietOpt, StateOpt, actor, print_json

app = typer.Typer()


class Format(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    junit = "junit"


@app.command()
def simulate(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Activity NDJSON files (optionally .gz), folders of them, or - for standard input.",
                       show_default=False),
    ] = None,
    policy: Annotated[
        list[Path] | None,
        typer.Option("--policy", help="The proposed Policies: files or folders (default: the registered ones)."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Compare with the Policies in this folder, or `recorded`: the verdicts "
                                        "recorded in the activity (default: the registered Policies).",
                     show_default=False),
    ] = None,
    baseline_ref: Annotated[
        str | None,
        typer.Option("--baseline-ref", help="Compare with the --policy files as they were at this git ref "
                                            "(e.g. origin/main).", show_default=False),
    ] = None,
    from_chain: Annotated[
        bool, typer.Option("--from-chain", help="Replay the chain's recorded decisions instead of activity files.")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="Only calls from then on: 30d, 12h, or a date or timestamp.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only calls before then: a duration back, a date or timestamp.")
    ] = None,
    as_of_event: Annotated[
        bool,
        typer.Option("--registry-as-of-event",
                     help="Use each agent's version, status and throttle in effect at each call's time."),
    ] = False,
    manifests: Annotated[
        list[Path] | None,
        typer.Option("--manifests", help="Take agents from these Agent files or folders instead of the registry."),
    ] = None,
    max_new_denies: Annotated[
        int | None, typer.Option("--max-new-denies", help="Gate: fail when more calls than N become DENY.")
    ] = None,
    max_new_approvals_per_day: Annotated[
        int | None,
        typer.Option("--max-new-approvals-per-day",
                     help="Gate: fail when more than N calls on one day newly need approval."),
    ] = None,
    fail_on_flip: Annotated[
        list[str] | None,
        typer.Option("--fail-on-flip", help="Gate: fail when any call flips this way, e.g. ALLOW->DENY (repeatable)."),
    ] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="text, json, markdown or junit.")] = Format.text,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, max=64, help="Worker processes; calls are split by agent.")
    ] = 1,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 2 at the first malformed line.")] = False,
    examples: Annotated[int, typer.Option("--examples", help="Flipped calls shown per kind of flip.")] = 3,
    record: Annotated[
        bool, typer.Option("--record", help="Append a `policy.simulated` record (revisions, counts) to the chain."),
    ] = False,
    as_: ActorOpt = None,
    quiet: QuietOpt = False,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Replay recorded activity against a proposed policy set and report what would change.

    Every call is decided again by the engine under the baseline and the proposed policies. The report gives the
    verdict counts, the flips, the rules and agents behind them, the approval load per approver group and day,
    what would be blocked and masked examples. Malformed lines are reported with their line number and skipped.

    Exit codes: 0 when every gate holds (or none is set), 1 when a gate fails, 2 for bad input (and for a
    malformed line with --strict).

    Example: arxctl simulate activity/ --policy policies/ --baseline-ref origin/main --max-new-denies 0 -f markdown
    """
    from arxctl.clock import now
    from arxctl.errors import ValidationFailed
    from arxctl.policy import simulate as core
    from arxctl.policy import simulate_render as render
    from arxctl.store.sqlite import existing_store

    checks = core.gates(max_new_denies, max_new_approvals_per_day, fail_on_flip or [])
    store = existing_store(state)
    try:
        spec, sources = core.prepare(
            store, inputs=inputs or [], policy=policy or [], baseline=baseline, baseline_ref=baseline_ref,
            from_chain=from_chain, since=since, until=until, as_of_event=as_of_event, manifests=manifests or [],
            catalog_files=catalog or [], strict=strict, examples=examples, now=now(),
        )
    except ValidationFailed as exc:
        for diagnostic in exc.diagnostics:
            typer.echo(diagnostic.render(), err=True)
        typer.echo("error: the policy or manifest files are not valid; nothing was replayed", err=True)
        raise typer.Exit(2) from None
    finally:
        if store is not None:
            store.close()
    with ProgressBar(quiet, core.input_size(sources)) as progress:
        report = core.replay(spec, sources, workers=workers, progress=progress)
    ok = core.apply_gates(report, checks)
    if record:
        from arxctl.store.sqlite import open_store

        with open_store(state) as writer:
            core.record_simulation(writer, report, actor=actor(as_))
    if format == Format.json:
        print_json(report)
    elif format == Format.markdown:
        sys.stdout.write(render.render_markdown(report))
    elif format == Format.junit:
        sys.stdout.write(render.render_junit(report))
    else:
        sys.stdout.write(render.render_text(report))
    raise typer.Exit(0 if ok else 1)


class ProgressBar:
    """A rich progress bar on standard error when it is a terminal (not with --quiet or NO_COLOR)."""

    def __init__(self, quiet: bool, total: int | None) -> None:
        self.enabled = not quiet and sys.stderr.isatty() and "NO_COLOR" not in os.environ
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("replaying"), BarColumn(), TextColumn("{task.fields[lines]:,} calls"),
            TextColumn("{task.fields[rate]:,.0f}/s"), TimeElapsedColumn(), TimeRemainingColumn(),
            transient=True, console=_stderr_console(),
        )
        self.bar.start()
        task = self.bar.add_task("replay", total=self.total, lines=0, rate=0.0)
        started = self.bar.get_time()

        def update(done: int, lines: int) -> None:
            elapsed = max(self.bar.get_time() - started, 1e-6)
            self.bar.update(task, completed=done, lines=lines, rate=lines / elapsed)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
