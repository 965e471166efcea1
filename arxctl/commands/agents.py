"""`arxctl agents`: list, show, graph, history and roll back registered agents."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from arxctl.commands._common import (
    ActorOpt,
    CatalogOpt,
    Output,
    QuietOpt,
    StateOpt,
    actor,
    console,
    echo,
    print_json,
    print_yaml,
    table,
)

app = typer.Typer(help="List, inspect, graph and roll back registered agents.", no_args_is_help=True)


def _registry(state, catalog_files=None):
    from arxctl.registry import resources as registry
    from arxctl.store.sqlite import open_store

    store = open_store(state, create=False)
    catalog = registry.catalog(store)
    if catalog_files:
        from arxctl.resources.yamlio import iter_documents

        for _, docs, _problems in iter_documents(catalog_files):
            for d in docs:
                if isinstance(d.data, dict) and d.data.get("kind") == "ConnectorCatalog":
                    catalog = catalog.extend(d.data["spec"], d.data["metadata"]["name"])
    return store, registry, catalog


def _policies(store, registry) -> list[dict]:
    return [v.doc for _, v in registry.current(store, "Policy")]


@app.command("list")
def list_(
    selector: Annotated[
        str,
        typer.Option("--selector", "-l", help="Label selector: env=prod,region=us-east or env:prod/region:us-east."),
    ] = "",
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """List registered agents, filtered by labels.

    Example: arxctl agents list -l env=prod,team=secops -o json
    """
    from arxctl.registry.selectors import matches, parse_selector

    requirements = parse_selector(selector)
    store, registry, _ = _registry(state)
    rows = []
    for head, version in registry.current(store, "Agent"):
        labels = version.doc["metadata"].get("labels") or {}
        if not matches(requirements, labels):
            continue
        spec = version.doc["spec"]
        rows.append({
            "name": head.name, "version": head.version, "status": head.status,
            "owner": spec["owner"]["name"], "email": spec["owner"]["email"], "labels": labels,
            "connectors": [c["name"] for c in spec.get("connectors") or []], "updated": head.updated_ts,
        })
    if output == Output.json:
        print_json(rows)
    elif output == Output.yaml:
        print_yaml(rows)
    else:
        table(
            ["NAME", "VERSION", "STATUS", "OWNER", "LABELS", "CONNECTORS"],
            [[r["name"], r["version"], r["status"], r["owner"],
              ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items())), ",".join(r["connectors"])]
             for r in rows],
        )


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    version: Annotated[int | None, typer.Option("--version", "-v", help="A past version.")] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Owner, purpose, labels, status, versions, the connector graph and the blast radius.

    The blast radius is the highest score any declared action can reach (session frequency at its cap)
    and the verdict that score gets under the current thresholds.

    Example: arxctl agents show triage-cs-01
    """
    from arxctl.registry.graph import build_graph

    store, registry, cat = _registry(state, catalog)
    v = registry.get(store, "Agent", name, version)
    head = registry.head(store, "Agent", name)
    graph = build_graph(v.doc, cat, _policies(store, registry))
    spec = v.doc["spec"]
    from arxctl.gateway.health import agent_health

    runtime = agent_health(store.directory, name)
    if output != Output.table:
        data = {
            "name": name, "version": v.version, "latest_version": head.version, "status": head.status,
            "digest": v.digest, "owner": spec["owner"], "purpose": spec["purpose"],
            "labels": v.doc["metadata"].get("labels") or {}, "parent": spec.get("parent"),
            "registered": v.ts, "registered_by": v.actor, "graph": graph.to_dict(), "gateway": runtime,
        }
        print_json(data) if output == Output.json else print_yaml(data)
        return
    from rich.tree import Tree

    con = console()
    owner = spec["owner"]
    labels = ", ".join(f"{k}={val}" for k, val in sorted((v.doc["metadata"].get("labels") or {}).items()))
    con.print(f"[bold]{name}[/bold]  version {v.version} of {head.version}  status {head.status}")
    con.print(f"owner:    {owner['name']} <{owner['email']}>" + (f" ({owner['team']})" if owner.get("team") else ""))
    con.print(f"purpose:  {spec['purpose']}")
    con.print(f"labels:   {labels or '-'}")
    if spec.get("parent"):
        con.print(f"parent:   {spec['parent']}")
    con.print(f"digest:   {v.digest}")
    con.print(f"registered {v.ts} by {v.actor}")
    con.print(f"thresholds: review {graph.review}, deny {graph.deny}")
    con.print(f"blast radius: {graph.blast_radius} ({graph.blast_verdict})")
    tree = Tree(f"[bold]{name}[/bold] connector graph")
    by_connector: dict[str, Tree] = {}
    for e in graph.edges:
        if e.connector not in by_connector:
            pii = " PII" if e.sensitive else ""
            by_connector[e.connector] = tree.add(f"{e.connector} [{e.data_class}{pii}] -> {e.system} ({e.env})")
        lo, hi = graph.edge_verdicts(e)
        gate = f" gated by {', '.join(e.gated_by)}" if e.gated_by else ""
        verdicts = lo if lo == hi else f"{lo}..{hi}"
        by_connector[e.connector].add(f"{e.action}  {e.operation}  score {e.min_score}-{e.max_score} {verdicts}{gate}")
    con.print(tree)
    if runtime is not None:
        drift = runtime["drift"]
        con.print(f"gateway:  last seen {runtime['last_seen'] or '-'}, {runtime['calls_per_minute']} calls/min, "
                  f"deny rate {runtime['deny_rate']:.0%}, {runtime['undeclared_attempts']} undeclared attempts, "
                  f"drift {drift['severity'] or 'none'}" + (f" -> {drift['applied'] or drift['response']}"
                                                            if drift["severity"] else ""))


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"
    json = "json"


@app.command()
def graph(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    format: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.mermaid,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Render the agent's declared connector graph as Mermaid, Graphviz DOT or JSON.

    Example: arxctl agents graph triage-cs-01 --format dot | dot -Tsvg > graph.svg
    """
    from arxctl.registry.graph import build_graph, to_dot, to_mermaid

    store, registry, cat = _registry(state, catalog)
    v = registry.get(store, "Agent", name)
    g = build_graph(v.doc, cat, _policies(store, registry))
    if format == GraphFormat.json:
        print_json(g.to_dict())
    else:
        echo(to_mermaid(g) if format == GraphFormat.mermaid else to_dot(g))


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
    state: StateOpt = None,
) -> None:
    """Every version of an agent with who registered it, when, why and what changed.

    Example: arxctl agents history triage-cs-01
    """
    from arxctl.registry.diff import diff

    store, registry, _ = _registry(state)
    versions = registry.versions(store, "Agent", name)
    rows = []
    previous = None
    for v in versions:
        changes = diff(previous.doc, v.doc) if previous else []
        rows.append({"version": v.version, "ts": v.ts, "actor": v.actor, "reason": v.reason, "digest": v.digest,
                     "changes": changes})
        previous = v
    if output == Output.json:
        print_json(rows)
    elif output == Output.yaml:
        print_yaml(rows)
    else:
        table(["VERSION", "TIME", "BY", "REASON", "CHANGES"],
              [[r["version"], r["ts"], r["actor"], r["reason"] or "",
                "; ".join(f"{c['op']} {c['path']}" for c in r["changes"]) or ("initial" if r["version"] == 1 else "")]
               for r in rows])


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    to: Annotated[int, typer.Option("--to", help="The version whose content becomes current again.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded with the diff in the chain.")],
    as_: ActorOpt = None,
    state: StateOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Make a new version equal to an earlier one, recorded with who, why and the diff.

    Example: arxctl agents rollback triage-cs-01 --to 1 --reason "v2 widened the graph by mistake"
    """
    store, registry, _ = _registry(state)
    stored, changes = registry.rollback(store, name, to, actor=actor(as_), reason=reason)
    echo(f"agent/{name} rolled back to the content of v{to} as v{stored.version} (chain seq {stored.seq})")
    if not quiet:
        for c in changes:
            echo(f"  {c['op']} {c['path']}")
