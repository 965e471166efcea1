"""Static checks on a Policy: rules that can never change an outcome (ARX152, a warning)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from arxctl.diagnostics import Diagnostic, Severity
from arxctl.policy.catalog import Catalog
from arxctl.policy.compiler import compile_expression
from arxctl.policy.risk import RiskModel
from arxctl.resources.yamlio import Document, json_path_str

RULE = "ARX152"


def lowest_score(model: RiskModel, operation: str) -> int:
    """The lowest score a call of this operation class can get: least sensitive data and target, quiet session."""
    return (
        model.operation_risk(operation) + min(model.connector.values()) + model.session_frequency(1)
        + min(model.target.values())
    )


def _matched_actions(when: str, catalog: Catalog) -> set[str]:
    return {a for a in catalog.actions if fnmatch.fnmatchcase(a, when)}


def _diag(doc: Document, path: list[str | int], message: str) -> Diagnostic:
    line, col = doc.position(path)
    return Diagnostic(doc.path, line, col, RULE, Severity.warning, message, json_path_str(path))


def _rule_label(rule: Mapping[str, Any], index: int) -> str:
    """How a message names a rule: by its name, or by its index when the name is not a string."""
    name = rule.get("name")
    return f"rule '{name}'" if isinstance(name, str) else f"rules[{index}]"


def _always_false(source: str) -> bool:
    program, needs, error = compile_expression(source)
    if program is None or error or needs or program.variables():
        return False
    try:
        return program.execute({}) is False
    except Exception:
        return False


def never_changes_outcome(
    doc: Document, spec: Mapping[str, Any], catalog: Catalog, model: RiskModel | None = None
) -> list[Diagnostic]:
    """Rules that can never change a verdict: an `if` that is always false, rules on actions that every
    call already denies by score (the policy's own deny threshold), approvals shadowed by an unconditional
    deny in the same policy."""
    model = model or RiskModel()
    raw_rules = spec.get("rules")
    rules = [r if isinstance(r, Mapping) else {} for r in raw_rules] if isinstance(raw_rules, list) else []
    thresholds = spec.get("thresholds")
    deny_value = thresholds.get("deny") if isinstance(thresholds, Mapping) else None
    deny = deny_value if type(deny_value) is int else None  # a boolean is not a threshold
    matches: list[set[str]] = [
        _matched_actions(r["when"], catalog) if isinstance(r.get("when"), str) else set() for r in rules
    ]
    blanket = [
        (i, r) for i, r in enumerate(rules)
        if "if" not in r and isinstance(r.get("then"), Mapping) and "deny" in r["then"] and matches[i]
    ]
    out: list[Diagnostic] = []
    for i, rule in enumerate(rules):
        if not isinstance(rule.get("then"), Mapping):
            continue
        base: list[str | int] = ["spec", "rules", i]
        source = rule.get("if")
        if isinstance(source, str) and _always_false(source):
            out.append(_diag(doc, [*base, "if"], "the `if` is always false, so the rule never fires"))
            continue
        actions = matches[i]
        if not actions:
            continue
        if deny is not None:
            lowest = min(lowest_score(model, catalog.actions[a].operation) for a in actions)
            if lowest >= deny:
                out.append(_diag(
                    doc, [*base, "when"],
                    f"every action '{rule['when']}' matches scores at least {lowest}, already at the deny "
                    f"threshold {deny}: the rule can never change the verdict",
                ))
                continue
        if "approvalRequired" in rule["then"]:
            for k, other in blanket:
                if k != i and actions <= matches[k]:
                    out.append(_diag(
                        doc, [*base, "then"],
                        f"{_rule_label(other, k)} denies every action this rule matches, unconditionally: "
                        "the approval is never asked for",
                    ))
                    break
    return out
