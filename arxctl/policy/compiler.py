"""Compiling Policies into an indexed rule set: CEL compiled once, rules looked up by action."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from arxctl.canonical import digest
from arxctl.policy.applicability import applies, effective_thresholds
from arxctl.policy.risk import RiskModel

CEL_VARIABLES = frozenset({"payload", "agent", "target", "session", "action", "operation", "now"})
STATIC_VARIABLES = frozenset({"agent", "target", "action", "operation"})
MAP_VARIABLES = frozenset({"payload", "agent", "target", "session"})
DENY, APPROVAL_REQUIRED, ALLOW = "DENY", "APPROVAL_REQUIRED", "ALLOW"
RANK = {ALLOW: 0, APPROVAL_REQUIRED: 1, DENY: 2}
VERDICTS = (ALLOW, APPROVAL_REQUIRED, DENY)
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
_GLOB_CHARS = frozenset("*?[")
_FIELD = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()")


@dataclass(frozen=True, slots=True)
class Approval:
    """What an approvalRequired outcome asks for: severity, approver group, timeout, diff shown."""

    severity: str | None
    group: str | None
    timeout: str | None
    diff_shown: bool
    policy: str | None = None
    rule: str | None = None

    @property
    def rank(self) -> int:
        return SEVERITY_RANK.get(self.severity or "", -1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "rule": self.rule, "severity": self.severity,
            "approvers": {"group": self.group}, "timeout": self.timeout,
            "diffShownToApprover": self.diff_shown,
        }


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule ready to evaluate: its `when`, compiled `if`, the variables it needs and its outcome."""

    policy: str
    name: str
    when: str
    source: str | None
    program: Any  # cel.Program, or None when the rule has no `if` or it failed to compile
    needs: frozenset[str]
    verdict: str  # DENY or APPROVAL_REQUIRED
    deny_reason: str | None
    approval: Approval | None
    compile_error: str | None = None
    index: int = 0
    fields: tuple[tuple[str, frozenset[str] | None], ...] = ()
    static: bool = False  # the `if` reads only agent, action, operation and target: its result is memoizable

    def __post_init__(self) -> None:
        object.__setattr__(self, "static", self.program is not None and self.needs <= STATIC_VARIABLES)

    @property
    def ref(self) -> str:
        return f"{self.policy}/{self.name}"

    @property
    def outcome(self) -> str:
        return "deny" if self.verdict == DENY else "approvalRequired"

    def matches_action(self, action: str) -> bool:
        return fnmatch.fnmatchcase(action, self.when)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    name: str
    spec: Mapping[str, Any]
    rules: tuple[CompiledRule, ...]


@dataclass(frozen=True, slots=True)
class Candidates:
    """The rules one (action, agent labels) pair can meet, and the CEL variables their `if`s read.

    `fields` lists, per variable read by the non-memoizable programs, the top-level keys they read
    (None: the whole value), so each call converts only what the expressions can see.
    """

    rules: tuple[CompiledRule, ...]
    fields: tuple[tuple[str, frozenset[str] | None], ...]
    dynamic: int


@dataclass(slots=True)
class CompiledPolicySet:
    """Every policy compiled, rules indexed by exact action and by glob, with the set's revision."""

    policies: tuple[CompiledPolicy, ...]
    model: RiskModel
    revision: str
    exact: dict[str, tuple[CompiledRule, ...]]
    globs: tuple[tuple[re.Pattern[str], CompiledRule], ...]
    _by_action: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict, repr=False)
    _by_labels: dict[tuple[tuple[str, str], ...], tuple[frozenset[str], int, int]] = field(
        default_factory=dict, repr=False
    )
    _candidates: dict[tuple[str, tuple[tuple[str, str], ...]], Candidates] = field(
        default_factory=dict, repr=False
    )

    def rules_for(self, action: str) -> tuple[CompiledRule, ...]:
        """Every rule whose `when` matches the action, whatever the agent (globs matched once per action)."""
        found = self._by_action.get(action)
        if found is None:
            rules = list(self.exact.get(action, ()))
            rules.extend(rule for pattern, rule in self.globs if pattern.fullmatch(action))
            found = tuple(sorted(rules, key=_rule_key))
            self._by_action[action] = found
        return found

    def applicable(self, labels_key: tuple[tuple[str, str], ...]) -> tuple[frozenset[str], int, int]:
        """The names of the policies that apply to agents with these labels, and their (review, deny)."""
        found = self._by_labels.get(labels_key)
        if found is None:
            labels = dict(labels_key)
            chosen = [p for p in self.policies if applies(p.spec, labels)]
            review, deny = effective_thresholds([p.spec for p in chosen])
            found = (frozenset(p.name for p in chosen), review, deny)
            self._by_labels[labels_key] = found
        return found

    def candidates(self, action: str, labels_key: tuple[tuple[str, str], ...]) -> Candidates:
        """The rules a call with this action by an agent with these labels can meet."""
        key = (action, labels_key)
        found = self._candidates.get(key)
        if found is None:
            names = self.applicable(labels_key)[0]
            rules = tuple(r for r in self.rules_for(action) if r.policy in names)
            dynamic = [r for r in rules if r.program is not None and not r.static]
            found = Candidates(rules, merge_fields(r.fields for r in dynamic), len(dynamic))
            self._candidates[key] = found
        return found

    def rule_count(self) -> int:
        return sum(len(p.rules) for p in self.policies)


def _rule_key(rule: CompiledRule) -> tuple[str, str]:
    return (rule.policy, rule.name)


def is_glob(when: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in when)


def accessed_keys(source: str, variable: str) -> frozenset[str] | None:
    """The top-level keys an expression reads from a map variable, or None when it may read all of it.

    Only `variable.key` accesses can be narrowed; any other use (indexing, `size(...)`, a method call,
    the name inside a string literal) keeps the whole value, so narrowing never changes a result.
    """
    keys: set[str] = set()
    for m in re.finditer(rf"\b{variable}\b", source):
        if m.start() > 0 and source[m.start() - 1] == ".":
            continue
        access = _FIELD.match(source, m.end())
        if access is None:
            return None
        keys.add(access.group(1))
    return frozenset(keys)


def merge_fields(
    groups: Iterable[tuple[tuple[str, frozenset[str] | None], ...]],
) -> tuple[tuple[str, frozenset[str] | None], ...]:
    """The union of several programs' variable shapes (None, the whole value, absorbs any key set)."""
    merged: dict[str, frozenset[str] | None] = {}
    for fields in groups:
        for name, keys in fields:
            if name not in merged:
                merged[name] = keys
            else:
                have = merged[name]
                merged[name] = None if have is None or keys is None else have | keys
    return tuple(sorted(merged.items()))


def compile_expression(source: str) -> tuple[Any, frozenset[str], str | None]:
    """Compile a CEL `if`: (program, known variables it reads, error message or None)."""
    import cel

    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        return None, frozenset(), f"CEL does not compile: {str(exc).splitlines()[0]}"
    return program, frozenset(program.variables()) & CEL_VARIABLES, None


def _compile_rule(policy: str, rule: Mapping[str, Any]) -> CompiledRule:
    then = rule.get("then") or {}
    source = rule.get("if")
    program, needs, error = (None, frozenset(), None)
    fields: tuple[tuple[str, frozenset[str] | None], ...] = ()
    if source is not None:
        program, needs, error = compile_expression(str(source))
        fields = tuple(
            (name, accessed_keys(str(source), name) if name in MAP_VARIABLES else None)
            for name in sorted(needs)
        )
    if "deny" in then:
        deny = then.get("deny") or {}
        return CompiledRule(policy, rule["name"], rule["when"], source, program, needs, DENY,
                            str(deny.get("reason") or ""), None, error, fields=fields)
    ask = then.get("approvalRequired")
    if not isinstance(ask, Mapping):
        return CompiledRule(policy, rule["name"], rule["when"], source, program, needs, DENY, None, None,
                            f"rule has no known outcome in `then` ({', '.join(sorted(then)) or 'empty'})",
                            fields=fields)
    approval = Approval(
        severity=ask.get("severity"),
        group=(ask.get("approvers") or {}).get("group"),
        timeout=ask.get("timeout"),
        diff_shown=bool(ask.get("diffShownToApprover", False)),
        policy=policy,
        rule=rule["name"],
    )
    return CompiledRule(policy, rule["name"], rule["when"], source, program, needs, APPROVAL_REQUIRED, None,
                        approval, error, fields=fields)


def normalized_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec with its rules sorted by name: rule order never matters, so it never changes the revision."""
    out = dict(spec)
    if spec.get("rules"):
        out["rules"] = sorted(spec["rules"], key=lambda r: (str(r.get("name")), digest(r)))
    return out


def revision(policies: Iterable[tuple[str, Mapping[str, Any]]], model: RiskModel) -> str:
    """sha256 over the canonical JSON of the sorted (name, normalized spec) list plus the risk model."""
    items = sorted(([name, normalized_spec(spec)] for name, spec in policies), key=lambda item: item[0])
    return digest({"policies": items, "risk_model": model.to_dict()})


def compile_policies(docs: Sequence[Mapping[str, Any]], model: RiskModel | None = None) -> CompiledPolicySet:
    """Compile Policy resources (or `{"metadata": {"name"}, "spec"}` mappings) into an indexed rule set."""
    model = model or RiskModel()
    policies: list[CompiledPolicy] = []
    for doc in docs:
        name = str(doc["metadata"]["name"])
        spec = doc.get("spec") or {}
        rules = tuple(sorted((_compile_rule(name, r) for r in spec.get("rules") or []), key=_rule_key))
        policies.append(CompiledPolicy(name, spec, rules))
    policies.sort(key=lambda p: p.name)
    index = 0
    for i, policy in enumerate(policies):
        numbered = []
        for rule in policy.rules:
            numbered.append(dataclasses.replace(rule, index=index))
            index += 1
        policies[i] = CompiledPolicy(policy.name, policy.spec, tuple(numbered))
    exact: dict[str, list[CompiledRule]] = {}
    globs: list[tuple[re.Pattern[str], CompiledRule]] = []
    for policy in policies:
        for rule in policy.rules:
            if is_glob(rule.when):
                globs.append((re.compile(fnmatch.translate(rule.when)), rule))
            else:
                exact.setdefault(rule.when, []).append(rule)
    return CompiledPolicySet(
        policies=tuple(policies),
        model=model,
        revision=revision(((p.name, p.spec) for p in policies), model),
        exact={action: tuple(rules) for action, rules in exact.items()},
        globs=tuple(globs),
    )
