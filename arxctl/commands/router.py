"""`arxctl router`: provider health from the shared breaker, and a test call through the provider chain."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, StateOpt, actor, echo, print_json, table

app = typer.Typer(help="Route LLM calls across providers with fleet-wide circuit breaking.", no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Router config (default: router.yaml in the state dir, else built-ins).",
                 show_default=False),
]
RedisOpt = Annotated[
    str | None,
    typer.Option("--redis", envvar="ARX_REDIS_URL", help="Redis URL (default: redis.url from the config).",
                 show_default=False),
]


class Format(StrEnum):
    table = "table"
    json = "json"


def _require_extra() -> None:
    """The router's HTTP client is an optional dependency; say how to get it instead of a traceback."""
    import importlib.util

    if importlib.util.find_spec("httpx") is None:
        from arxctl.errors import InputError

        raise InputError("the LLM router needs its optional dependencies: pip install 'arxctl[router]'")


def _clock() -> float:
    from arxctl.clock import now

    return now().timestamp()


@app.command()
def status(
    redis: RedisOpt = None,
    config: ConfigOpt = None,
    output: Annotated[Format, typer.Option("--output", "-o")] = Format.table,
    state: StateOpt = None,
) -> None:
    """Show each provider's health (failures in the window, open until) from the breaker state in Redis.

    Exit 0 when every circuit is closed; 1 when one is open or half-open, or Redis cannot be read.

    Example: arxctl router status --redis redis://127.0.0.1:6379/0 --output json
    """
    _require_extra()
    from arxctl.router.config import resolve_config
    from arxctl.router.router import fleet_status

    report = fleet_status(resolve_config(config, state), redis, clock=_clock)
    if output == Format.json:
        print_json(report.to_dict())
    else:
        echo(f"breaker: {report.redis}  ({report.settings.failures} failures in {report.settings.window:g}s "
             f"open a circuit for {report.settings.open:g}s)")
        table(
            ["PROVIDER", "KIND", "STATE", "FAILURES", "OPEN UNTIL", "PROBE"],
            [[h["provider"], kind, h["state"], h["failures_in_window"], h["open_until"] or "-",
              "in flight" if h["probe_in_flight"] else "-"]
             for kind, h in zip(report.kinds, (p.to_dict() for p in report.providers), strict=True)],
        )
    raise typer.Exit(0 if report.healthy else 1)


@app.command("test")
def test_chain(
    config: ConfigOpt = None,
    tier: Annotated[str, typer.Option("--tier", "-t", help="Model tier to call.")] = "frontier",
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Use this agent's provider order.")] = None,
    redis: RedisOpt = None,
    output: Annotated[Format, typer.Option("--output", "-o")] = Format.table,
    as_: ActorOpt = None,
    state: StateOpt = None,
) -> None:
    """Send a tiny request through the chain of providers and print every attempt.

    The call is audited like any other, as an `llm.chat` record in the chain.

    Exit 0 when a provider answered; 1 when none did; 2 for a bad config or an unknown tier.

    Example: arxctl router test --config router.yaml --tier fast
    """
    _require_extra()
    from arxctl.router.config import resolve_config
    from arxctl.router.router import Router
    from arxctl.store.sqlite import open_store

    cfg = resolve_config(config, state)
    with open_store(state) as store, Router.from_config(cfg, store=store, redis_url=redis, clock=_clock) as router:
        result = router.check(model_tier=tier, agent=agent, actor=actor(as_))
    if output == Format.json:
        print_json(result.to_dict())
    else:
        table(
            ["PROVIDER", "MODEL", "RESULT", "STATUS", "LATENCY"],
            [[a.provider, a.model or "-", "ok" if a.ok else f"{a.kind} ({a.error_type})" if a.error_type else a.kind,
              a.status_code or "-", f"{a.latency_ms:g} ms"] for a in result.attempts],
        )
        if result.ok:
            echo(f"answered by {result.provider_used} after {len(result.attempts) - 1} failover hop(s); "
                 f"breaker: {result.breaker}")
        else:
            echo(f"failed: {result.error}")
    raise typer.Exit(0 if result.ok else 1)
