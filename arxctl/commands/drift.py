"""`arxctl drift`: compare observed activity with the declared manifests and respond per each agent's drift map."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from arxctl.commands._common import ActorOpt, CatalogOpt, StateOpt, echo, print_json

app = typer.Typer(help="Detect drift from the declared manifests and respond to it.", no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Project config with the webhook (default: <state>/config.yaml).",
                 show_default=False),
]


class Format(StrEnum):
    text = "text"
    json = "json"


@app.command()
def check(
    activity: Annotated[
        Path | None, typer.Option("--activity", help="Activity NDJSON (formats.md section 5), plain or gzip.")
    ] = None,
    from_chain: Annotated[
        bool, typer.Option("--from-chain", help="Use the chain's own decision records as the activity.")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="Only calls at or after this RFC 3339 time, or within a duration "
                                                 "back from now (24h, 7d).")
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Act per each manifest's drift map: alert, throttle or suspend; "
                                           "critical drift also fires the signed drift.detected webhook.")
    ] = False,
    webhook_deadline: Annotated[
        str, typer.Option("--webhook-deadline", help="Total time allowed for one webhook delivery, retries "
                                                     "included.")
    ] = "30s",
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    as_: ActorOpt = None,
    config: ConfigOpt = None,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Compare observed calls with each agent's declared manifest and report drift by severity.

    The bar is the manifest, never rolling history. Severities follow the documented rules (docs/drift.md).
    Exit 0 when there is no drift, 1 when there is (also after --apply), 2 on bad input.

    Example: arxctl drift check --activity examples/activity/sample.ndjson --apply --as secops-oncall
    """
    from arxctl.clock import now, now_ts
    from arxctl.durations import parse_duration
    from arxctl.errors import InputError
    from arxctl.registry import drift
    from arxctl.store.sqlite import existing_store, open_store, resolve_state_dir

    try:
        deadline = parse_duration(webhook_deadline)
    except ValueError as exc:
        raise InputError(f"--webhook-deadline: {exc}") from None
    cutoff = drift.parse_since(since, now()) if since else None
    store = open_store(state, create=False) if apply else existing_store(state)
    project = _config(resolve_state_dir(state), config) if apply else None
    report = drift.check(store, activity=activity, from_chain=from_chain, since=cutoff, catalog_files=catalog or [])
    applied = None
    if apply:
        who = as_ or drift.DEFAULT_ACTOR
        webhook = project.webhook if project is not None else None
        applied = drift.apply(store, report, actor=who, ts=now_ts(), webhook=webhook, deadline=deadline)
    if format == Format.json:
        print_json({**report.to_dict(), "applied": [a.to_dict() for a in applied] if applied is not None else None})
    else:
        _render(report, applied)
    raise typer.Exit(1 if report.drift else 0)


def _config(state_dir: Path, explicit: Path | None) -> Any:
    from arxctl.registry import config

    return config.load(state_dir, explicit)


def _render(report: Any, applied: list[Any] | None) -> None:
    window = ""
    if report.first_ts is not None:
        from arxctl.clock import format_ts

        window = f", {format_ts(report.first_ts)} .. {format_ts(report.last_ts)}"
    echo(f"drift check: {_count(report.events, 'call')} by {_count(report.agents_seen, 'agent')} from "
         f"{report.source}{window}")
    if not report.agents:
        echo("no drift: every call is inside its agent's declared manifest")
        return
    done = {a.agent: a for a in applied or []}
    for agent in report.agents:
        echo("")
        echo(f"{agent.agent} [{agent.status}]: {agent.severity.upper()} drift -> {agent.response}"
             f"{' + webhook' if agent.webhook else ''}  ({agent.report_id})")
        for f in agent.findings:
            calls = _count(f.count, "call") if f.kind != "rate-exceeded" else ""
            echo(f"  {f.severity:<8} {f.kind:<21} {f.subject:<28} {calls:<9} {f.detail}  (first: {f.first_at})")
        result = done.get(agent.agent)
        if result is not None:
            again = f", already recorded at chain seq {result.detected_seq}" if result.already_recorded else (
                f", recorded at chain seq {result.detected_seq}")
            action = f" (chain seq {result.action_seq})" if result.action_seq is not None else ""
            echo(f"  applied: {result.outcome}{action}{again}")
            if result.webhook is not None:
                hook = result.webhook
                echo(f"  webhook: {hook['outcome']} after {_count(hook['attempts'], 'attempt')}: {hook['detail']}")
    counts = report.by_severity()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("critical", "high", "medium", "low") if counts[s])
    echo("")
    echo(f"{_count(len(report.agents), 'agent')} drifted: {summary}" + ("" if applied is not None else
                                                                      "; re-run with --apply to respond"))


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
