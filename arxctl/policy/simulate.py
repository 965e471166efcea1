"""Replaying recorded activity against a baseline and a proposed policy set (`arxctl simulate`, formats.md 8).

Every verdict comes from `engine.decide`. A replay memoizes decide's outcome per call shape: the agent (its
version), the action, the target, the operation, the session-frequency component (or n itself when a rule
reads `session.count`), the payload projected onto the keys the rules read, the session id when a rule reads
it and the recorded verdict when it is the baseline. Calls whose outcome can depend on the time (a grant for
the agent and action, a rule reading `now`) are decided one by one.
"""

from __future__ import annotations

import gc
import multiprocessing
import sqlite3
import sys
import traceback
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec
import orjson

from arxctl.clock import format_ts, parse_ts
from arxctl.durations import parse_duration
from arxctl.errors import InputError
from arxctl.policy.catalog import Catalog
from arxctl.policy.compiler import APPROVAL_REQUIRED, DENY, RANK, VERDICTS, compile_policies
from arxctl.policy.engine import AgentInfo, Call, EngineState, Grant, SessionWindow, decide
from arxctl.policy.masking import mask
from arxctl.policy.risk import RiskModel

if TYPE_CHECKING:
    from arxctl.chain.records import Record
    from arxctl.store.sqlite import Store

RECORDED = "recorded"
UNEVALUABLE = "unevaluable"
DEFAULT_GROUP = "(default)"
RECORDED_GROUP = "(recorded)"
EXAMPLES_PER_FLIP = 3
MALFORMED_LISTED = 50
MEMO_LIMIT = 200_000
PLAN_LIMIT = 100_000
READ_SIZE = 1 << 17
ACTIVITY_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
LIFECYCLE_STATUS = {"agent.suspended": "suspended", "agent.reactivated": "active",
                    "agent.decommissioned": "decommissioned"}
LIFECYCLE_THROTTLE = {"agent.throttled": True, "agent.unthrottled": False}
_US = 1_000_000
_DAY_US = 86_400 * _US
_FAR = 2**62
_EMPTY = msgspec.Raw(b"{}")
_ABSENT = ("absent",)
_VERDICT_SET = frozenset(VERDICTS)
_GZIP_MAGIC = b"\x1f\x8b"
_NO_FIELDS: dict[str, msgspec.Raw] = {}

Outcome = tuple[str, str, tuple[str, ...], str | None]
"""(verdict, reason, matched rule refs, approver group when the verdict is APPROVAL_REQUIRED)."""
CellKey = tuple[str, str, Outcome, Outcome]
"""(agent, action, baseline outcome, proposed outcome)."""


class Target(msgspec.Struct, gc=False):
    """A call's target (formats.md section 5); other fields are ignored."""

    system: str | None = None
    env: str | None = None


class Activity(msgspec.Struct, gc=False):
    """One activity record; each payload field stays raw JSON until a rule or a decision needs it."""

    ts: datetime
    agent: str
    action: str
    session: str | None = None
    target: Target | None = None
    operation: str | None = None
    payload: dict[str, msgspec.Raw] | None = None
    verdict: str | None = None


class _OddActivity(msgspec.Struct, gc=False):
    """An activity record whose payload is not a JSON object (the engine denies it with `policy-error`)."""

    ts: datetime
    agent: str
    action: str
    session: str | None = None
    target: Target | None = None
    operation: str | None = None
    payload: msgspec.Raw = _EMPTY
    verdict: str | None = None


class _Recorded(msgspec.Struct, gc=False):
    """The fields of a chain `decision` record's body that a replay reads."""

    ts: datetime
    agent: str
    action: str
    session: str | None = None
    target: Target | None = None
    operation: str | None = None
    verdict: str | None = None


class _ChainLine(msgspec.Struct, gc=False):
    body: _Recorded


class _Who(msgspec.Struct, gc=False):
    agent: str


class _ChainWho(msgspec.Struct, gc=False):
    body: _Who


_ACTIVITY = msgspec.json.Decoder(Activity)
_ODD_ACTIVITY = msgspec.json.Decoder(_OddActivity)
_CHAIN = msgspec.json.Decoder(_ChainLine)
_PAYLOAD_TYPE = "- at `$.payload`"


def _chain_activity(line: bytes) -> Activity:
    body = _CHAIN.decode(line).body
    return Activity(body.ts, body.agent, body.action, body.session, body.target, body.operation, None, body.verdict)


def _payload_value(payload: dict[str, msgspec.Raw] | None) -> dict[str, Any]:
    """The payload as plain values (raises orjson.JSONDecodeError when a field is not decodable)."""
    if not payload:
        return {}
    return {key: orjson.loads(memoryview(raw)) for key, raw in payload.items()}


# ------------------------------------------------------------------------------------------------ input


@dataclass(frozen=True, slots=True)
class Source:
    """Where activity comes from: a file (NDJSON, optionally gzip), standard input, or the chain's decisions."""

    display: str
    path: Path | None = None
    chain: Path | None = None

    @property
    def payloads(self) -> bool:
        """False for the chain: decision records carry only a payload digest."""
        return self.chain is None

    def size(self) -> int | None:
        if self.path is None:
            return None
        try:
            return self.path.stat().st_size
        except OSError:
            return None


def activity_sources(paths: Sequence[str]) -> list[Source]:
    """Files, folders (every *.ndjson, *.jsonl, optionally .gz, inside, by path) and `-` for standard input."""
    sources: list[Source] = []
    for text in paths:
        if text == "-":
            sources.append(Source("<stdin>"))
            continue
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(ACTIVITY_SUFFIXES))
            if not found:
                raise InputError(f"{path}: no activity files (*.ndjson, *.jsonl, optionally .gz) in this folder")
            sources.extend(Source(str(p), p) for p in found)
        elif path.is_file():
            sources.append(Source(str(path), path))
        else:
            raise InputError(f"{path}: no such file or folder")
    if sum(1 for s in sources if s.path is None) > 1:
        raise InputError("standard input (-) can be given once")
    return sources


def chain_source(state_dir: Path) -> Source:
    return Source("chain", chain=state_dir)


@dataclass(slots=True)
class Chunk:
    """Lines read from one source: `first` is the line number (or chain seq) of `lines[0]` unless `numbers`."""

    source: int
    first: int
    lines: list[bytes]
    utf8: bool
    consumed: int
    numbers: Sequence[int] | None = None


def read_chunks(source: Source, index: int, *, read_size: int = READ_SIZE) -> Iterator[Chunk]:
    """Complete lines of a source in order, decompressing gzip (several members too) in large blocks."""
    if source.chain is not None:
        yield from _chain_chunks(source, index)
        return
    stream: IO[bytes]
    if source.path is None:
        stream = sys.stdin.buffer
    else:
        try:
            stream = source.path.open("rb")
        except OSError as exc:
            raise InputError(f"{source.display}: cannot read: {exc.strerror or exc}") from None
    try:
        yield from _stream_chunks(stream, source, index, read_size)
    finally:
        if source.path is not None:
            stream.close()


def _stream_chunks(stream: IO[bytes], source: Source, index: int, read_size: int) -> Iterator[Chunk]:
    head = stream.read(read_size)
    gzipped = head[:2] == _GZIP_MAGIC
    inflater = zlib.decompressobj(31) if gzipped else None
    consumed = 0
    tail = b""
    line_no = 1
    block = head
    while block:
        consumed += len(block)
        if inflater is not None:
            data = _inflate(inflater, block, source)
            while inflater.eof and inflater.unused_data:
                rest = inflater.unused_data
                inflater = zlib.decompressobj(31)
                data += _inflate(inflater, rest, source)
        else:
            data = block
        if data:
            buffer = tail + data if tail else data
            lines = buffer.split(b"\n")
            tail = lines.pop()
            if lines:
                yield Chunk(index, line_no, lines, _utf8(buffer), consumed)
                line_no += len(lines)
            del buffer, lines
        block = stream.read(read_size)
    if inflater is not None and not inflater.eof:
        raise InputError(f"{source.display}: the gzip stream is truncated (after {line_no - 1} lines)")
    if tail:
        yield Chunk(index, line_no, [tail], _utf8(tail), consumed)


def _inflate(inflater: Any, block: bytes, source: Source) -> bytes:
    try:
        return inflater.decompress(block)
    except zlib.error as exc:
        raise InputError(f"{source.display}: not a valid gzip stream: {exc}") from None


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _chain_chunks(source: Source, index: int, batch: int = 20_000) -> Iterator[Chunk]:
    from arxctl.store.sqlite import Store

    assert source.chain is not None
    store = Store(source.chain, create=False)
    try:
        last = 0
        while True:
            rows = store.conn.execute(
                "SELECT seq, CAST(line AS BLOB) FROM chain WHERE type = 'decision' AND seq > ? ORDER BY seq LIMIT ?",
                (last, batch),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield Chunk(index, 0, [r[1] for r in rows], True, last, numbers=[r[0] for r in rows])
    finally:
        store.close()


def chain_size(state_dir: Path) -> int:
    from arxctl.store.sqlite import Store

    store = Store(state_dir, create=False)
    try:
        return int(store.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM chain").fetchone()[0])
    finally:
        store.close()


# ------------------------------------------------------------------------------------------------ spec


@dataclass(frozen=True, slots=True)
class PolicySource:
    """One side of the comparison: its label for the report and its Policy resources (None: recorded)."""

    label: str
    docs: tuple[dict[str, Any], ...] | None

    @property
    def recorded(self) -> bool:
        return self.docs is None


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """An agent as it was from `since_us` on (None: for the whole replay)."""

    info: AgentInfo
    since_us: int | None = None


@dataclass(frozen=True)
class ReplaySpec:
    """Everything a replay (or one of its worker processes) needs; plain data, so it pickles."""

    baseline: PolicySource
    proposed: PolicySource
    agents: tuple[AgentSnapshot, ...]
    catalog: Catalog
    grants: tuple[Grant, ...] = ()
    as_of_event: bool = False
    since: datetime | None = None
    until: datetime | None = None
    strict: bool = False
    examples: int = EXAMPLES_PER_FLIP
    model: Mapping[str, Any] = field(default_factory=lambda: RiskModel().to_dict())
    registry: str = "current"
    notes: tuple[str, ...] = ()

    def risk_model(self) -> RiskModel:
        return RiskModel.from_dict(dict(self.model))


# ------------------------------------------------------------------------------------------------ replay


class _Plan:
    """How to decide calls of one agent (version) and action: fixed, memoized by a key, or one by one."""

    __slots__ = (
        "agent",
        "constant",
        "fixed",
        "id",
        "keys",
        "mode",
        "needs_n",
        "needs_session",
        "shared",
        "states",
        "uncached",
        "unevaluable",
        "window",
    )

    def __init__(self, pid: int, agent: str, window: SessionWindow | None) -> None:
        self.id = pid
        self.agent = agent
        self.window = window
        self.fixed = -1
        self.constant = False
        self.shared = False
        self.mode = 0
        self.keys: tuple[str, ...] = ()
        self.needs_n = False
        self.needs_session = False
        self.uncached = False
        self.unevaluable: list[Outcome | None] = [None, None]
        self.states: list[EngineState | None] = [None, None]


@dataclass(slots=True)
class _Side:
    """One compiled side: its policies and the engine states per agent snapshot."""

    source: PolicySource
    policies: Any
    catalog: Catalog
    grants: tuple[Grant, ...]
    states: dict[int, EngineState] = field(default_factory=dict)

    def state(self, info: AgentInfo | None) -> EngineState:
        key = id(info)
        found = self.states.get(key)
        if found is None:
            found = EngineState.build([info] if info is not None else [], self.policies, self.catalog, self.grants)
            self.states[key] = found
        return found


@dataclass(slots=True)
class Tally:
    """What one replay process counted; tallies of disjoint agents merge by addition."""

    lines: int = 0
    events: int = 0
    skipped: int = 0
    cells: dict[CellKey, int] = field(default_factory=dict)
    days: dict[tuple[tuple[str | None, str | None], int], int] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[tuple[tuple[int, int], dict[str, Any]]]] = field(default_factory=dict)
    malformed: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    malformed_count: int = 0

    def merge(self, other: Tally, examples: int) -> None:
        self.lines += other.lines
        self.events += other.events
        self.skipped += other.skipped
        for key, n in other.cells.items():
            self.cells[key] = self.cells.get(key, 0) + n
        for key2, n in other.days.items():
            self.days[key2] = self.days.get(key2, 0) + n
        for pair, items in other.examples.items():
            self.examples[pair] = sorted([*self.examples.get(pair, []), *items], key=lambda x: x[0])[:examples]
        self.malformed = sorted([*self.malformed, *other.malformed], key=lambda x: x[0])[:MALFORMED_LISTED]
        self.malformed_count += other.malformed_count


class StrictError(InputError):
    """A malformed line under `--strict`; carries where it is, so workers' first errors can be ordered."""

    def __init__(self, where: tuple[int, int], message: str) -> None:
        self.where = where
        super().__init__(message)


class Replayer:
    """Replays activity chunks in input order within one process (for the agents it is given)."""

    def __init__(self, spec: ReplaySpec, displays: Sequence[str], payloads: bool = True) -> None:
        self.spec = spec
        self.displays = list(displays)
        self.payloads = payloads
        model = spec.risk_model()
        self.window_us = round(model.frequency_window_s * _US)
        self.freq = [model.session_frequency(n) for n in range(model.frequency_free_calls + model.frequency_cap + 1)]
        self.sides = [
            _Side(spec.baseline, None if spec.baseline.recorded else compile_policies(spec.baseline.docs or (), model),
                  spec.catalog, spec.grants),
            _Side(spec.proposed, None if spec.proposed.recorded else compile_policies(spec.proposed.docs or (), model),
                  spec.catalog, spec.grants),
        ]
        self.recorded = spec.baseline.recorded or spec.proposed.recorded
        self.since_us = _epoch_us(spec.since) if spec.since else -_FAR
        self.until_us = _epoch_us(spec.until) if spec.until else _FAR
        self.timeline: dict[str, tuple[list[int], list[AgentInfo]]] = {}
        for snap in spec.agents:
            starts, infos = self.timeline.setdefault(snap.info.name, ([], []))
            starts.append(snap.since_us if snap.since_us is not None else -_FAR)
            infos.append(snap.info)
        self.granted: dict[str, set[str]] = {}
        for grant in spec.grants:
            self.granted.setdefault(grant.agent, set()).update(grant.actions)
        self.windows: dict[str, SessionWindow] = {}
        self.plans: dict[tuple[str, str, int], _Plan] = {}
        self.current: dict[tuple[str, str], _Plan] = {}
        self.plan_ids = 0
        self.memo: dict[tuple[Any, ...], int] = {}
        self.cells: list[CellKey] = []
        self.cell_ids: dict[CellKey, int] = {}
        self.counts: list[int] = []
        self.aclass: list[tuple[str | None, str | None] | None] = []
        self.wants: list[bool] = []
        self.pair_cells: dict[tuple[str, str], list[int]] = {}
        self.outcomes: dict[Outcome, Outcome] = {}
        self.tally = Tally()

    # -------------------------------------------------------------------------------------- hot loop

    def feed(self, chunk: Chunk) -> None:
        """Replay one chunk of lines (see the module docstring for what is memoized)."""
        decode = _ACTIVITY.decode if self.payloads else _chain_activity
        current = self.current
        current_plan = self._current_plan
        plan_at = self._plan_at
        memo = self.memo
        counts = self.counts
        aclass_of = self.aclass
        wants = self.wants
        days = self.tally.days
        freq = self.freq
        nfreq = len(freq)
        cap = freq[-1]
        window_us = self.window_us
        since_us = self.since_us
        until_us = self.until_us
        as_of = self.spec.as_of_event
        recorded = self.recorded
        tally = self.tally
        tally.lines += len(chunk.lines)
        utf8 = chunk.utf8
        absent = _ABSENT
        no_fields = _NO_FIELDS
        us = _US
        day_us = _DAY_US
        events = skipped = 0
        for i, line in enumerate(chunk.lines):
            if not line:
                continue
            value: Any = absent
            try:
                rec = decode(line)
            except msgspec.DecodeError as exc:
                odd = self._odd(chunk, i, line, exc)
                if odd is None:
                    continue
                rec, value = odd
            if not utf8 and not _is_utf8(line):
                self._bad(chunk, i, "the line is not valid UTF-8")
                continue
            if recorded and rec.verdict not in _VERDICT_SET:
                self._bad(chunk, i, "no recorded verdict (ALLOW, APPROVAL_REQUIRED or DENY) for --baseline recorded")
                continue
            ts = rec.ts
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            t_us = round(ts.timestamp() * us)
            if t_us >= until_us:
                skipped += 1
                continue
            agent = rec.agent
            if as_of:
                plan = plan_at(agent, rec.action, t_us)
            else:
                plan = current.get((agent, rec.action)) or current_plan(agent, rec.action)
            session = rec.session or ""
            window = plan.window
            n = window.observe(agent, session, t_us, window_us) if window is not None else 1
            if t_us < since_us:
                skipped += 1
                continue
            cell = plan.fixed
            if cell < 0:
                key = None
                if not plan.uncached and value is absent:
                    target = rec.target
                    mode = plan.mode
                    if mode == 0:
                        pay: Any = None
                    else:
                        payload = rec.payload or no_fields
                        if mode == 1:
                            get = payload.get
                            pay = tuple([absent if (raw := get(k)) is None else bytes(raw) for k in plan.keys])
                        else:
                            pay = tuple([(k, bytes(raw)) for k, raw in payload.items()])
                    key = (plan.id, None if target is None else target.env, None if target is None else target.system,
                           rec.operation, n if plan.needs_n else freq[n] if n < nfreq else cap, pay,
                           session if plan.needs_session else None, rec.verdict if recorded else None)
                    cell = memo.get(key, -1)
                if cell < 0:
                    cell = self._miss(plan, rec, ts, session, n, key, value, chunk, i)
                    if cell < 0:
                        continue
            events += 1
            counts[cell] += 1
            aclass = aclass_of[cell]
            if aclass is not None:
                day = (aclass, t_us // day_us)
                days[day] = days.get(day, 0) + 1
            if wants[cell]:
                self._example(cell, rec, value, chunk, i)
        tally.events += events
        tally.skipped += skipped

    def _odd(self, chunk: Chunk, i: int, line: bytes, exc: msgspec.DecodeError) -> tuple[Activity, Any] | None:
        """A line whose payload is not a JSON object: the record and that payload; else report it as malformed."""
        if self.payloads and str(exc).endswith(_PAYLOAD_TYPE):
            try:
                odd = _ODD_ACTIVITY.decode(line)
                value = orjson.loads(memoryview(odd.payload))
            except (msgspec.DecodeError, orjson.JSONDecodeError) as again:
                self._bad(chunk, i, _decode_message(again))
                return None
            rec = Activity(odd.ts, odd.agent, odd.action, odd.session, odd.target, odd.operation, None, odd.verdict)
            return rec, value
        if line.strip():
            self._bad(chunk, i, _decode_message(exc))
        return None

    # -------------------------------------------------------------------------------------- plans

    def _window(self, agent: str) -> SessionWindow | None:
        if agent not in self.timeline:
            return None
        found = self.windows.get(agent)
        if found is None:
            found = self.windows[agent] = _AgentWindow()
        return found

    def _current_plan(self, agent: str, action: str) -> _Plan:
        found = self.timeline.get(agent)
        plan = self._plan(agent, action, found[1][-1] if found else None)
        if len(self.current) >= PLAN_LIMIT:
            self.current.clear()
        self.current[(agent, action)] = plan
        return plan

    def _plan_at(self, agent: str, action: str, t_us: int) -> _Plan:
        found = self.timeline.get(agent)
        version = bisect_right(found[0], t_us) if found else 0
        plan = self.plans.get((agent, action, version))
        if plan is None:
            info = found[1][version - 1] if found and version > 0 else None
            plan = self._plan(agent, action, info)
            if len(self.plans) >= PLAN_LIMIT:
                self.plans.clear()
            self.plans[(agent, action, version)] = plan
        return plan

    def _plan(self, agent: str, action: str, info: AgentInfo | None) -> _Plan:
        """Work out, once per agent version and action, which inputs the two sides' outcomes can depend on."""
        self.plan_ids += 1
        plan = _Plan(self.plan_ids, agent, self._window(agent))
        fixed = [True, True]
        payload_keys: set[str] = set()
        whole = False
        for index, side in enumerate(self.sides):
            if side.source.recorded:
                fixed[index] = False
                continue
            plan.states[index] = side.state(info)
            if info is None or info.status != "active":
                continue
            granted = action in self.granted.get(agent, ())
            if action not in info.actions and not granted:
                continue
            fixed[index] = False
            if granted:
                plan.uncached = True
                if not self.payloads and any(g.scope for g in self.spec.grants if g.agent == agent
                                             and action in g.actions):
                    plan.unevaluable[index] = (DENY, UNEVALUABLE, (), None)
            candidates = side.policies.candidates(action, info.labels_key)
            readers: list[str] = []
            for rule in candidates.rules:
                if rule.program is None or rule.static:
                    continue
                for name, keys in rule.fields:
                    if name == "payload":
                        readers.append(rule.ref)
                        if keys is None:
                            whole = True
                        else:
                            payload_keys.update(keys)
                    elif name == "session":
                        if keys is None or "count" in keys:
                            plan.needs_n = True
                        if keys is None or "id" in keys:
                            plan.needs_session = True
                    elif name == "now":
                        plan.uncached = True
            if readers and not self.payloads:
                plan.unevaluable[index] = (DENY, UNEVALUABLE, tuple(sorted(set(readers))), None)
        if whole:
            plan.mode = 2
        elif payload_keys:
            plan.mode = 1
            plan.keys = tuple(sorted(payload_keys))
        if all(fixed):
            plan.constant = True
            plan.uncached = False
            plan.mode = 0
        plan.shared = not self.recorded and self._signature(0, info, action) == self._signature(1, info, action)
        return plan

    def _signature(self, index: int, info: AgentInfo | None, action: str) -> tuple[Any, ...]:
        """What decide reads of one side's policies for this agent and action: equal means equal outcomes."""
        if info is None:
            return ()
        policies = self.sides[index].policies
        _, review, deny = policies.applicable(info.labels_key)
        rules = policies.candidates(action, info.labels_key).rules
        return (review, deny, tuple((r.policy, r.name, r.when, r.source, r.verdict, r.deny_reason, r.approval,
                                     r.compile_error) for r in rules))

    # -------------------------------------------------------------------------------------- misses

    def _miss(self, plan: _Plan, rec: Activity, ts: datetime, session: str, n: int, key: tuple[Any, ...] | None,
              value: Any, chunk: Chunk, i: int) -> int:
        """Decide a call under both sides, record the cell, and memoize it when the plan allows."""
        if value is _ABSENT:
            try:
                value = _payload_value(rec.payload)
            except orjson.JSONDecodeError as exc:
                self._bad(chunk, i, f"payload: {exc}")
                return -1
        target = rec.target
        call = Call(ts=ts, agent=rec.agent, action=rec.action, payload=value, session=session,
                    target=None if target is None else {"system": target.system, "env": target.env},
                    operation=rec.operation)
        base = self._outcome(0, plan, call, n, rec.verdict)
        proposed = base if plan.shared else self._outcome(1, plan, call, n, rec.verdict)
        cell = self._cell(plan.agent, rec.action, base, proposed)
        if plan.constant:
            plan.fixed = cell
        elif key is not None:
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            self.memo[key] = cell
        return cell

    def _outcome(self, index: int, plan: _Plan, call: Call, n: int, verdict: str | None) -> Outcome:
        side = self.sides[index]
        if side.source.recorded:
            assert verdict is not None
            return self._intern((verdict, RECORDED, (), RECORDED_GROUP if verdict == APPROVAL_REQUIRED else None))
        unevaluable = plan.unevaluable[index]
        if unevaluable is not None:
            return self._intern(unevaluable)
        state = plan.states[index]
        assert state is not None
        decision = decide(call, state, session_count=n)
        group = None
        if decision.verdict == APPROVAL_REQUIRED:
            group = (decision.approval.group if decision.approval is not None else None) or DEFAULT_GROUP
        return self._intern((decision.verdict, decision.reason, tuple(m.ref for m in decision.matched), group))

    def _intern(self, outcome: Outcome) -> Outcome:
        return self.outcomes.setdefault(outcome, outcome)

    def _cell(self, agent: str, action: str, base: Outcome, proposed: Outcome) -> int:
        key = (agent, action, base, proposed)
        cell = self.cell_ids.get(key)
        if cell is None:
            cell = len(self.cells)
            self.cells.append(key)
            self.cell_ids[key] = cell
            self.counts.append(0)
            approval = base[3] is not None or proposed[3] is not None
            self.aclass.append((base[3], proposed[3]) if approval else None)
            pair = (base[0], proposed[0])
            wanted = base[0] != proposed[0] and len(self.tally.examples.get(pair, ())) < self.spec.examples
            self.wants.append(wanted)
            if base[0] != proposed[0]:
                self.pair_cells.setdefault(pair, []).append(cell)
        return cell

    # -------------------------------------------------------------------------------------- reporting

    def _where(self, chunk: Chunk, i: int) -> tuple[tuple[int, int], str]:
        number = chunk.numbers[i] if chunk.numbers is not None else chunk.first + i
        return (chunk.source, number), f"{self.displays[chunk.source]}:{number}"

    def _bad(self, chunk: Chunk, i: int, message: str) -> None:
        where, location = self._where(chunk, i)
        text = f"{location}: {message}"
        if self.spec.strict:
            raise StrictError(where, f"{text} (--strict)")
        tally = self.tally
        tally.malformed_count += 1
        if len(tally.malformed) < MALFORMED_LISTED:
            tally.malformed.append((where, text))

    def _example(self, cell: int, rec: Activity, value: Any, chunk: Chunk, i: int) -> None:
        agent, action, base, proposed = self.cells[cell]
        pair = (base[0], proposed[0])
        where, location = self._where(chunk, i)
        payload: Any = None
        if self.payloads:
            try:
                payload = mask(_payload_value(rec.payload) if value is _ABSENT else value)
            except orjson.JSONDecodeError:
                payload = None
        target = rec.target
        example = {
            "from": base[0], "to": proposed[0], "location": location,
            "ts": format_ts(rec.ts if rec.ts.tzinfo else rec.ts.replace(tzinfo=UTC)),
            "agent": agent, "session": rec.session or "", "action": action,
            "target": None if target is None else {"system": target.system, "env": target.env},
            "payload": payload, "baseline": _outcome_dict(base), "proposed": _outcome_dict(proposed),
        }
        items = self.tally.examples.setdefault(pair, [])
        items.append((where, example))
        if len(items) >= self.spec.examples:
            for other in self.pair_cells.get(pair, ()):
                self.wants[other] = False

    def result(self) -> Tally:
        """The tally with counts keyed by (agent, action, outcomes) so tallies of processes can be merged."""
        tally = self.tally
        tally.cells = {}
        for key, n in zip(self.cells, self.counts, strict=True):
            if n:
                tally.cells[key] = tally.cells.get(key, 0) + n
        return tally


class _AgentWindow(SessionWindow):
    """One agent's session window: sweeps depend on that agent's calls only, so any split by agent agrees."""

    __slots__ = ()
    SWEEP_EVERY = 512


def _epoch_us(moment: datetime) -> int:
    return round(moment.timestamp() * _US)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_message(exc: Exception) -> str:
    text = str(exc)
    if text.startswith("JSON is malformed") or text.startswith("Input data was truncated"):
        return f"not a JSON object: {text}"
    return text


def _outcome_dict(outcome: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"verdict": outcome[0], "reason": outcome[1], "rules": list(outcome[2])}
    if outcome[3] is not None:
        out["approvers"] = outcome[3]
    return out


# ------------------------------------------------------------------------------------------------ drivers

Progress = Callable[[int, int], None]
"""Called after each chunk with (input bytes consumed so far, lines read so far)."""


def replay(spec: ReplaySpec, sources: Sequence[Source], *, workers: int = 1,
           progress: Progress | None = None) -> dict[str, Any]:
    """Replay the sources in order and return the report (formats.md section 8, plus the keys listed there)."""
    if not sources:
        raise InputError("no activity to replay: give files, folders, - or --from-chain")
    payloads = all(s.payloads for s in sources)
    displays = [s.display for s in sources]
    frozen = gc.isenabled()
    gc.disable()
    try:
        if workers <= 1:
            tally = _replay_here(spec, sources, displays, payloads, progress)
        else:
            tally = _replay_parallel(spec, sources, displays, payloads, workers, progress)
    finally:
        if frozen:
            gc.enable()
    return build_report(spec, tally, sources, payloads)


def _replay_here(spec: ReplaySpec, sources: Sequence[Source], displays: list[str], payloads: bool,
                 progress: Progress | None) -> Tally:
    replayer = Replayer(spec, displays, payloads)
    done = lines = 0
    for index, source in enumerate(sources):
        consumed = 0
        for chunk in read_chunks(source, index):
            replayer.feed(chunk)
            lines += len(chunk.lines)
            consumed = chunk.consumed
            if progress is not None:
                progress(done + consumed, lines)
            gc.collect(0)
        done += consumed
    return replayer.result()


def _worker(spec: ReplaySpec, displays: list[str], payloads: bool, conn: Any) -> None:
    """A worker process: replays the chunks it is sent, then sends back its tally (or its first error)."""
    gc.disable()
    replayer = Replayer(spec, displays, payloads)
    error: tuple[tuple[int, int], str] | None = None
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            if error is None:
                source, numbers, lines, utf8 = message
                try:
                    replayer.feed(Chunk(source, 0, lines, utf8, 0, numbers))
                except StrictError as exc:
                    error = (exc.where, str(exc))
                gc.collect(0)
        conn.send(("error", error) if error is not None else ("ok", replayer.result()))
    except BaseException:
        conn.send(("crash", traceback.format_exc(limit=8)))
    finally:
        conn.close()


def _replay_parallel(spec: ReplaySpec, sources: Sequence[Source], displays: list[str], payloads: bool,
                     workers: int, progress: Progress | None) -> Tally:
    """The parent reads and splits lines by agent (crc32 of the name) to worker processes over pipes."""
    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe(duplex=True) for _ in range(workers)]
    processes = [context.Process(target=_worker, args=(spec, displays, payloads, child), daemon=True)
                 for _, child in pipes]
    for process in processes:
        process.start()
    for _, child in pipes:
        child.close()
    ends = [parent for parent, _ in pipes]
    try:
        _split(sources, ends, workers, payloads, progress)
        results = [_receive(end, process, i) for i, (end, process) in enumerate(zip(ends, processes, strict=True))]
    finally:
        for end in ends:
            end.close()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    errors = sorted((r[1] for r in results if r[0] == "error"), key=lambda e: e[0])
    if errors:
        raise StrictError(errors[0][0], errors[0][1])
    tally = Tally()
    for _, part in results:
        tally.merge(part, spec.examples)
    return tally


def _split(sources: Sequence[Source], ends: list[Any], workers: int, payloads: bool,
           progress: Progress | None) -> None:
    who = msgspec.json.Decoder(_Who if payloads else _ChainWho).decode
    assigned: dict[str, int] = {}
    done = lines_read = 0
    for index, source in enumerate(sources):
        consumed = 0
        for chunk in read_chunks(source, index):
            buckets: list[list[bytes]] = [[] for _ in range(workers)]
            numbers = [array("q") for _ in range(workers)]
            base = chunk.first
            given = chunk.numbers
            for i, line in enumerate(chunk.lines):
                if not line:
                    continue
                try:
                    found = who(line)
                    agent = found.agent if payloads else found.body.agent
                except msgspec.DecodeError:
                    slot = 0
                else:
                    slot = assigned.get(agent, -1)
                    if slot < 0:
                        slot = assigned[agent] = zlib.crc32(agent.encode("utf-8", "surrogatepass")) % workers
                buckets[slot].append(line)
                numbers[slot].append(given[i] if given is not None else base + i)
            for slot in range(workers):
                if buckets[slot]:
                    try:
                        ends[slot].send((index, numbers[slot], buckets[slot], chunk.utf8))
                    except (BrokenPipeError, ConnectionResetError, EOFError):
                        raise RuntimeError(f"simulate worker {slot} stopped unexpectedly") from None
            lines_read += len(chunk.lines)
            consumed = chunk.consumed
            if progress is not None:
                progress(done + consumed, lines_read)
        done += consumed
    for end in ends:
        end.send(None)


def _receive(end: Any, process: Any, index: int) -> tuple[str, Any]:
    try:
        kind, value = end.recv()
    except EOFError:
        process.join(timeout=5)
        raise RuntimeError(f"simulate worker {index} exited with code {process.exitcode}") from None
    if kind == "crash":
        raise RuntimeError(f"simulate worker {index} failed:\n{value}")
    return kind, value


# ------------------------------------------------------------------------------------------------ report


def _verdict_counts() -> dict[str, int]:
    return {v: 0 for v in VERDICTS}


def _day(index: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=index)).strftime("%Y-%m-%d")


def build_report(spec: ReplaySpec, tally: Tally, sources: Sequence[Source], payloads: bool) -> dict[str, Any]:
    """The report: formats.md section 8 keys first, then the details (all orderings are deterministic)."""
    baseline, proposed = _verdict_counts(), _verdict_counts()
    flips: dict[tuple[str, str], int] = {}
    by_rule: dict[str, dict[str, int]] = {}
    by_agent: dict[str, dict[str, Any]] = {}
    by_reason: dict[str, dict[str, int]] = {"baseline": {}, "proposed": {}}
    blocked: dict[tuple[str, str, str, tuple[str, ...], str], int] = {}
    unevaluable = {"baseline": 0, "proposed": 0}
    for (agent, action, base, prop), n in tally.cells.items():
        baseline[base[0]] += n
        proposed[prop[0]] += n
        flipped = base[0] != prop[0]
        new_deny = prop[0] == DENY and base[0] != DENY
        new_approval = prop[0] == APPROVAL_REQUIRED and base[0] != APPROVAL_REQUIRED
        if flipped:
            flips[(base[0], prop[0])] = flips.get((base[0], prop[0]), 0) + n
        for side, outcome in (("baseline", base), ("proposed", prop)):
            reasons = by_reason[side]
            reasons[outcome[1]] = reasons.get(outcome[1], 0) + n
            if outcome[1] == UNEVALUABLE:
                unevaluable[side] += n
            for ref in outcome[2]:
                row = by_rule.setdefault(ref, {"baseline": 0, "proposed": 0, "new_denies": 0, "new_approvals": 0})
                row[side] += n
        for ref in set(prop[2]):
            row = by_rule[ref]
            if new_deny:
                row["new_denies"] += n
            if new_approval:
                row["new_approvals"] += n
        entry = by_agent.setdefault(agent, {"events": 0, "flips": 0, "new_denies": 0, "new_approvals": 0,
                                            "baseline": _verdict_counts(), "proposed": _verdict_counts()})
        entry["events"] += n
        entry["baseline"][base[0]] += n
        entry["proposed"][prop[0]] += n
        if flipped:
            entry["flips"] += n
        if new_deny:
            entry["new_denies"] += n
            key = (agent, action, prop[1], prop[2], base[0])
            blocked[key] = blocked.get(key, 0) + n
        if new_approval:
            entry["new_approvals"] += n
    approval_load, new_per_day = _approval_load(tally.days)
    ordered_agents = sorted(by_agent.items(), key=lambda kv: (-kv[1]["flips"], -kv[1]["events"], kv[0]))
    examples = [item for pair in sorted(tally.examples, key=_pair_key) for _, item in tally.examples[pair]]
    report: dict[str, Any] = {
        "events": tally.events,
        "baseline": baseline,
        "proposed": proposed,
        "flips": [{"from": a, "to": b, "count": flips[(a, b)]} for a, b in sorted(flips, key=_pair_key)],
        "by_rule": {ref: by_rule[ref] for ref in sorted(by_rule)},
        "by_agent": dict(ordered_agents),
        "approval_load": approval_load,
        "new_denies": sum(e["new_denies"] for e in by_agent.values()),
        "new_approvals": sum(e["new_approvals"] for e in by_agent.values()),
        "new_approvals_per_day": new_per_day,
        "max_new_approvals_per_day": max(new_per_day.values(), default=0),
        "blocked": [
            {"agent": a, "action": act, "reason": reason, "rules": list(rules), "from": was, "count": n}
            for (a, act, reason, rules, was), n in sorted(blocked.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "examples": examples,
        "by_reason": {side: dict(sorted(r.items())) for side, r in by_reason.items()},
        "unevaluable": unevaluable,
        "malformed": {"count": tally.malformed_count, "lines": [text for _, text in tally.malformed]},
        "input": {
            "sources": [s.display for s in sources], "lines": tally.lines, "skipped": tally.skipped,
            "payloads": payloads,
            "since": format_ts(spec.since) if spec.since else None,
            "until": format_ts(spec.until) if spec.until else None,
        },
        "sides": {
            "baseline": _side_info(spec.baseline, spec),
            "proposed": _side_info(spec.proposed, spec),
        },
        "registry": spec.registry,
        "notes": list(spec.notes),
    }
    return report


def _pair_key(pair: tuple[str, str]) -> tuple[int, int]:
    return RANK[pair[0]], RANK[pair[1]]


def _side_info(source: PolicySource, spec: ReplaySpec) -> dict[str, Any]:
    if source.docs is None:
        return {"source": source.label, "revision": None, "policies": None}
    compiled = compile_policies(source.docs, spec.risk_model())
    return {"source": source.label, "revision": compiled.revision, "policies": [p.name for p in compiled.policies]}


def _approval_load(days: Mapping[tuple[tuple[str | None, str | None], int], int]
                   ) -> tuple[dict[str, Any], dict[str, int]]:
    """Per approver group: totals, the busiest day and every day's counts; and the new approvals per day."""
    groups: dict[str, dict[str, dict[str, int]]] = {}
    new: dict[int, int] = {}
    for ((base, proposed), day), n in days.items():
        for side, group in (("baseline", base), ("proposed", proposed)):
            if group is not None:
                per_day = groups.setdefault(group, {})
                counts = per_day.setdefault(_day(day), {"baseline": 0, "proposed": 0})
                counts[side] += n
        if base is None and proposed is not None:
            new[day] = new.get(day, 0) + n
    load: dict[str, Any] = {}
    for group in sorted(groups):
        per_day = dict(sorted(groups[group].items()))
        peak_day = max(per_day, key=lambda d: (per_day[d]["proposed"], d[::-1]), default=None)
        load[group] = {
            "baseline": sum(c["baseline"] for c in per_day.values()),
            "proposed": sum(c["proposed"] for c in per_day.values()),
            "peak_day": peak_day,
            "peak": per_day[peak_day]["proposed"] if peak_day else 0,
            "days": per_day,
        }
    return load, {_day(d): new[d] for d in sorted(new)}


# ------------------------------------------------------------------------------------------------ gates


@dataclass(frozen=True, slots=True)
class Gate:
    """A CI gate: `--max-new-denies N`, `--max-new-approvals-per-day N` or `--fail-on-flip FROM->TO`."""

    name: str
    limit: int
    flip: tuple[str, str] | None = None

    def value(self, report: Mapping[str, Any]) -> int:
        if self.flip is not None:
            return sum(f["count"] for f in report["flips"] if (f["from"], f["to"]) == self.flip)
        if self.name == "max-new-denies":
            return int(report["new_denies"])
        return int(report["max_new_approvals_per_day"])

    def check(self, report: Mapping[str, Any]) -> dict[str, Any]:
        value = self.value(report)
        label = f"fail-on-flip {self.flip[0]}->{self.flip[1]}" if self.flip else self.name
        return {"gate": label, "limit": self.limit, "value": value, "ok": value <= self.limit}


def parse_flip(text: str) -> tuple[str, str]:
    """`ALLOW->DENY` (also `ALLOW:DENY`) into a (from, to) pair of verdicts."""
    for sep in ("->", ":", ">"):
        if sep in text:
            a, _, b = text.partition(sep)
            pair = (a.strip().upper(), b.strip().upper())
            if pair[0] in _VERDICT_SET and pair[1] in _VERDICT_SET and pair[0] != pair[1]:
                return pair
            break
    raise InputError(f"--fail-on-flip {text!r}: use FROM->TO with two different verdicts of "
                     f"{', '.join(VERDICTS)}, e.g. ALLOW->DENY")


def gates(max_new_denies: int | None, max_new_approvals_per_day: int | None,
          fail_on_flip: Sequence[str]) -> list[Gate]:
    out: list[Gate] = []
    for name, limit in (("max-new-denies", max_new_denies), ("max-new-approvals-per-day", max_new_approvals_per_day)):
        if limit is not None:
            if limit < 0:
                raise InputError(f"--{name} must be 0 or more")
            out.append(Gate(name, limit))
    seen = set()
    for text in fail_on_flip:
        pair = parse_flip(text)
        if pair not in seen:
            seen.add(pair)
            out.append(Gate("fail-on-flip", 0, pair))
    return out


def apply_gates(report: dict[str, Any], checks: Sequence[Gate]) -> bool:
    """Add `gates` and `ok` to the report; True when every gate holds."""
    results = [gate.check(report) for gate in checks]
    report["gates"] = results
    report["ok"] = all(r["ok"] for r in results)
    return bool(report["ok"])


# ------------------------------------------------------------------------------------------------ loading


def parse_when(text: str | None, now: datetime, option: str) -> datetime | None:
    """`--since`/`--until`: a duration back from now (30d, 12h) or an RFC 3339 date or timestamp."""
    if not text:
        return None
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_ts(text if "T" in text else f"{text}T00:00:00Z")
    except ValueError:
        raise InputError(f"{option} {text!r}: use a duration back from now (30d, 12h) or an RFC 3339 date "
                         "or timestamp (2026-04-01, 2026-04-01T00:00:00Z)") from None


def policies_at_ref(paths: Sequence[Path], ref: str, catalog: Catalog) -> tuple[tuple[dict[str, Any], ...], str]:
    """The Policy resources under `paths` as they were at git `ref` (paths resolved against the repository root)."""
    try:
        import git
    except ImportError:
        raise InputError("--baseline-ref needs gitpython: pip install 'arxctl[analyze]'") from None
    from arxctl.errors import ValidationFailed
    from arxctl.resources.validation import validate_documents
    from arxctl.resources.yamlio import parse_text

    if not paths:
        raise InputError("--baseline-ref needs --policy: the folder whose history to read")
    try:
        repo = git.Repo(paths[0].resolve() if paths[0].exists() else Path.cwd(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise InputError(f"--baseline-ref: {paths[0]} is not inside a git repository") from None
    root = Path(str(repo.working_tree_dir)).resolve()
    try:
        commit = repo.commit(ref)
    except (git.BadName, ValueError, git.GitCommandError):
        raise InputError(f"--baseline-ref {ref!r}: no such commit, branch or tag in {root}") from None
    docs = []
    problems = []
    labels = []
    for path in paths:
        absolute = path.resolve() if path.is_absolute() or path.exists() else (Path.cwd() / path).resolve()
        try:
            relative = absolute.relative_to(root).as_posix()
        except ValueError:
            raise InputError(f"--baseline-ref: {path} is outside the repository {root}") from None
        try:
            item = commit.tree / relative if relative != "." else commit.tree
        except KeyError:
            raise InputError(f"--baseline-ref {ref}: {relative} does not exist at that commit") from None
        labels.append(relative)
        blobs = [item] if item.type == "blob" else [b for b in item.traverse() if b.type == "blob"]
        for blob in sorted(blobs, key=lambda b: b.path):
            if not blob.path.endswith((".yaml", ".yml")) and item.type != "blob":
                continue
            text = blob.data_stream.read().decode("utf-8", "replace")
            found, issues = parse_text(text, f"{ref}:{blob.path}")
            docs.extend(found)
            problems.extend(issues)
    resources, diagnostics, _ = validate_documents(docs, base_catalog=catalog)
    errors = [d for d in [*problems, *diagnostics] if d.severity == "error"]
    if errors:
        raise ValidationFailed(errors)
    policies = tuple(r.doc for r in resources if r.kind == "Policy")
    return policies, f"git {ref}:{', '.join(labels)} ({commit.hexsha[:12]})"


def manifest_snapshots(docs: Iterable[Mapping[str, Any]]) -> tuple[AgentSnapshot, ...]:
    """Agents from Agent resources in files (all active, not throttled)."""
    return tuple(AgentSnapshot(AgentInfo.from_doc(doc)) for doc in docs)


def current_snapshots(state: EngineState) -> tuple[AgentSnapshot, ...]:
    """Today's registry: each agent's current version, status and throttle."""
    return tuple(AgentSnapshot(info) for _, info in sorted(state.agents.items()))


def history_snapshots(conn: sqlite3.Connection) -> tuple[AgentSnapshot, ...]:
    """Every registered agent as it was over time: its versions by registration time, its status and throttle
    from the chain's lifecycle records (agent.suspended, agent.reactivated, agent.decommissioned,
    agent.throttled, agent.unthrottled)."""
    changes: dict[str, list[tuple[int, int, str, Any]]] = {}
    for name, _version, ts, doc in conn.execute(
        "SELECT name, version, ts, doc FROM resources WHERE kind = 'Agent' ORDER BY name, version"
    ):
        changes.setdefault(name, []).append((_epoch_us(parse_ts(ts)), 0, "doc", orjson.loads(doc)))
    kinds = (*LIFECYCLE_STATUS, *LIFECYCLE_THROTTLE)
    marks = ",".join("?" * len(kinds))
    for seq, ts, kind, agent in conn.execute(
        f"SELECT seq, ts, type, agent FROM chain WHERE type IN ({marks}) ORDER BY seq", kinds
    ):
        if agent in changes:
            changes[agent].append((_epoch_us(parse_ts(ts)), seq, kind, None))
    snapshots: list[AgentSnapshot] = []
    for name in sorted(changes):
        doc: Any = None
        status, throttled = "active", False
        for t_us, _, kind, value in sorted(changes[name], key=lambda c: (c[0], c[1])):
            if kind == "doc":
                doc = value
            elif kind in LIFECYCLE_STATUS:
                status = LIFECYCLE_STATUS[kind]
            else:
                throttled = LIFECYCLE_THROTTLE[kind]
            if doc is not None:
                info = AgentInfo.from_doc(doc, status=status, throttled=throttled)
                if snapshots and snapshots[-1].info.name == name and snapshots[-1].since_us == t_us:
                    snapshots[-1] = AgentSnapshot(info, t_us)
                else:
                    snapshots.append(AgentSnapshot(info, t_us))
    return tuple(snapshots)


def load_agent_docs(paths: Sequence[Path], catalog: Catalog) -> list[dict[str, Any]]:
    """Agent resources in files or folders, validated like `arxctl validate`; any error raises."""
    from arxctl.errors import ValidationFailed
    from arxctl.resources.validation import check_paths

    report = check_paths(paths, base_catalog=catalog)
    if not report.ok or report.input_error:
        raise ValidationFailed([d for d in report.diagnostics if d.severity == "error"])
    docs = [r.doc for r in report.resources if r.kind == "Agent"]
    if not docs:
        raise InputError(f"no Agent resources in {', '.join(str(p) for p in paths)}")
    return docs


def prepare(
    store: Any, *, inputs: Sequence[str], policy: Sequence[Path] = (), baseline: str | None = None,
    baseline_ref: str | None = None, from_chain: bool = False, since: str | None = None, until: str | None = None,
    as_of_event: bool = False, manifests: Sequence[Path] = (), catalog_files: Sequence[Path] = (),
    strict: bool = False, examples: int = EXAMPLES_PER_FLIP, now: datetime,
) -> tuple[ReplaySpec, list[Source]]:
    """Resolve the command's options into a replay spec and the activity sources (nothing is replayed here)."""
    from arxctl.policy import state as engine_state
    from arxctl.registry import resources as registry

    if baseline is not None and baseline_ref is not None:
        raise InputError("give --baseline or --baseline-ref, not both")
    if from_chain and inputs:
        raise InputError("--from-chain replays the chain's decisions; give no activity files with it")
    if not from_chain and not inputs:
        raise InputError("no activity to replay: give files, folders or - (standard input), or --from-chain")
    if as_of_event and manifests:
        raise InputError("--registry-as-of-event reads the registry's history; it cannot be used with --manifests")
    if examples < 0:
        raise InputError("--examples must be 0 or more")
    catalog = engine_state.extend_catalog(registry.catalog(store), catalog_files)
    if store is None and not (manifests and policy and (baseline is not None or baseline_ref is not None)):
        raise InputError("no arxctl state here (register agents and policies, or pass --state); without one "
                         "give --manifests DIR, --policy DIR and --baseline DIR, --baseline-ref REF or "
                         "--baseline recorded")
    proposed_docs = engine_state.load_policy_paths(policy, [], catalog) if policy else None
    notes: list[str] = []
    state = engine_state.load_state(store, policy_docs=proposed_docs, catalog=catalog) if store is not None else None
    registered = tuple(v.doc for _, v in registry.current(store, "Policy")) if store is not None else ()
    proposed = (PolicySource(", ".join(str(p) for p in policy), tuple(proposed_docs)) if proposed_docs is not None
                else PolicySource("registered policies", registered))
    if baseline_ref is not None:
        docs, label = policies_at_ref(policy, baseline_ref, catalog)
        base = PolicySource(label, docs)
    elif baseline == RECORDED:
        base = PolicySource("verdicts recorded in the activity", None)
    elif baseline is not None:
        base = PolicySource(baseline, tuple(engine_state.load_policy_paths([Path(baseline)], [], catalog)))
    else:
        base = PolicySource("registered policies", registered)
    grants: tuple[Grant, ...] = tuple(g for gs in state.grants.values() for g in gs) if state is not None else ()
    if manifests:
        snapshots = manifest_snapshots(load_agent_docs(manifests, catalog))
        label = f"manifests in {', '.join(str(p) for p in manifests)} (all active)"
    elif as_of_event:
        snapshots = history_snapshots(store.conn)
        label = "as of each event (agent versions and lifecycle records by time)"
    else:
        assert state is not None
        snapshots = current_snapshots(state)
        label = "current (today's agent versions, statuses and throttles)"
    if not snapshots:
        raise InputError("no agents to replay against: register them (arxctl register) or pass --manifests DIR")
    if from_chain:
        if store is None:
            raise InputError("--from-chain needs an arxctl state (pass --state)")
        sources = [chain_source(store.directory)]
        notes.append("replayed from the chain's decision records, which keep a payload digest, not the payload: "
                     "calls meeting a rule that reads the payload are unevaluable and counted as DENY")
    else:
        sources = activity_sources(inputs)
    if grants:
        notes.append(f"{len(grants)} approved grant(s) applied, each within its own time window")
    spec = ReplaySpec(
        baseline=base, proposed=proposed, agents=snapshots, catalog=catalog, grants=grants,
        as_of_event=as_of_event, since=parse_when(since, now, "--since"), until=parse_when(until, now, "--until"),
        strict=strict, examples=examples, registry=label, notes=tuple(notes),
    )
    if spec.since and spec.until and spec.since >= spec.until:
        raise InputError("--since must be before --until")
    return spec, sources


def input_size(sources: Sequence[Source]) -> int | None:
    """Total bytes to read (for a progress bar's ETA); None when unknown (standard input)."""
    total = 0
    for source in sources:
        if source.chain is not None:
            total += chain_size(source.chain)
            continue
        size = source.size()
        if size is None:
            return None
        total += size
    return total


SIMULATED = "policy.simulated"


def simulation_record(report: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a `policy.simulated` chain record: what was replayed, against what, and the outcome."""
    sides = report["sides"]
    return {
        "policy_revision": sides["proposed"]["revision"],
        "policies": sides["proposed"]["policies"],
        "baseline": {"source": sides["baseline"]["source"], "revision": sides["baseline"]["revision"]},
        "registry": report["registry"],
        "input": {k: report["input"][k] for k in ("sources", "lines", "since", "until")},
        "events": report["events"],
        "baseline_counts": report["baseline"],
        "proposed_counts": report["proposed"],
        "flips": report["flips"],
        "gates": report["gates"],
        "ok": report["ok"],
    }


def record_simulation(store: Store, report: Mapping[str, Any], *, actor: str) -> Record:
    """Append the simulation to the chain, so `assess` can tell the enforced revision was replayed first."""
    from arxctl.chain import store as chain

    with store.transaction() as conn:
        return chain.append(conn, chain.Entry(type=SIMULATED, agent=None, actor=actor, body=simulation_record(report)))
