"""`arxctl decide`: score and decide one connector call against the registered state."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, CatalogOpt, StateOpt, actor, echo, print_json

app = typer.Typer()

EXIT_CODES = {"ALLOW": 0, "DENY": 1, "APPROVAL_REQUIRED": 3}


class DecideOutput(StrEnum):
    table = "table"
    json = "json"


class Env(StrEnum):
    dev = "dev"
    staging = "staging"
    prod = "prod"


class Operation(StrEnum):
    read = "read"
    write = "write"
    destructive = "destructive"
    containment = "containment"


@app.command()
def decide(
    agent: Annotated[str, typer.Option("--agent", help="Registered agent name.")],
    action: Annotated[str, typer.Option("--action", help="Action, e.g. servicenow.change.close.")],
    payload: Annotated[str, typer.Option("--payload", help="The call's arguments: a JSON object, or @file.")] = "{}",
    session: Annotated[str, typer.Option("--session", help="Session id; frequency counts per session.")] = "cli",
    env: Annotated[Env | None, typer.Option("--env", help="Target env of this call.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="Target system of this call.")] = None,
    operation: Annotated[
        Operation | None, typer.Option("--operation", help="Operation class; used when riskier than the catalog's.")
    ] = None,
    policy: Annotated[
        list[Path] | None, typer.Option("--policy", help="Decide with the Policies in these files or folders.")
    ] = None,
    record: Annotated[bool, typer.Option("--record", help="Append the decision record to the audit chain.")] = False,
    current_state: Annotated[
        str | None,
        typer.Option("--current-state", help="With --record: the target's current state (JSON or @file); "
                                             "approvers see the payload's diff against it."),
    ] = None,
    approval: Annotated[
        str | None, typer.Option("--approval", help="With --record: use (and consume) this approved approval.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Project config (default: <state>/config.yaml).")
    ] = None,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 0 for ALLOW, 1 for DENY, 3 for APPROVAL_REQUIRED.")
    ] = False,
    output: Annotated[DecideOutput, typer.Option("--output", "-o", help="table or json.")] = DecideOutput.table,
    as_: ActorOpt = None,
    catalog: CatalogOpt = None,
    state: StateOpt = None,
) -> None:
    """Decide one call: intercept, manifest, score, thresholds, rules, grants (formats.md section 4).

    Prints the decision; `-o json` prints the decision record. Secret-looking payload fields are masked.

    With `--record`, APPROVAL_REQUIRED opens a pending approval bound to this exact call (`arxctl approvals`);
    once approved, the same call recorded again is allowed once and the approval is consumed.

    Exits 0 once a decision is made; with `--exit-code`: 0 ALLOW, 1 DENY, 3 APPROVAL_REQUIRED. Bad input exits 2.

    Example: arxctl decide --agent triage-cs-01 --action servicenow.change.close --payload '{"change_ids":["C1","C2"]}'
    """
    from arxctl.clock import now
    from arxctl.errors import InputError, ValidationFailed
    from arxctl.policy import state as engine
    from arxctl.policy.engine import Call
    from arxctl.registry import config as project
    from arxctl.registry import resources as registry
    from arxctl.registry.approvals import parse_current_state
    from arxctl.store.sqlite import existing_store, open_store

    arguments = engine.parse_payload(payload)
    if not record and (current_state is not None or approval is not None):
        raise InputError("--current-state and --approval need --record (an approval is consumed when used)")
    current = parse_current_state(current_state) if current_state is not None else None
    store = open_store(state) if record else existing_store(state)
    target = {k: str(v) for k, v in (("env", env), ("system", system)) if v}
    try:
        cat = engine.extend_catalog(registry.catalog(store), catalog or [])
        docs = engine.load_policy_paths(policy, [], cat) if policy else None
    except ValidationFailed as exc:
        _print_diagnostics(exc)
        raise typer.Exit(2) from None
    call = Call(ts=now(), agent=agent, action=action, payload=arguments, session=session,
                target=target or None, operation=str(operation) if operation else None)
    recorded = None
    if record:
        settings = project.load(store.directory, config) if config is not None else None
        recorded = engine.record_call(store, call, policy_docs=docs, catalog=cat, actor=actor(as_),
                                      current_state=current, approval_id=approval, config=settings)
        decision, seq = recorded.decision, recorded.seq
    else:
        decision, seq = engine.decide_call(store, call, policy_docs=docs, catalog=cat)
    if output == DecideOutput.json:
        print_json(decision.to_record())
    else:
        _render(decision, arguments)
    if seq is not None:
        typer.echo(f"recorded as chain seq {seq}", err=True)
    if recorded is not None and recorded.approval is not None:
        a = recorded.approval
        opened = "opened" if recorded.approval_created else "already open"
        typer.echo(f"approval {a.id} {opened}: group {a.group or '-'} must answer by {a.expires_at} "
                   f"(arxctl approvals approve {a.id} --as USER)", err=True)
    if recorded is not None and recorded.consumed is not None:
        typer.echo(f"approval {recorded.consumed} consumed by this call", err=True)
    raise typer.Exit(EXIT_CODES[decision.verdict] if exit_code else 0)


def _print_diagnostics(exc) -> None:
    for diag in exc.diagnostics:
        typer.echo(diag.render(), err=True)
    typer.echo("error: the --policy files are not valid; nothing was decided", err=True)


def _render(decision, arguments: dict) -> None:
    import orjson

    from arxctl.policy.masking import mask

    record = decision.to_record()
    s = record["score"]
    rows = [
        ("verdict", f"{record['verdict']} ({record['reason']})"),
        ("why", record["message"]),
        ("agent", f"{record['agent']}  session {record['session']}"),
        ("action", record["action"]),
    ]
    if "operation" in record:
        target = record["target"]
        rows.append(("inputs", f"operation {record['operation']}, data class {record['data_class']}, "
                               f"target {target['system']} ({target['env']}), "
                               f"call {record['session_count']} in the session window"))
    parts = " + ".join(f"{k} {s[k]}" for k in ("operation", "connector", "frequency", "target", "fixed") if k in s)
    rows.append(("score", f"{s['total']} = {parts}  (review {record['thresholds']['review']}, "
                          f"deny {record['thresholds']['deny']})"))
    matched = ", ".join(f"{m['policy']}/{m['rule']} ({m['outcome']})" for m in record["matched"])
    rows.append(("rules", matched or "-"))
    if "approval" in record:
        a = record["approval"]
        rows.append(("approval", f"severity {a['severity'] or '-'}, approvers {a['approvers']['group'] or '-'}, "
                                 f"timeout {a['timeout'] or '-'}, "
                                 f"diff {'shown' if a['diffShownToApprover'] else 'not shown'}"))
    if "grant" in record:
        rows.append(("grant", record["grant"]))
    rows += [
        ("payload", orjson.dumps(mask(arguments), option=orjson.OPT_SORT_KEYS).decode()),
        ("digest", record["payload_digest"]),
        ("revision", record["policy_revision"]),
        ("decision", record["decision_id"]),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        echo(f"{key.ljust(width)}  {value}")
