"""Drift: observed activity compared with each agent's declared manifest, severities by fixed rules, and the response.

The bar is the declared manifest, never rolling history: an agent's own past behaviour never makes a
deviation normal. Every observed call counts, whatever its verdict (an attempt outside the manifest is drift
even when the platform denied it).
"""

from __future__ import annotations

import itertools
import sqlite3
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from arxctl import ndjson
from arxctl.canonical import digest
from arxctl.clock import format_ts, parse_ts
from arxctl.errors import InputError
from arxctl.policy.catalog import Catalog
from arxctl.policy.engine import (
    DECOMMISSIONED,
    UNKNOWN_OPERATION,
    AgentInfo,
    EngineState,
    Grant,
)

SEVERITIES = ("low", "medium", "high", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}
DEFAULT_RESPONSES = {"low": "alert", "medium": "throttle", "high": "suspend", "critical": "suspend"}
ENV_RANK = {"dev": 0, "staging": 1, "prod": 2}

AGENT_UNKNOWN = "agent-unknown"
AGENT_DECOMMISSIONED = "agent-decommissioned"
UNDECLARED_CONNECTOR = "undeclared-connector"
UNDECLARED_ACTION = "undeclared-action"
NEW_OPERATION_CLASS = "new-operation-class"
UNDECLARED_TARGET = "undeclared-target"
RATE_EXCEEDED = "rate-exceeded"
KINDS = (
    AGENT_UNKNOWN, AGENT_DECOMMISSIONED, UNDECLARED_CONNECTOR, UNDECLARED_ACTION, NEW_OPERATION_CLASS,
    UNDECLARED_TARGET, RATE_EXCEEDED,
)

UNDECLARED_ACTION_SEVERITY = {"read": "low", "write": "medium", "destructive": "high", "containment": "high"}
NEW_OPERATION_SEVERITY = {"read": "low", "write": "medium", "destructive": "critical", "containment": "critical"}
UNKNOWN_OPERATION_SEVERITY = "high"
RATE_TIERS = ((10.0, "critical"), (5.0, "high"), (2.0, "medium"))
MINUTE_US = 60_000_000
MAX_SUBJECTS = 256
MAX_UNKNOWN_AGENTS = 1024
OTHERS = "(others)"
OTHER_AGENTS = "(other unregistered agents)"
VERDICT_CACHE = 65_536
LATENESS_US = 600_000_000

DECISION = "decision"
DRIFT_DETECTED = "drift.detected"
DRIFT_CHECKED = "drift.checked"
WEBHOOK_DELIVERY = "webhook.delivery"
DEFAULT_ACTOR = "arxctl-drift"
UNKNOWN = "unknown"
CLEARANCES = {"agent.reactivated": "reactivation", "agent.unthrottled": "unthrottle"}
_BATCH = 5000
_READ_SIZE = 1 << 15
_CHUNK_SIZE = 1 << 17
"""Activity is inflated in small chunks: a drift check holds one at a time, its memory stays flat and small."""


Observation = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Event:
    """One observed connector call (formats.md section 5), with where it was read from."""

    ts: datetime
    agent: str
    action: str
    system: str | None
    env: str | None
    operation: str | None
    payload: Any
    where: str
    grant: str | None = None


@dataclass(frozen=True, slots=True)
class Declared:
    """What an agent's manifest declares that drift compares against."""

    info: AgentInfo
    operations: frozenset[str]
    per_minute: int | None
    per_day: int | None
    responses: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.info.name


def declared_from_doc(doc: Mapping[str, Any], status: str, catalog: Catalog) -> Declared:
    """The drift bar of one registered Agent resource: its actions, operation classes, rate and drift map."""
    info = AgentInfo.from_doc(doc, status=status)
    spec = doc.get("spec") or {}
    rate = spec.get("rate") or {}
    operations = frozenset(
        catalog.actions[a].operation if a in catalog.actions else UNKNOWN_OPERATION for a in info.actions
    )
    responses = {**DEFAULT_RESPONSES, **(spec.get("drift") or {})}
    return Declared(info, operations, rate.get("perMinute"), rate.get("perDay"), responses)


@dataclass(slots=True)
class Finding:
    """One kind of deviation by one agent about one subject, aggregated over every call that showed it."""

    agent: str
    kind: str
    subject: str
    severity: str
    detail: str
    count: int
    first_ts: datetime
    last_ts: datetime
    first_at: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "subject": self.subject, "severity": self.severity, "detail": self.detail,
            "count": self.count, "first_ts": format_ts(self.first_ts), "last_ts": format_ts(self.last_ts),
            "first_at": self.first_at, **self.data,
        }


@dataclass(frozen=True, slots=True)
class AgentDrift:
    """Every finding of one agent, its overall severity and the response its manifest asks for."""

    agent: str
    status: str
    severity: str
    response: str
    webhook: bool
    findings: tuple[Finding, ...]

    @property
    def report_id(self) -> str:
        """Stable id of this agent's findings: the same evidence always gets the same id."""
        basis = [self.agent, [[f.kind, f.subject, f.severity, f.count, format_ts(f.first_ts),
                               format_ts(f.last_ts)] for f in self.findings]]
        return "drift-" + digest(basis)[7:27]

    def summary(self) -> str:
        """The findings in a few words, for chain reasons and alerts."""
        return ", ".join(f"{f.kind} {f.subject}" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "report_id": self.report_id, "status": self.status, "severity": self.severity,
            "response": self.response, "webhook": self.webhook, "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of one drift check."""

    source: str
    events: int
    agents_seen: int
    first_ts: datetime | None
    last_ts: datetime | None
    agents: tuple[AgentDrift, ...]

    @property
    def drift(self) -> bool:
        return bool(self.agents)

    def by_severity(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for agent in self.agents:
            counts[agent.severity] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "events": self.events, "agents_seen": self.agents_seen,
            "window": {
                "from": format_ts(self.first_ts) if self.first_ts else None,
                "to": format_ts(self.last_ts) if self.last_ts else None,
            },
            "drift": self.drift, "by_severity": self.by_severity(),
            "agents": [a.to_dict() for a in self.agents],
        }


def max_severity(severities: Iterable[str]) -> str:
    return max(severities, key=RANK.__getitem__)


def rate_severity(ratio: float) -> str | None:
    """Severity of a peak rate `ratio` times the declared one; None at or under the declared rate."""
    for floor, severity in RATE_TIERS:
        if ratio >= floor:
            return severity
    return "low" if ratio > 1.0 else None


def target_severity(declared_env: str | None, declared_system: str | None, env: str | None,
                    system: str | None) -> tuple[str, str] | None:
    """(severity, why) when a call's target lies outside the manifest entry's declared target, else None."""
    found: list[tuple[str, str]] = []
    if env is not None and declared_env is not None and env != declared_env:
        if env not in ENV_RANK:
            found.append(("medium", f"env '{env}' is not one of dev, staging, prod (declared {declared_env})"))
        elif ENV_RANK[env] > ENV_RANK.get(declared_env, 2):
            found.append(("high", f"env {env} is riskier than the declared {declared_env}"))
        else:
            found.append(("low", f"env {env} instead of the declared {declared_env}"))
    if system is not None and declared_system is not None and system != declared_system:
        found.append(("medium", f"system {system} instead of the declared {declared_system}"))
    if not found:
        return None
    severity = max_severity(s for s, _ in found)
    return severity, "; ".join(why for _, why in found)


class Analyzer:
    """Streams events through the manifest checks; memory holds findings and rate windows, never the events."""

    def __init__(self, agents: Mapping[str, Declared], state: EngineState, source: str = "activity") -> None:
        self.agents = agents
        self.state = state
        self.catalog = state.catalog
        self.grants: Mapping[str, tuple[Grant, ...]] = state.grants
        self.source = source
        self.events = 0
        self.first_ts: datetime | None = None
        self.last_ts: datetime | None = None
        self._seen: set[str] = set()
        self._unknown = 0
        self._unknown_overflow = 0
        self._subjects: dict[tuple[str, str], int] = {}
        self._findings: dict[tuple[str, str, str], Finding] = {}
        self._times: dict[str, list[int]] = {}
        self._minute_peak: dict[str, tuple[int, datetime, str]] = {}
        self._days: dict[tuple[str, str], int] = {}
        self._day_first: dict[tuple[str, str], tuple[datetime, str]] = {}
        self._verdicts: dict[tuple[str, str, str | None, str | None, str | None], tuple[Any, Any]] = {}

    def feed(self, events: Iterable[Event]) -> Analyzer:
        for event in events:
            self.observe(event)
        return self

    def observe(self, event: Event) -> None:
        """Check one call against its agent's manifest."""
        self.events += 1
        ts = event.ts
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        name = event.agent
        declared = self.agents.get(name)
        if declared is None:
            if name not in self._seen and self._unknown >= MAX_UNKNOWN_AGENTS:
                self._unknown_overflow += 1
                self._add(event, AGENT_UNKNOWN, OTHERS, "critical", "more unregistered agents than the report lists",
                          agent=OTHER_AGENTS)
                return
            if name not in self._seen:
                self._unknown += 1
                self._seen.add(name)
            self._add(event, AGENT_UNKNOWN, name, "critical", f"agent '{name}' is not registered")
            return
        self._seen.add(name)
        info = declared.info
        if info.status == DECOMMISSIONED:
            self._add(event, AGENT_DECOMMISSIONED, name, "critical", f"agent '{name}' is decommissioned")
            return
        self._count_rate(declared, event)
        key = (name, event.action, event.system, event.env, event.operation)
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= VERDICT_CACHE:
                self._verdicts.clear()
            verdict = self._verdicts[key] = self._compare(declared, event)
        outside, beyond = verdict
        if outside and event.grant is None and not any(
                g.covers(event.action, event.payload, ts) for g in self.grants.get(name, ())):
            for kind, subject, severity, detail in outside:
                self._add(event, kind, subject, severity, detail)
        for kind, subject, severity, detail in beyond:
            self._add(event, kind, subject, severity, detail)

    def _compare(self, declared: Declared, event: Event) -> tuple[tuple[Observation, ...], tuple[Observation, ...]]:
        """What one kind of call shows against the manifest: (findings an active grant can cover, the others).

        Depends only on (agent, action, system, env, operation), so it is computed once per such key.
        """
        info = declared.info
        action = event.action
        target = {"system": event.system, "env": event.env} if event.system or event.env else None
        operation = self.state.resolve(info, action, target, event.operation).operation
        known = self.catalog.actions.get(action)
        connector = known.connector if known is not None else action.partition(".")[0]
        coverable: list[Observation] = []
        other: list[Observation] = []
        if action not in info.actions:
            if connector not in info.connectors:
                coverable.append((UNDECLARED_CONNECTOR, connector, "high",
                                  f"connector {connector} is not in the manifest (first call: {action})"))
            else:
                severity = UNDECLARED_ACTION_SEVERITY.get(operation, UNKNOWN_OPERATION_SEVERITY)
                coverable.append((UNDECLARED_ACTION, action, severity,
                                  f"{action} ({operation}) is not declared for connector {connector}"))
        if operation not in declared.operations:
            have = ", ".join(sorted(declared.operations)) or "none"
            (coverable if action not in info.actions else other).append((
                NEW_OPERATION_CLASS, operation, NEW_OPERATION_SEVERITY.get(operation, UNKNOWN_OPERATION_SEVERITY),
                f"{operation} calls (first: {action}); the manifest declares {have}"))
        entry = info.actions.get(action) or info.connectors.get(connector)
        if entry is not None:
            outside = target_severity(entry.env, entry.system, event.env, event.system)
            if outside is not None:
                subject = f"{connector} {event.system or entry.system}/{event.env or entry.env}"
                other.append((UNDECLARED_TARGET, subject, outside[0], f"{action}: {outside[1]}"))
        return tuple(coverable), tuple(other)

    def _add(self, event: Event, kind: str, subject: str, severity: str, detail: str, agent: str | None = None) -> None:
        """Count one call in its finding; past MAX_SUBJECTS subjects of one kind, new ones share one finding."""
        agent = agent or event.agent
        key = (agent, kind, subject)
        found = self._findings.get(key)
        if found is None:
            listed = self._subjects.get((agent, kind), 0)
            if listed >= MAX_SUBJECTS:
                key = (agent, kind, OTHERS)
                subject, detail = OTHERS, f"more distinct {kind} subjects than the {MAX_SUBJECTS} listed"
                found = self._findings.get(key)
            else:
                self._subjects[(agent, kind)] = listed + 1
        if found is None:
            self._findings[key] = Finding(agent, kind, subject, severity, detail, 1, event.ts, event.ts, event.where)
            return
        found.count += 1
        if RANK[severity] > RANK[found.severity]:
            found.severity, found.detail = severity, detail
        if event.ts < found.first_ts:
            found.first_ts, found.first_at = event.ts, event.where
        if event.ts > found.last_ts:
            found.last_ts = event.ts

    def _count_rate(self, declared: Declared, event: Event) -> None:
        name = declared.name
        if declared.per_minute is not None:
            n, end = self._minute_count(name, round(event.ts.timestamp() * 1_000_000))
            peak = self._minute_peak.get(name)
            if peak is None or n > peak[0]:
                self._minute_peak[name] = (n, datetime.fromtimestamp(end / 1_000_000, UTC), event.where)
        if declared.per_day is not None:
            key = (name, event.ts.date().isoformat())
            self._days[key] = self._days.get(key, 0) + 1
            first = self._day_first.get(key)
            if first is None or event.ts < first[0]:
                self._day_first[key] = (event.ts, event.where)

    def _minute_count(self, name: str, t_us: int) -> tuple[int, int]:
        """The most calls in a window of less than 60 s ending at a call, among the windows this call joins.

        Order-independent for calls up to 10 minutes out of order; older times are dropped so memory stays flat.
        """
        times = self._times.setdefault(name, [])
        insort(times, t_us)
        best = (bisect_right(times, t_us) - bisect_right(times, t_us - MINUTE_US), t_us)
        later = bisect_right(times, t_us)
        if later < len(times):
            for i in range(later, bisect_left(times, t_us + MINUTE_US)):
                end = times[i]
                count = bisect_right(times, end) - bisect_right(times, end - MINUTE_US)
                if count > best[0]:
                    best = (count, end)
        horizon = times[-1] - MINUTE_US - LATENESS_US
        if times[0] < horizon:
            del times[:bisect_left(times, horizon)]
        return best

    def _rate_findings(self) -> Iterator[Finding]:
        for name, (peak, ts, where) in self._minute_peak.items():
            limit = self.agents[name].per_minute
            assert limit is not None
            finding = _rate_finding(name, "perMinute", peak, limit, "in 60 s", ts, ts, where)
            if finding is not None:
                yield finding
        best: dict[str, tuple[int, str]] = {}
        for (name, day), count in self._days.items():
            if name not in best or count > best[name][0] or (count == best[name][0] and day < best[name][1]):
                best[name] = (count, day)
        for name, (count, day) in best.items():
            limit = self.agents[name].per_day
            assert limit is not None
            first_ts, where = self._day_first[(name, day)]
            finding = _rate_finding(name, "perDay", count, limit, f"on {day}", first_ts, first_ts, where)
            if finding is not None:
                yield finding

    def report(self) -> Report:
        """The findings grouped per agent, most severe agents first, then by name."""
        per_agent: dict[str, list[Finding]] = {}
        for finding in [*self._findings.values(), *self._rate_findings()]:
            per_agent.setdefault(finding.agent, []).append(finding)
        out: list[AgentDrift] = []
        for name, findings in per_agent.items():
            findings.sort(key=lambda f: (-RANK[f.severity], KINDS.index(f.kind), f.subject))
            severity = findings[0].severity
            declared = self.agents.get(name)
            if declared is None or declared.info.status == DECOMMISSIONED:
                status = UNKNOWN if declared is None else DECOMMISSIONED
                response = "alert"
            else:
                status = declared.info.status
                response = declared.responses[severity]
            out.append(AgentDrift(name, status, severity, response, severity == "critical", tuple(findings)))
        out.sort(key=lambda a: (-RANK[a.severity], a.agent))
        seen = len(self._seen) + (1 if self._unknown_overflow else 0)
        return Report(self.source, self.events, seen, self.first_ts, self.last_ts, tuple(out))


def _rate_finding(agent: str, subject: str, peak: int, limit: int, span: str, first: datetime, last: datetime,
                  where: str) -> Finding | None:
    ratio = peak / limit
    severity = rate_severity(ratio)
    if severity is None:
        return None
    unit = "min" if subject == "perMinute" else "day"
    detail = f"peak {peak} calls {span}, declared {limit}/{unit} ({ratio:.1f}x)"
    data = {"peak": peak, "declared": limit, "ratio": round(ratio, 2)}
    return Finding(agent, RATE_EXCEEDED, subject, severity, detail, peak, first, last, where, data)


def declared_agents(store: Any, catalog: Catalog) -> dict[str, Declared]:
    """Every registered agent's drift bar, with its lifecycle status."""
    from arxctl.registry import resources as registry

    return {
        head.name: declared_from_doc(version.doc, head.status, catalog)
        for head, version in registry.current(store, "Agent")
    }


def analyze(events: Iterable[Event], agents: Mapping[str, Declared], state: EngineState,
            source: str = "activity") -> Report:
    """Compare a stream of observed calls with the declared manifests."""
    return Analyzer(agents, state, source).feed(events).report()


# ---------------------------------------------------------------- reading activity


def _timestamp(value: Any) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (no offset means UTC)."""
    if not isinstance(value, str):
        raise ValueError("ts must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return parse_ts(value)
    if parsed.tzinfo is UTC:
        return parsed
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def event_from_dict(data: Any, where: str, line: bytes = b"") -> Event:
    """An Event from an activity record; a bad field raises InputError naming the line and column."""
    if type(data) is dict:
        ts, agent, action, operation = data.get("ts"), data.get("agent"), data.get("action"), data.get("operation")
        target = data.get("target")
        system = env = None
        if type(target) is dict:
            system, env = target.get("system"), target.get("env")
        if (type(ts) is str and type(agent) is str and agent and type(action) is str and action
                and (operation is None or type(operation) is str) and (target is None or type(target) is dict)
                and (system is None or type(system) is str) and (env is None or type(env) is str)):
            try:
                moment = _timestamp(ts)
            except ValueError:
                return _checked(data, where, line)
            payload = data.get("payload")
            return Event(moment, agent, action, system or None, env or None, operation,
                         {} if payload is None else payload, where)
    return _checked(data, where, line)


def _checked(data: Any, where: str, line: bytes) -> Event:
    """The slow path of `event_from_dict`: find the first problem and say where it is."""

    def bad(key: str, message: str) -> InputError:
        col = line.find(f'"{key}"'.encode()) + 1 if line else 0
        return InputError(f"{where}:{max(col, 1)}: {message}")

    if not isinstance(data, dict):
        return_type = type(data).__name__
        raise InputError(f"{where}:1: an activity record must be a JSON object, got {return_type}")
    for key in ("ts", "agent", "action"):
        if key not in data:
            raise bad(key, f"activity record is missing field '{key}'")
    try:
        ts = _timestamp(data["ts"])
    except (ValueError, TypeError):
        raise bad("ts", f"ts {data['ts']!r} is not an RFC 3339 timestamp") from None
    agent, action = data["agent"], data["action"]
    if not isinstance(agent, str) or not agent:
        raise bad("agent", "agent must be a non-empty string")
    if not isinstance(action, str) or not action:
        raise bad("action", "action must be a non-empty string")
    target = data.get("target")
    system = env = None
    if target is not None:
        if not isinstance(target, dict):
            raise bad("target", "target must be an object with system and env")
        system, env = target.get("system"), target.get("env")
        if (system is not None and not isinstance(system, str)) or (env is not None and not isinstance(env, str)):
            raise bad("target", "target.system and target.env must be strings")
    operation = data.get("operation")
    if operation is not None and not isinstance(operation, str):
        raise bad("operation", "operation must be a string")
    payload = data.get("payload")
    return Event(ts, agent, action, system or None, env or None, operation, {} if payload is None else payload,
                 where)


@contextmanager
def open_activity(path: Path) -> Iterator[Iterator[bytes]]:
    """The lines of an activity file, streamed; gzip is recognised by its magic bytes, whatever the name."""
    try:
        raw = path.open("rb", buffering=0)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the activity file: {exc.strerror or exc}") from None
    with raw:
        chunks = ndjson.Chunks(raw, read_size=_READ_SIZE, chunk_size=_CHUNK_SIZE)
        yield itertools.chain.from_iterable(lines for lines, _ in ndjson.line_batches(chunks))


def iter_activity(lines: Iterable[bytes], name: str) -> Iterator[Event]:
    """Events from NDJSON lines (a binary stream, or `open_activity`), one line at a time; blank lines are skipped."""
    number = 0
    try:
        for line in lines:
            number += 1
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                col = min(exc.pos, len(line.rstrip(b"\r\n"))) + 1
                raise InputError(f"{name}:{number}:{col}: not valid JSON: {exc.msg}") from None
            yield event_from_dict(data, f"{name}:{number}", line)
    except (OSError, ndjson.GzipDamage) as exc:
        raise InputError(f"{name}:{number + 1}: cannot read the activity stream: {exc}") from None


def iter_chain_decisions(conn: sqlite3.Connection, *, start: int = 1) -> Iterator[Event]:
    """Events from the chain's own `decision` records (what `arxctl decide --record` and gateways write).

    A decision that a grant covered carries the grant's id: the engine saw the payload, so that call is covered.
    """
    next_seq = start
    while True:
        rows = conn.execute(
            "SELECT seq, line FROM chain WHERE type = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (DECISION, next_seq, _BATCH),
        ).fetchall()
        if not rows:
            return
        for seq, line in rows:
            body = orjson.loads(line)["body"]
            target = body.get("target") or {}
            yield Event(
                _timestamp(body["ts"]), str(body["agent"]), str(body["action"]),
                target.get("system"), target.get("env"), body.get("operation"), {}, f"chain seq {seq}",
                body.get("grant"),
            )
        next_seq = rows[-1][0] + 1


def since_filter(events: Iterable[Event], since: datetime | None) -> Iterator[Event]:
    """Only the events at or after `since`."""
    if since is None:
        yield from events
        return
    for event in events:
        if event.ts >= since:
            yield event


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: an RFC 3339 timestamp, or a duration (`24h`, `7d`) counted back from now."""
    from arxctl.durations import DURATION_SYNTAX, parse_duration

    value = text.strip()
    if DURATION_SYNTAX.match(value):
        return now - parse_duration(value)
    try:
        return parse_ts(value)
    except ValueError:
        raise InputError(f"--since {text!r}: use an RFC 3339 timestamp or a duration such as 24h or 7d") from None


def check(
    store: Any, *, activity: Path | None = None, from_chain: bool = False, since: datetime | None = None,
    catalog_files: Iterable[Path] = (),
) -> Report:
    """Run the drift check on an activity file or on the chain's decision records against the registry."""
    from arxctl.policy import state as engine_state
    from arxctl.registry import resources as registry

    if (activity is None) == (not from_chain):
        raise InputError("give exactly one of --activity FILE or --from-chain")
    if from_chain and store is None:
        raise InputError("--from-chain needs a state store with recorded decisions (none found)")
    catalog = engine_state.extend_catalog(registry.catalog(store), list(catalog_files))
    state = engine_state.load_state(store, catalog=catalog)
    agents = declared_agents(store, catalog) if store is not None else {}
    if activity is not None:
        with open_activity(activity) as stream:
            events = since_filter(iter_activity(stream, str(activity)), since)
            return analyze(events, agents, state, source=str(activity))
    return analyze(since_filter(iter_chain_decisions(store.conn), since), agents, state, source="chain")


# ---------------------------------------------------------------- responding


@dataclass(frozen=True, slots=True)
class Applied:
    """What `--apply` did for one agent."""

    agent: str
    report_id: str
    severity: str
    response: str
    outcome: str
    detected_seq: int
    already_recorded: bool
    action_seq: int | None = None
    webhook: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "report_id": self.report_id, "severity": self.severity,
            "response": self.response, "outcome": self.outcome, "detected_seq": self.detected_seq,
            "already_recorded": self.already_recorded, "action_seq": self.action_seq, "webhook": self.webhook,
        }


def _recorded(conn: sqlite3.Connection, record_type: str, agent: str | None, report_id: str) -> list[dict[str, Any]]:
    """Bodies (with seq and hash) of the records of one type that belong to a drift report, oldest first."""
    where = "agent = ?" if agent is not None else "agent IS NULL"
    args: tuple[Any, ...] = (agent,) if agent is not None else ()
    rows = conn.execute(
        f"SELECT seq, hash, line FROM chain WHERE {where} AND type = ? AND line LIKE ? ORDER BY seq",
        (*args, record_type, f'%"report_id":"{report_id}"%'),
    ).fetchall()
    out = []
    for seq, hash_, line in rows:
        body = orjson.loads(line)["body"]
        if body.get("report_id") == report_id:
            out.append({**body, "seq": seq, "hash": hash_})
    return out


def _cleared(conn: sqlite3.Connection, agent: str) -> tuple[str, str, int] | None:
    """(ts, what, seq) of the last time a person lifted a suspension or throttle of the agent."""
    row = conn.execute(
        "SELECT ts, type, seq FROM chain WHERE agent = ? AND type IN (?, ?) ORDER BY seq DESC LIMIT 1",
        (agent, *CLEARANCES),
    ).fetchone()
    return (row[0], CLEARANCES[row[1]], row[2]) if row else None


def webhook_payload(drift: AgentDrift, detected: Mapping[str, Any], ts: str) -> dict[str, Any]:
    """The JSON body of the `drift.detected` webhook."""
    return {
        "type": DRIFT_DETECTED, "id": drift.report_id, "ts": ts, "agent": drift.agent,
        "severity": drift.severity, "response": drift.response, "status": drift.status,
        "findings": [f.to_dict() for f in drift.findings],
        "chain": {"seq": detected["seq"], "hash": detected["hash"]},
    }


def apply(
    store: Any, report: Report, *, actor: str, ts: str, webhook: Any = None,
    deadline: timedelta | None = None, deliver: Callable[..., Any] | None = None,
) -> list[Applied]:
    """Act on a report per each manifest's drift map; running it again on the same evidence changes nothing.

    Records `drift.checked` for the run, then per agent in one transaction: `drift.detected` (once per report
    id) and the throttle or suspension through `registry.lifecycle`, skipped when the same report was handled
    before, when it or something stronger is in force, or when a person reactivated (or unthrottled) the agent
    after the newest evidence. Critical drift then POSTs the signed webhook (`webhook` is the config's section)
    unless a delivery of the same report already succeeded; every attempt is a `webhook.delivery` record.
    """
    from arxctl.chain import store as chain

    with store.transaction() as conn:
        chain.append(conn, chain.Entry(DRIFT_CHECKED, None, actor, {
            "source": report.source, "events": report.events, "agents_seen": report.agents_seen,
            "agents_drifted": len(report.agents), "by_severity": report.by_severity(),
            "reports": [a.report_id for a in report.agents],
        }, ts))
    results: list[Applied] = []
    for drift in report.agents:
        applied, detected = _apply_one(store, drift, actor=actor, ts=ts)
        if drift.webhook:
            sent = _fire_webhook(store, drift, detected, actor=actor, ts=ts, webhook=webhook, deadline=deadline,
                                 deliver=deliver)
            applied = replace(applied, webhook=sent)
        results.append(applied)
    return results


def _apply_one(store: Any, drift: AgentDrift, *, actor: str, ts: str) -> tuple[Applied, dict[str, Any]]:
    from arxctl.chain import store as chain
    from arxctl.registry import lifecycle

    report_id = drift.report_id
    registered = drift.status not in (UNKNOWN, DECOMMISSIONED)
    subject = drift.agent if registered else None
    reason = f"drift {drift.severity} ({report_id}): {drift.summary()}"
    with store.transaction() as conn:
        earlier = _recorded(conn, DRIFT_DETECTED, subject, report_id)
        if earlier:
            detected = earlier[0]
        else:
            body = {"report_id": report_id, **drift.to_dict()}
            record = chain.append(conn, chain.Entry(DRIFT_DETECTED, subject, actor, body, ts))
            detected = {"seq": record.seq, "hash": record.hash}
        action_seq = None
        cleared = _cleared(conn, drift.agent) if registered else None
        if earlier:
            outcome = f"skipped: this report was handled at chain seq {detected['seq']}"
        elif drift.response == "alert" or not registered:
            outcome = "alerted"
        elif cleared is not None and parse_ts(cleared[0]) >= max(f.last_ts for f in drift.findings):
            outcome = f"skipped: the evidence predates the {cleared[1]} at {cleared[0]} (chain seq {cleared[2]})"
        else:
            held = lifecycle.status(conn, drift.agent)
            if held.status != lifecycle.ACTIVE:
                outcome = f"skipped: already {held.status}"
            elif drift.response == "throttle" and held.throttled:
                outcome = "skipped: already throttled"
            elif drift.response == "throttle":
                action_seq = lifecycle.throttle(conn, drift.agent, actor=actor, reason=reason, source="drift",
                                                ts=ts).seq
                outcome = "throttled"
            else:
                action_seq = lifecycle.suspend(conn, drift.agent, actor=actor, reason=reason, source="drift",
                                               ts=ts).seq
                outcome = "suspended"
    applied = Applied(drift.agent, report_id, drift.severity, drift.response, outcome, detected["seq"],
                      bool(earlier), action_seq)
    return applied, detected


def _fire_webhook(store: Any, drift: AgentDrift, detected: Mapping[str, Any], *, actor: str, ts: str,
                  webhook: Any, deadline: timedelta | None, deliver: Callable[..., Any] | None) -> dict[str, Any]:
    from arxctl.chain import store as chain
    from arxctl.registry import webhook as hooks

    report_id = drift.report_id
    subject = drift.agent if drift.status not in (UNKNOWN, DECOMMISSIONED) else None
    done = [d for d in _recorded(store.conn, WEBHOOK_DELIVERY, subject, report_id) if d.get("outcome") == "delivered"]
    if done:
        return {"delivery": report_id, "delivered": True, "outcome": "skipped",
                "detail": f"already delivered (chain seq {done[0]['seq']})", "attempts": 0}

    def record(attempt: hooks.Attempt) -> None:
        with store.transaction() as conn:
            chain.append(conn, chain.Entry(WEBHOOK_DELIVERY, subject, actor, {
                "report_id": report_id, "event": DRIFT_DETECTED, "agent": drift.agent, **attempt.to_dict(),
            }, attempt.ts))

    try:
        target = hooks.target_from_config(webhook, deadline=deadline or hooks.DEFAULT_DEADLINE)
    except InputError as exc:
        result = hooks.not_sent(report_id, getattr(webhook, "url", None), str(exc))
        record(result.attempts[0])
        return result.to_dict()
    payload = webhook_payload(drift, detected, ts)
    return (deliver or hooks.deliver)(target, payload, on_attempt=record).to_dict()
