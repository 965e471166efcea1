"""`arxctl policy`: explain which rules can fire for an agent's action and the scores it can reach."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import CatalogOpt, StateOpt, echo, print_json, table
from arxctl.commands.decide import Env

app = typer.Typer(help="Explain the enforced policy set.", no_args_is_help=True)


class ExplainOutput(StrEnum):
    table = "table"
    json = "json"


@app.command()
def explain(
    agent: Annotated[str, typer.Option("--agent", help="Registered agent name.")],
    action: Annotated[str, typer.Option("--action", help="Action, e.g. aws.s3.put_bucket_acl.")],
    env: Annotated[Env | None, typer.Option("--env", help="Target env, if the call names one.")] = None,
    policy: Annotated[
        list[Path] | None, typer.Option("--policy", help="Explain the Policies in these files or folders.")
    ] = None,
    output: Annotated[ExplainOutput, typer.Option("--output", "-o", help="table or json.")] = ExplainOutput.table,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Show the rules that could fire for an agent's action and the score range of that action.

    The range runs from a quiet session (frequency 0) to a saturated one (frequency at its cap).

    Example: arxctl policy explain --agent cloud-posture-remediation --action aws.s3.put_bucket_acl
    """
    from arxctl.errors import ValidationFailed
    from arxctl.policy import state as engine
    from arxctl.registry import resources as registry
    from arxctl.store.sqlite import existing_store

    store = existing_store(state)
    try:
        cat = engine.extend_catalog(registry.catalog(store), catalog or [])
        docs = engine.load_policy_paths(policy, [], cat) if policy else None
    except ValidationFailed as exc:
        for diag in exc.diagnostics:
            typer.echo(diag.render(), err=True)
        typer.echo("error: the --policy files are not valid", err=True)
        raise typer.Exit(2) from None
    result = engine.explain_action(store, agent, action, policy_docs=docs, catalog=cat, env=str(env) if env else None)
    data = result.to_dict()
    if output == ExplainOutput.json:
        print_json(data)
        return
    echo(f"agent     {data['agent']} ({data['status']})")
    declared = (
        "declared in the manifest" if data["declared"]
        else "NOT declared: denied (not-in-manifest) unless a grant covers it"
    )
    echo(f"action    {data['action']}, {declared}")
    if data["operation"] is not None:
        target = data["target"]
        echo(f"inputs    operation {data['operation']}, data class {data['data_class']}, "
             f"target {target['system']} ({target['env']})")
        low, high = data["score_range"]["min"], data["score_range"]["max"]
        verdicts = data["threshold_verdicts"]
        echo(f"score     {low['total']}..{high['total']}  (operation {low['operation']} + connector "
             f"{low['connector']} + frequency {low['frequency']}..{high['frequency']} + target {low['target']})")
        echo(f"by score  {verdicts['min']}..{verdicts['max']}  "
             f"(review {data['thresholds']['review']}, deny {data['thresholds']['deny']})")
    echo(f"policies  {', '.join(data['policies']) or '-'}")
    echo(f"revision  {data['policy_revision']}")
    if not data["rules"]:
        echo("rules     none can fire")
        return
    table(
        ["POLICY", "RULE", "WHEN", "IF", "OUTCOME"],
        [[r["policy"], r["rule"], r["when"], r["if"] or "(always)", _outcome(r)] for r in data["rules"]],
    )


def _outcome(rule: dict) -> str:
    if rule.get("error"):
        return f"DENY (policy-error: {rule['error']})"
    if rule["outcome"] == "deny":
        return f"DENY: {rule.get('reason', '')}"
    approval = rule["approval"]
    return f"APPROVAL_REQUIRED ({approval['severity'] or '-'}, {approval['approvers']['group']})"
