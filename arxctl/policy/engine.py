"""The decision engine: one pure `decide(call, state)` for every path (formats.md sections 3, 4 and 6)."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from arxctl.canonical import digest
from arxctl.clock import format_ts, parse_ts
from arxctl.errors import InputError
from arxctl.policy.catalog import Catalog, builtin
from arxctl.policy.compiler import (
    ALLOW,
    APPROVAL_REQUIRED,
    DENY,
    RANK,
    Approval,
    Candidates,
    CompiledPolicySet,
    CompiledRule,
    compile_policies,
)
from arxctl.policy.masking import redact_text
from arxctl.policy.risk import RiskModel, band

ACTIVE, DECOMMISSIONED = "active", "decommissioned"
FIXED_SCORE = 100
INTERCEPT_REASONS = frozenset({"agent-unknown", "agent-suspended", "agent-decommissioned", "not-in-manifest"})
REASONS = (*sorted(INTERCEPT_REASONS), "threshold", "rule", "throttled", "grant", "approval", "policy-error")
UNKNOWN_OPERATION = "unknown"
UNKNOWN_ENV = "unknown"
FALLBACK_DATA_CLASS = "restricted"
THRESHOLD_APPROVAL = Approval(severity=None, group=None, timeout=None, diff_shown=True)
_US = 1_000_000
CACHE_LIMIT = 65_536
_MISSING = object()


@dataclass(slots=True)
class Call:
    """One connector call to decide: who, what, when, with which arguments and against which target."""

    ts: datetime | str
    agent: str
    action: str
    payload: Any = field(default_factory=dict)
    session: str = ""
    target: Mapping[str, Any] | None = None
    operation: str | None = None
    decision_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Call:
        """A call from an activity record (formats.md section 5); a recorded `verdict` is ignored."""
        try:
            return cls(
                ts=data["ts"], agent=str(data["agent"]), action=str(data["action"]),
                payload=data.get("payload") if data.get("payload") is not None else {},
                session=str(data.get("session") or ""), target=data.get("target"),
                operation=data.get("operation"), decision_id=data.get("decision_id"),
            )
        except KeyError as exc:
            raise InputError(f"activity record is missing field {exc.args[0]!r}") from None


@dataclass(frozen=True, slots=True)
class ConnectorEntry:
    """An agent's manifest entry for one connector: the data class and target it declared."""

    connector: str
    data_class: str | None
    system: str | None
    env: str | None


@dataclass(slots=True)
class AgentInfo:
    """What the engine needs of a registered agent, indexed for lookups per call."""

    name: str
    labels: dict[str, str]
    owner: dict[str, Any]
    status: str
    throttled: bool
    connectors: dict[str, ConnectorEntry]
    actions: dict[str, ConnectorEntry]
    labels_key: tuple[tuple[str, str], ...] = ()
    cel: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], status: str = ACTIVE, throttled: bool = False) -> AgentInfo:
        """From an Agent resource; `spec.lifecycle: decommissioned` wins over any status."""
        metadata = doc.get("metadata") or {}
        spec = doc.get("spec") or {}
        if spec.get("lifecycle") == DECOMMISSIONED:
            status = DECOMMISSIONED
        connectors: dict[str, ConnectorEntry] = {}
        actions: dict[str, ConnectorEntry] = {}
        for item in spec.get("connectors") or []:
            target = item.get("target") or {}
            entry = ConnectorEntry(
                item["name"], item.get("dataClass"), target.get("system"), target.get("env")
            )
            connectors.setdefault(entry.connector, entry)
            for action in item.get("actions") or []:
                actions.setdefault(action, entry)
        labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
        owner = dict(spec.get("owner") or {})
        name = str(metadata["name"])
        return cls(
            name=name, labels=labels, owner=owner, status=status, throttled=throttled,
            connectors=connectors, actions=actions, labels_key=tuple(sorted(labels.items())),
            cel={"name": name, "labels": labels, "owner": owner},
        )


@dataclass(frozen=True, slots=True)
class Grant:
    """A temporary scoped permission; active iff Approved and approved_at <= ts < expires_at."""

    id: str
    agent: str
    actions: frozenset[str]
    scope: Mapping[str, Any]
    phase: str
    approved_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grant:
        return cls(
            id=str(data["id"]), agent=str(data["agent"]), actions=frozenset(data.get("actions") or ()),
            scope=dict(data.get("scope") or {}), phase=str(data.get("phase") or "Pending"),
            approved_at=_as_datetime(data.get("approved_at")),
            expires_at=_as_datetime(data.get("expires_at")),
        )

    def active_at(self, ts: datetime) -> bool:
        return (
            self.phase == "Approved" and self.approved_at is not None and self.expires_at is not None
            and self.approved_at <= ts < self.expires_at
        )

    def covers(self, action: str, payload: Any, ts: datetime) -> bool:
        """Active at `ts`, lists the action, and every scope field equals the payload's (same type)."""
        if action not in self.actions or not self.active_at(ts):
            return False
        if not self.scope:
            return True
        if not isinstance(payload, Mapping):
            return False
        for key, want in self.scope.items():
            if key not in payload:
                return False
            have = payload[key]
            if type(have) is not type(want) or have != want:
                return False
        return True


@dataclass(frozen=True, slots=True)
class ApprovedCall:
    """An approved, unconsumed approval: it authorizes the one call it was requested for, once, until
    `usable_until` (same agent, action, payload digest and resolved target)."""

    id: str
    agent: str
    action: str
    payload_digest: str
    system: str
    env: str
    usable_until: datetime

    def matches(self, action: str, payload_digest: str | None, r: Resolved, ts: datetime) -> bool:
        return (
            self.action == action and self.payload_digest == payload_digest and self.system == r.system
            and self.env == r.env and ts < self.usable_until
        )


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value
    return parse_ts(str(value))


class SessionWindow:
    """Timestamps of earlier calls per (agent, session), owned by the caller so replays are deterministic.

    Exact for calls that arrive up to `lateness_s` seconds out of timestamp order; older entries are dropped
    so memory stays flat over long replays.
    """

    __slots__ = ("_calls", "_newest", "_seen", "lateness_us")

    SWEEP_EVERY = 4096

    def __init__(self, lateness_s: float = 3600.0) -> None:
        self._calls: dict[tuple[str, str], list[int]] = {}
        self._newest = -(2**63)
        self._seen = 0
        self.lateness_us = int(lateness_s * _US)

    def observe(self, agent: str, session: str, t_us: int, window_us: int) -> int:
        """Record a call at `t_us` (epoch us); return n = 1 + earlier calls less than a window before it."""
        key = (agent, session)
        times = self._calls.get(key)
        if times is None:
            self._calls[key] = [t_us]
            n = 1
        elif t_us >= times[-1]:
            n = len(times) - bisect_right(times, t_us - window_us) + 1
            times.append(t_us)
        else:
            n = bisect_right(times, t_us) - bisect_right(times, t_us - window_us) + 1
            insort(times, t_us)
        if times is not None:
            horizon = times[-1] - window_us - self.lateness_us
            if times[0] <= horizon - window_us:
                del times[: bisect_right(times, horizon)]
        if t_us > self._newest:
            self._newest = t_us
        self._seen += 1
        if self._seen % self.SWEEP_EVERY == 0:
            self._sweep(window_us)
        return n

    def _sweep(self, window_us: int) -> None:
        horizon = self._newest - window_us - self.lateness_us
        for key in [k for k, v in self._calls.items() if v[-1] <= horizon]:
            del self._calls[key]

    def count(self, agent: str, session: str) -> int:
        """How many calls are held for a session (for tests and diagnostics)."""
        return len(self._calls.get((agent, session), ()))

    def __len__(self) -> int:
        return len(self._calls)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The scoring inputs of a call: operation class, data class and target, and their fixed components."""

    operation: str
    data_class: str
    system: str
    env: str
    operation_score: int = 0
    connector_score: int = 0
    target_score: int = 0


@dataclass(frozen=True, slots=True)
class EngineState:
    """Everything `decide` reads: agents, compiled policies, catalog, grants and the session window.

    Build a new state when agents, policies, catalog or grants change (`dataclasses.replace` is fine);
    the session window is the only part a decision changes. Not thread-safe: one state per thread.
    """

    agents: Mapping[str, AgentInfo]
    policies: CompiledPolicySet
    catalog: Catalog
    grants: Mapping[str, tuple[Grant, ...]]
    window: SessionWindow
    approvals: Mapping[str, tuple[ApprovedCall, ...]] = field(default_factory=dict)
    resolved: dict[tuple[Any, ...], Resolved] = field(init=False, default_factory=dict, repr=False)
    memo: dict[tuple[Any, ...], bool | str] = field(init=False, default_factory=dict, repr=False)
    grant_index: dict[tuple[str, str], tuple[Grant, ...]] = field(init=False, default_factory=dict, repr=False)

    @classmethod
    def build(
        cls, agents: Iterable[AgentInfo] = (), policies: CompiledPolicySet | None = None,
        catalog: Catalog | None = None, grants: Iterable[Grant | Mapping[str, Any]] = (),
        window: SessionWindow | None = None, approvals: Iterable[ApprovedCall] = (),
    ) -> EngineState:
        """A state from agents, compiled policies, a catalog (default built-in), grants (or grant dicts) and
        approved calls."""
        approved: dict[str, list[ApprovedCall]] = {}
        for approval in approvals:
            approved.setdefault(approval.agent, []).append(approval)
        by_agent: dict[str, list[Grant]] = {}
        for item in grants:
            grant = item if isinstance(item, Grant) else Grant.from_dict(item)
            by_agent.setdefault(grant.agent, []).append(grant)
        return cls(
            agents={a.name: a for a in agents},
            policies=policies if policies is not None else compile_policies([]),
            catalog=catalog or builtin(),
            grants={k: tuple(sorted(v, key=lambda g: g.id)) for k, v in by_agent.items()},
            window=window if window is not None else SessionWindow(),
            approvals={k: tuple(sorted(v, key=lambda a: a.id)) for k, v in approved.items()},
        )

    def resolve(
        self, agent: AgentInfo, action: str, target: Mapping[str, Any] | None, operation: str | None
    ) -> Resolved:
        """`resolve()` with the fixed score components, cached per (agent, action, target, operation)."""
        env = system = None
        if target:
            env, system = target.get("env"), target.get("system")
        key = (agent.name, action, env, system, operation)
        found = self.resolved.get(key)
        if found is None:
            if len(self.resolved) >= CACHE_LIMIT:
                self.resolved.clear()
            found = resolve(agent, action, self.catalog, target, operation, self.policies.model)
            self.resolved[key] = found
        return found


@dataclass(slots=True)
class Decision:
    """The verdict and every input that produced it; `to_record()` is the formats.md section 6 record."""

    ts: datetime
    agent: str
    session: str
    action: str
    verdict: str
    reason: str
    operation_score: int
    connector_score: int
    frequency_score: int
    target_score: int
    fixed_score: int
    total: int
    review: int
    deny: int
    matched: tuple[CompiledRule, ...]
    policy_revision: str
    payload_digest: str | None
    session_count: int
    resolved: Resolved | None = None
    approval: Approval | None = None
    grant: str | None = None
    message: str | None = None
    decision_id: str | None = None
    approval_id: str | None = None

    @property
    def rules(self) -> list[str]:
        return [m.name for m in self.matched]

    @property
    def id(self) -> str:
        """The caller's decision id, else one derived from the record's fields (replays get the same ids)."""
        if self.decision_id:
            return self.decision_id
        basis = [
            format_ts(self.ts), self.agent, self.session, self.action, self.payload_digest, self.session_count
        ]
        return "d-" + digest(basis)[7:39]

    def score(self) -> dict[str, int]:
        out = {
            "operation": self.operation_score, "connector": self.connector_score,
            "frequency": self.frequency_score, "target": self.target_score, "total": self.total,
        }
        if self.fixed_score:
            out["fixed"] = self.fixed_score
        return out

    def explanation(self) -> str:
        """One sentence saying why, for people (the record's `message`)."""
        if self.message:
            return self.message
        reason = self.reason
        if reason == "agent-unknown":
            return f"agent '{self.agent}' is not registered"
        if reason in ("agent-suspended", "agent-decommissioned"):
            return f"agent '{self.agent}' is {reason.removeprefix('agent-')}"
        if reason == "not-in-manifest":
            return (f"'{self.action}' is not declared in the manifest of '{self.agent}' "
                    "and no active grant covers it")
        if reason == "grant":
            return f"grant '{self.grant}' covers the call"
        if reason == "approval":
            return f"approval '{self.approval_id}' authorizes this exact call once"
        if reason == "rule":
            first = next(m for m in self.matched if m.verdict == self.verdict)
            why = f": {first.deny_reason}" if first.deny_reason else ""
            return f"rule {first.ref} requires {self.verdict}{why}"
        if reason == "throttled":
            operation = self.resolved.operation if self.resolved else UNKNOWN_OPERATION
            return f"agent '{self.agent}' is throttled: its {operation} calls need approval"
        if self.verdict == DENY:
            return f"score {self.total} >= deny threshold {self.deny}"
        if self.verdict == APPROVAL_REQUIRED:
            return f"score {self.total} >= review threshold {self.review}"
        return f"score {self.total} < review threshold {self.review}"

    def to_record(self) -> dict[str, Any]:
        """The decision record: formats.md section 6 fields, then extras for auditors and approvers."""
        record: dict[str, Any] = {
            "decision_id": self.id,
            "ts": format_ts(self.ts),
            "agent": self.agent,
            "session": self.session,
            "action": self.action,
            "verdict": self.verdict,
            "reason": self.reason,
            "score": self.score(),
            "thresholds": {"review": self.review, "deny": self.deny},
            "rules": self.rules,
            "policy_revision": self.policy_revision,
            "payload_digest": self.payload_digest,
            "message": self.explanation(),
            "matched": [{"policy": m.policy, "rule": m.name, "outcome": m.outcome} for m in self.matched],
            "session_count": self.session_count,
        }
        if self.resolved is not None:
            record["operation"] = self.resolved.operation
            record["data_class"] = self.resolved.data_class
            record["target"] = {"system": self.resolved.system, "env": self.resolved.env}
        if self.approval is not None:
            record["approval"] = self.approval.to_dict()
        if self.grant is not None:
            record["grant"] = self.grant
        if self.approval_id is not None:
            record["approval_id"] = self.approval_id
        return record


def resolve(
    agent: AgentInfo, action: str, catalog: Catalog, target: Mapping[str, Any] | None, operation: str | None,
    model: RiskModel,
) -> Resolved:
    """Operation from the catalog (a riskier `operation` on the call wins); data class and target from the
    manifest entry, else the catalog; the call's target env wins over the manifest's."""
    info = catalog.actions.get(action)
    entry = agent.actions.get(action)
    if info is not None:
        op = info.operation
        if operation is not None and model.operation_risk(operation) > model.operation_risk(op):
            op = operation
        connector = info.connector
    else:
        op = operation if operation is not None else UNKNOWN_OPERATION
        connector = action.partition(".")[0]
    if entry is None:
        entry = agent.connectors.get(connector)
    data_class = entry.data_class if entry is not None and entry.data_class else None
    if data_class is None:
        if info is not None:
            data_class = info.data_class
        else:
            known = catalog.connectors.get(connector)
            data_class = known.data_class if known is not None else FALLBACK_DATA_CLASS
    env = system = None
    if target:
        env = target.get("env")
        system = target.get("system")
    if entry is not None:
        env = env or entry.env
        system = system or entry.system
    env = str(env or UNKNOWN_ENV)
    return Resolved(
        op, data_class, str(system or connector), env,
        model.operation_risk(op), model.connector_sensitivity(data_class), model.target_sensitivity(env),
    )


def components(model: RiskModel, r: Resolved, n: int) -> tuple[int, int, int, int]:
    """The four risk components (formats.md section 3) for resolved inputs and session count n."""
    return r.operation_score, r.connector_score, model.session_frequency(n), r.target_score


def _covering_grant(state: EngineState, agent: str, action: str, payload: Any, ts: datetime) -> str | None:
    key = (agent, action)
    candidates = state.grant_index.get(key)
    if candidates is None:
        if len(state.grant_index) >= CACHE_LIMIT:
            state.grant_index.clear()
        candidates = tuple(g for g in state.grants.get(agent, ()) if action in g.actions)
        state.grant_index[key] = candidates
    for grant in candidates:
        if grant.covers(action, payload, ts):
            return grant.id
    return None


def _approved_call(state: EngineState, agent: str, action: str, payload_digest: str | None, r: Resolved,
                   ts: datetime) -> str | None:
    for approval in state.approvals.get(agent, ()):
        if approval.matches(action, payload_digest, r, ts):
            return approval.id
    return None


def _intercept(call: Call, ts: datetime, reason: str, n: int, review: int, deny: int, revision: str,
               payload_digest: str | None) -> Decision:
    return Decision(
        ts, call.agent, call.session, call.action, DENY, reason, 0, 0, 0, 0, FIXED_SCORE, FIXED_SCORE,
        review, deny, (), revision, payload_digest, n, decision_id=call.decision_id,
    )


def call_time(call: Call) -> datetime:
    """The call's timestamp as an aware UTC datetime (naive datetimes are taken as UTC)."""
    ts = call.ts
    if isinstance(ts, datetime):
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
    if isinstance(ts, str) and ts.endswith("Z"):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is UTC:
            return parsed
    try:
        return parse_ts(ts)
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"call ts {ts!r} is not an RFC 3339 timestamp") from None


def decide(call: Call, state: EngineState, *, session_count: int | None = None) -> Decision:
    """Decide a call in the order of formats.md section 4; never ALLOW on an error; no I/O inside.

    `session_count` is n when the caller has already observed the call in its own session window (a replay
    deciding one call under several policy sets); the state's window is then left untouched.
    """
    ts = call_time(call)
    policies = state.policies
    model = policies.model
    if session_count is None:
        n = state.window.observe(call.agent, call.session, round(ts.timestamp() * _US),
                                 round(model.frequency_window_s * _US))
    else:
        n = session_count
    payload = call.payload
    try:
        payload_digest: str | None = digest(payload)
    except TypeError:
        payload_digest = None
    agent = state.agents.get(call.agent)
    if agent is None:
        _, review, deny = policies.applicable(())
        return _intercept(call, ts, "agent-unknown", n, review, deny, policies.revision, payload_digest)
    _, review, deny = policies.applicable(agent.labels_key)
    if agent.status != ACTIVE:
        reason = "agent-decommissioned" if agent.status == DECOMMISSIONED else "agent-suspended"
        return _intercept(call, ts, reason, n, review, deny, policies.revision, payload_digest)
    action = call.action
    grant: str | None = None
    if action not in agent.actions:
        grant = _covering_grant(state, agent.name, action, payload, ts)
        if grant is None:
            return _intercept(call, ts, "not-in-manifest", n, review, deny, policies.revision, payload_digest)

    r = state.resolve(agent, action, call.target, call.operation)
    frequency = model.session_frequency(n)
    total = r.operation_score + r.connector_score + frequency + r.target_score
    rank = RANK[band(total, review, deny)]

    error: str | None = None
    if payload_digest is None or not isinstance(payload, Mapping):
        error = "payload is not a JSON object"
        matched: list[CompiledRule] = []
    else:
        candidates = policies.candidates(action, agent.labels_key)
        matched, error = _evaluate(candidates, state, agent, r, call, n, ts) if candidates.rules else ([], None)
    rule_rank = 0
    for m in matched:
        if m.verdict == DENY:
            rule_rank = 2
            break
        rule_rank = 1
    throttled = agent.throttled and r.operation != "read"
    verdict = max(rank, rule_rank, 1 if throttled else 0)
    approval: Approval | None = None
    approved: str | None = None
    if error is not None:
        final, reason = DENY, "policy-error"
    elif verdict == 2:
        final, reason = DENY, "rule" if rule_rank == 2 else "threshold"
    elif verdict == 1:
        final = APPROVAL_REQUIRED
        reason = "rule" if rule_rank == 1 else "threshold" if rank == 1 else "throttled"
        if grant is None:
            grant = _covering_grant(state, agent.name, action, payload, ts)
        if grant is not None:
            final, reason = ALLOW, "grant"
        else:
            approved = _approved_call(state, agent.name, action, payload_digest, r, ts)
            if approved is not None:
                final, reason = ALLOW, "approval"
            else:
                approval = _approval(matched) if rule_rank == 1 else THRESHOLD_APPROVAL
    else:
        final, reason = ALLOW, "grant" if grant is not None else "threshold"
    return Decision(
        ts, call.agent, call.session, action, final, reason,
        r.operation_score, r.connector_score, frequency, r.target_score, 0, total, review, deny,
        tuple(matched), policies.revision, payload_digest, n, r, approval, grant, error, call.decision_id,
        approved,
    )


def _evaluate(
    candidates: Candidates, state: EngineState, agent: AgentInfo, r: Resolved, call: Call, n: int, ts: datetime,
) -> tuple[list[CompiledRule], str | None]:
    """The candidate rules whose `if` holds, and the first evaluation error (rules are in a fixed order).

    Programs that read only agent, action, operation and target are memoized per state; the others share
    one set of variables, built once per call and narrowed to the keys their expressions read.
    """
    matched: list[CompiledRule] = []
    error: str | None = None
    context: Any = None
    memo = state.memo
    for rule in candidates.rules:
        if rule.compile_error is not None:
            error = error or f"rule {rule.ref}: {rule.compile_error}"
            continue
        program = rule.program
        if program is not None:
            if rule.static:
                key = (rule.index, agent.name, call.action, r.operation, r.system, r.env)
                result = memo.get(key, _MISSING)
                if result is _MISSING:
                    if len(memo) >= CACHE_LIMIT:
                        memo.clear()
                    result = _run(rule, _variables(rule.fields, agent, r, call, n, ts), None)
                    memo[key] = result
            else:
                if context is None:
                    context = _variables(candidates.fields, agent, r, call, n, ts)
                    if candidates.dynamic > 1:
                        try:
                            context = _shared_context(context)
                        except Exception as exc:
                            text = f"cannot build the CEL context: {type(exc).__name__}: {exc}"
                            return matched, error or redact_text(text[:500], call.payload)
                result = _run(rule, context, call.payload)
            if result is not True:
                if result is not False:
                    error = error or result  # type: ignore[assignment]
                continue
        matched.append(rule)
    return matched, error


def _run(rule: CompiledRule, context: Any, payload: Any) -> bool | str:
    """True or False, or the error message (payload values redacted) when the `if` fails or is not boolean."""
    try:
        result = rule.program.execute(context)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        message = f"rule {rule.ref}: {type(exc).__name__}: {text}"[:500]
        return redact_text(message, payload) if payload is not None else message
    if result is True or result is False:
        return result
    return f"rule {rule.ref}: `if` returned {type(result).__name__}, not a boolean"


def _shared_context(values: dict[str, Any]) -> Any:
    import cel

    return cel.Context(values)


def _narrow(value: Mapping[str, Any], keys: frozenset[str] | None) -> Any:
    if keys is None:
        return value
    return {k: value[k] for k in keys if k in value}


def _variables(fields: tuple[tuple[str, frozenset[str] | None], ...], agent: AgentInfo, r: Resolved,
               call: Call, n: int, ts: datetime) -> dict[str, Any]:
    """The CEL variables named in `fields`, each narrowed to the keys the expressions read."""
    values: dict[str, Any] = {}
    for name, keys in fields:
        if name == "payload":
            values["payload"] = _narrow(call.payload, keys)
        elif name == "agent":
            values["agent"] = _narrow(agent.cel, keys)
        elif name == "target":
            values["target"] = _narrow({"system": r.system, "env": r.env}, keys)
        elif name == "session":
            values["session"] = _narrow({"id": call.session, "count": n}, keys)
        elif name == "action":
            values["action"] = call.action
        elif name == "operation":
            values["operation"] = r.operation
        elif name == "now":
            values["now"] = format_ts(ts)
    return values


def _approval(matched: list[CompiledRule]) -> Approval:
    """The most severe matched approvalRequired outcome (ties: the first by policy and rule name)."""
    best: Approval | None = None
    for rule in matched:
        if rule.approval is not None and (best is None or rule.approval.rank > best.rank):
            best = rule.approval
    return best or THRESHOLD_APPROVAL


@dataclass(frozen=True, slots=True)
class Explanation:
    """Which rules could fire for an (agent, action) and the score range that action can reach."""

    agent: str
    action: str
    status: str | None
    declared: bool
    resolved: Resolved | None
    score_range: tuple[dict[str, int], dict[str, int]] | None
    review: int
    deny: int
    rules: tuple[CompiledRule, ...]
    policies: tuple[str, ...]
    policy_revision: str

    @property
    def verdict_range(self) -> tuple[str, str] | None:
        if self.score_range is None:
            return None
        low, high = self.score_range
        return band(low["total"], self.review, self.deny), band(high["total"], self.review, self.deny)

    def to_dict(self) -> dict[str, Any]:
        verdicts = self.verdict_range
        return {
            "agent": self.agent,
            "action": self.action,
            "status": self.status,
            "declared": self.declared,
            "operation": self.resolved.operation if self.resolved else None,
            "data_class": self.resolved.data_class if self.resolved else None,
            "target": {"system": self.resolved.system, "env": self.resolved.env} if self.resolved else None,
            "score_range": (
                {"min": self.score_range[0], "max": self.score_range[1]} if self.score_range else None
            ),
            "thresholds": {"review": self.review, "deny": self.deny},
            "threshold_verdicts": {"min": verdicts[0], "max": verdicts[1]} if verdicts else None,
            "policies": list(self.policies),
            "rules": [
                {"policy": r.policy, "rule": r.name, "when": r.when, "if": r.source, "outcome": r.outcome,
                 **({"reason": r.deny_reason} if r.deny_reason else {}),
                 **({"approval": r.approval.to_dict()} if r.approval else {}),
                 **({"error": r.compile_error} if r.compile_error else {})}
                for r in self.rules
            ],
            "policy_revision": self.policy_revision,
        }


def _score(model: RiskModel, r: Resolved, n: int) -> dict[str, int]:
    operation, connector, frequency, target = components(model, r, n)
    return {"operation": operation, "connector": connector, "frequency": frequency, "target": target,
            "total": operation + connector + frequency + target}


def explain(agent_name: str, action: str, state: EngineState, *, env: str | None = None,
            operation: str | None = None) -> Explanation:
    """Rules that could fire for this agent and action; scores from a quiet to a saturated session."""
    policies = state.policies
    model = policies.model
    agent = state.agents.get(agent_name)
    labels_key = agent.labels_key if agent is not None else ()
    names, review, deny = policies.applicable(labels_key)
    rules = policies.candidates(action, labels_key).rules
    resolved = None
    score_range = None
    if agent is not None:
        resolved = resolve(agent, action, state.catalog, {"env": env} if env else None, operation, model)
        saturated = model.frequency_free_calls + model.frequency_cap
        score_range = (_score(model, resolved, 1), _score(model, resolved, saturated))
    return Explanation(
        agent=agent_name, action=action, status=agent.status if agent else None,
        declared=agent is not None and action in agent.actions, resolved=resolved, score_range=score_range,
        review=review, deny=deny, rules=rules, policies=tuple(sorted(names)),
        policy_revision=policies.revision,
    )
