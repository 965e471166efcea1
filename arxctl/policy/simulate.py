"""Replaying recorded activity against a baseline and a proposed policy set (`arxctl simulate`, formats.md 8).

Every verdict comes from `engine.decide`. A replay memoizes decide's outcome per call shape: the agent (its
version), the action, the target, the operation, the session-frequency component combined with the side of each
`session.count` comparison the rules make (n itself when a rule reads it any other way), the payload projected
onto the keys the rules read (a list of strings read only through `size()` or `has()` by its length), the session
id when a rule reads it and the recorded verdict when it is the baseline. Agents alike in everything the engine
knows of them but their name (unless a rule reads it) share what was decided for one of them. Calls whose outcome
can depend on the time (a grant for the agent and action, a rule reading `now`) are decided one by one.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import operator
import re
import sqlite3
import sys
import traceback
import zlib
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import msgspec
import orjson

from arxctl import ndjson
from arxctl.clock import format_ts, parse_ts
from arxctl.durations import parse_duration
from arxctl.errors import InputError
from arxctl.policy.catalog import Catalog
from arxctl.policy.compiler import APPROVAL_REQUIRED, DENY, RANK, VERDICTS, compile_policies
from arxctl.policy.engine import AgentInfo, Call, EngineState, Grant, decide
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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
_EXACT_FROM = datetime(1900, 1, 1, tzinfo=UTC)
_EXACT_UNTIL = datetime(2040, 1, 1, tzinfo=UTC)
_FAR = 2**62
_EMPTY = msgspec.Raw(b"{}")
_NULL = msgspec.Raw(b"null")
_UNSET = msgspec.Raw(b"")
_ABSENT = ("absent",)
_VERDICT_SET = frozenset(VERDICTS)
_LATENESS_US = 3600 * _US
_PRUNE_AT = 256
_WHERE_SHIFT = 40
_CLASS_MASK = (1 << _WHERE_SHIFT) - 1
_SESSIONS_MIN = 64

Outcome = tuple[str, str, tuple[str, ...], str | None]
"""(verdict, reason, matched rule refs, approver group when the verdict is APPROVAL_REQUIRED)."""
CellKey = tuple[str, str, Outcome, Outcome]
"""(agent, action, baseline outcome, proposed outcome)."""


class Target(msgspec.Struct, gc=False, frozen=True):
    """A call's target (formats.md section 5); other fields are ignored. Hashable: it is part of memo keys."""

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


class _WholePayload(msgspec.Struct, gc=False):
    """Only an activity record's payload, as one raw JSON value."""

    payload: msgspec.Raw = _NULL


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


class _Size:
    """What `size()` and `has()` can see of a list of strings: its length."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class _Exact:
    """A value of a field read only through `size()` or `has()` that is not a list of strings: kept whole."""

    __slots__ = ("json",)

    def __init__(self, json: bytes) -> None:
        self.json = json


_ACTIVITY = msgspec.json.Decoder(Activity)
_WHOLE_PAYLOAD = msgspec.json.Decoder(_WholePayload)
_ODD_ACTIVITY = msgspec.json.Decoder(_OddActivity)
_CHAIN = msgspec.json.Decoder(_ChainLine)
_PAYLOAD_TYPE = "- at `$.payload`"


def _chain_activity(line: bytes) -> Activity:
    body = _CHAIN.decode(line).body
    return Activity(body.ts, body.agent, body.action, body.session, body.target, body.operation, None, body.verdict)


def _chain_fast(line: bytes) -> Activity:
    rec = _chain_activity(line)
    if rec.ts.tzinfo is None:
        raise msgspec.ValidationError("a timestamp without a time zone")
    return rec


def _size_hook(kind: type, value: Any) -> Any:
    if kind is not _Size:
        raise NotImplementedError
    if type(value) is list and all(type(v) is str and _is_text(v) for v in value):
        return _Size(len(value))
    return _Exact(orjson.dumps(value))


def _size_of(value: Any) -> Any:
    if type(value) is _Size:
        return value.n
    if type(value) is _Exact:
        return [msgspec.Raw(value.json)]
    raise NotImplementedError


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_KEY = msgspec.json.Encoder(enc_hook=_size_of)


def fast_decoder(keys: Iterable[str], sized: Iterable[str]) -> tuple[Callable[[bytes], Any], Any]:
    """A decoder of activity lines whose payload keeps only `keys`: each one's raw JSON (or, for `sized`, the
    length of a list of strings, else the value's JSON) and `_UNSET` when absent; any other payload field is
    skipped. Like `Activity`, it refuses a payload that is not an object or null; it also refuses a timestamp
    without a time zone (such lines take the replay's slow path, which reads it as UTC). With the decoder comes a
    payload with none of `keys`, which is what a null or missing payload projects to."""
    sized = frozenset(sized)
    names = {f"k{i}": key for i, key in enumerate(sorted(keys))}
    projection = msgspec.defstruct(
        "Projection", [(name, _Size | None if key in sized else msgspec.Raw, _UNSET) for name, key in names.items()],
        rename=names, gc=False,
    )
    record = msgspec.defstruct(
        "FastActivity",
        [("ts", Annotated[datetime, msgspec.Meta(tz=True)]), ("agent", str), ("action", str),
         ("session", str | None, None), ("target", Target | None, None), ("operation", str | None, None),
         ("payload", projection | None, None), ("verdict", str | None, None)],
        gc=False,
    )
    return msgspec.json.Decoder(record, dec_hook=_size_hook).decode, projection()


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
    reader = ndjson.Chunks(stream, read_size=read_size, chunk_size=read_size)  # chunks that stay in the CPU's cache
    line_no = 1
    try:
        for lines, data in ndjson.line_batches(reader):
            yield Chunk(index, line_no, lines, _utf8(data) and _utf8(lines[0]), reader.consumed)
            line_no += len(lines)
    except ndjson.GzipDamage as exc:
        if exc.kind == "truncated":
            raise InputError(f"{source.display}: the gzip stream is truncated (after {line_no - 1} lines)") from None
        raise InputError(f"{source.display}: not a valid gzip stream: {exc.reason or exc}") from None


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


_COUNT_READ = re.compile(r"(?<![\w.])session\s*\.\s*count\b")
_COUNT_TEST = re.compile(r"\s*(==|!=|<=|>=|<|>)\s*(\d+)(?![\w.])")
_OPERAND_BEFORE = ("(", "&&", "||", "?", ":", ",", "[")
_OPERAND_AFTER = (")", "&&", "||", "?", ":", ",", "]")
_CALL_BEFORE = re.compile(r"(?<![\w.])(?:size|has)\s*\(\s*\Z")
_CALL_AFTER = re.compile(r"\s*\)")


def count_boundaries(sources: Iterable[str]) -> tuple[int, ...] | None:
    """The integers b such that each `if` reads `session.count` only through comparisons equivalent to
    `session.count > b` (an integer literal on the right, nothing binding tighter on either side), sorted; None when
    an `if` reads it any other way. Two counts with as many b below them then give every `if` the same result."""
    found: set[int] = set()
    for source in sources:
        for read in _COUNT_READ.finditer(source):
            test = _COUNT_TEST.match(source, read.end())
            if test is None:
                return None
            before = source[: read.start()].rstrip()
            after = source[test.end():].lstrip()
            if (before and not before.endswith(_OPERAND_BEFORE)) or (after and not after.startswith(_OPERAND_AFTER)):
                return None
            op, bound = test.group(1), int(test.group(2))
            if op in (">", "<="):
                found.add(bound)
            elif op in (">=", "<"):
                found.add(bound - 1)
            else:
                found.update((bound - 1, bound))
    return tuple(sorted(found))


def size_only(sources: Iterable[str], key: str) -> bool:
    """True when each `if` reads `payload.<key>` only as `size(payload.<key>)` or `has(payload.<key>)` (text inside
    string literals counts as a read too, so this errs on the side of False)."""
    read = re.compile(rf"(?<![\w.])payload\s*\.\s*{re.escape(key)}\b(?!\s*\()")
    for source in sources:
        for m in read.finditer(source):
            if _CALL_BEFORE.search(source, 0, m.start()) is None or _CALL_AFTER.match(source, m.end()) is None:
                return False
    return True


class _Plan:
    """How to decide calls of one agent (version) and action: fixed, memoized by a key, or one by one."""

    __slots__ = (
        "agent",
        "classes",
        "common",
        "constant",
        "extra",
        "fixed",
        "getter",
        "keys",
        "kind",
        "limit",
        "memo",
        "mode",
        "needs_session",
        "operation",
        "places",
        "shared",
        "states",
        "target",
        "top",
        "uncached",
        "unevaluable",
    )

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.fixed = -1
        self.constant = False
        self.shared = False
        self.mode = 0
        self.keys: tuple[str, ...] = ()
        self.getter: Callable[[Any], Any] | None = None
        self.classes: Sequence[int] = range(1, _FAR)
        self.limit = _FAR - 1
        self.top = 0
        self.kind = 2
        self.needs_session = False
        self.extra = False
        self.uncached = False
        self.memo: dict[Any, int] = {}
        self.common: dict[Any, tuple[Outcome, Outcome]] | None = None
        self.target: Target | bool | None = False
        self.operation: str | bool | None = False
        self.places: dict[tuple[Target | None, str | None], int] = {}
        self.unevaluable: list[Outcome | None] = [None, None]
        self.states: list[EngineState | None] = [None, None]


class _AgentState:
    """One agent's plans (by action, or by action and version) and its session window: each session's call times,
    sorted. Times too old to count for a call up to an hour late are dropped as the agent's calls come (see
    `_start` and `_prune`), never by anything else, so a split of the input by agent leaves every window as it is."""

    __slots__ = ("known", "limit", "name", "plans", "sessions")

    def __init__(self, name: str, known: bool) -> None:
        self.name = name
        self.known = known
        self.plans: dict[Any, _Plan] = {}
        self.sessions: dict[str, list[datetime]] = {}
        self.limit = _SESSIONS_MIN


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
        window_us = round(model.frequency_window_s * _US)
        self.window = timedelta(microseconds=window_us)
        self.keep = timedelta(microseconds=window_us + _LATENESS_US)
        try:
            self.floor = datetime.min.replace(tzinfo=UTC) + self.keep + self.window
        except OverflowError:
            self.floor = datetime.max.replace(tzinfo=UTC)
        self.model = model
        self.saturation = max(model.frequency_free_calls + model.frequency_cap, 0) + 1
        self.sides = [
            _Side(spec.baseline, None if spec.baseline.recorded else compile_policies(spec.baseline.docs or (), model),
                  spec.catalog, spec.grants),
            _Side(spec.proposed, None if spec.proposed.recorded else compile_policies(spec.proposed.docs or (), model),
                  spec.catalog, spec.grants),
        ]
        self.recorded = spec.baseline.recorded or spec.proposed.recorded
        self.decode_full: Callable[[bytes], Activity] = _ACTIVITY.decode if payloads else _chain_activity
        self.decode: Callable[[bytes], Any] = _chain_fast
        self.fields: dict[str, str] = {}
        self.blank: Any = None
        if payloads:
            sources, keys = self._payload_reads()
            self.fields = {key: f"k{i}" for i, key in enumerate(sorted(keys))}
            self.decode, self.blank = fast_decoder(keys, (k for k in keys if size_only(sources, k)))
        self.since = _instant(spec.since) if spec.since else datetime.min.replace(tzinfo=UTC)
        self.until = _instant(spec.until) if spec.until else datetime.max.replace(tzinfo=UTC)
        self.bounded = spec.since is not None or spec.until is not None
        self.timeline: dict[str, tuple[list[int], list[AgentInfo]]] = {}
        for snap in spec.agents:
            starts, infos = self.timeline.setdefault(snap.info.name, ([], []))
            starts.append(snap.since_us if snap.since_us is not None else -_FAR)
            infos.append(snap.info)
        self.granted: dict[str, set[str]] = {}
        for grant in spec.grants:
            self.granted.setdefault(grant.agent, set()).update(grant.actions)
        self.states: dict[str, _AgentState] = {}
        self.strangers = 0
        self.plan_count = 0
        self.memo_size = 0
        self.class_tables: dict[tuple[int, ...] | None, tuple[Sequence[int], int]] = {}
        self.profiles: dict[tuple[Any, ...], dict[Any, tuple[Outcome, Outcome]]] = {}
        self.profile_of: dict[tuple[int, bool], bytes] = {}
        self.cells: list[CellKey] = []
        self.cell_ids: dict[CellKey, int] = {}
        self.counts: list[int] = []
        self.aclass: list[tuple[str | None, str | None] | None] = []
        self.flags: list[int] = []
        self.pair_cells: dict[tuple[str, str], list[int]] = {}
        self.outcomes: dict[Outcome, Outcome] = {}
        self.day = -_FAR
        self.today: dict[int, int] = {}
        self.tally = Tally()

    # -------------------------------------------------------------------------------------- hot loop

    def feed(self, chunk: Chunk) -> None:
        """Replay one chunk of lines (see the module docstring for what is memoized). Lines the fast path cannot
        take as they are (malformed, not UTF-8, a payload that is not an object, ...) go through `_slow`."""
        decode = self.decode
        states = self.states
        state_of = self._state
        plan_for = self._plan_for
        plan_at = self._plan_at
        start = self._start
        prune = self._prune
        window = self.window
        stale = self.keep + window
        prune_at = _PRUNE_AT
        exact_from, exact_until, instant, floor = _EXACT_FROM, _EXACT_UNTIL, _instant, self.floor
        epoch, one_day = _EPOCH, _ONE_DAY
        example = self._example
        new_day = self._new_day
        today = self.today
        miss = self._miss_line
        encode = _KEY.encode
        place = self._place
        shift = _WHERE_SHIFT
        other = self._other
        counts = self.counts
        flags = self.flags
        since = self.since
        until = self.until
        as_of = self.spec.as_of_event
        recorded = self.recorded
        verdicts = _VERDICT_SET
        utf8 = chunk.utf8
        check = recorded or not utf8
        bounded = self.bounded
        blank = self.blank
        skipped = 0
        self.tally.lines += len(chunk.lines)
        for i, line in enumerate(chunk.lines):
            if not line:
                continue
            try:
                rec = decode(line)
            except msgspec.DecodeError:
                self._slow(chunk, i, line)
                continue
            if check and ((not utf8 and not _is_utf8(line)) or (recorded and rec.verdict not in verdicts)):
                self._slow(chunk, i, line)
                continue
            ts = rec.ts
            if not exact_from <= ts < exact_until:
                ts = instant(ts)
                if ts < floor:
                    self._slow(chunk, i, line)
                    continue
            st = states.get(rec.agent) or state_of(rec.agent)
            action = rec.action
            plan = plan_at(st, action, ts) if as_of else st.plans.get(action) or plan_for(st, action)
            if bounded and ts >= until:
                skipped += 1
                continue
            # `_observe`, inlined (this loop runs once per call); m = n - 1, the earlier calls in the window
            sessions = st.sessions
            session = rec.session or ""
            times = sessions.get(session)
            if times is None:
                m = 0
                if len(sessions) < st.limit:
                    sessions[session] = [ts]
                else:
                    start(st, sessions, session, ts)
            elif ts >= times[-1]:
                older = bisect_right(times, ts - window)
                m = len(times) - older
                times.append(ts)
                if older > prune_at and times[0] <= ts - stale:
                    prune(times)
            else:
                m = bisect_right(times, ts) - bisect_right(times, ts - window)
                insort(times, ts)
            if bounded and ts < since:
                skipped += 1
                continue
            kind = plan.kind
            if kind < 2:
                # `_other`'s key, inlined: kind 0 reads no payload, kind 1 reads it through `getter`
                key: Any = plan.classes[m] if m < plan.limit else plan.top
                target = rec.target
                operation = rec.operation
                if target != plan.target or operation != plan.operation:
                    key |= place(plan, target, operation) << shift
                if kind:
                    key = (key, encode(plan.getter(rec.payload or blank)))
                cell = plan.memo.get(key, -1)
                if cell < 0:
                    cell = miss(plan, line, m + 1, key, chunk, i)
                    if cell < 0:
                        continue
            else:
                cell = other(plan, rec, line, m + 1, session, chunk, i)
                if cell < 0:
                    continue
            counts[cell] += 1
            if flags[cell]:
                # `_special`, inlined
                if flags[cell] & 1:
                    day = (ts - epoch) // one_day
                    if day != self.day:
                        new_day(day)
                    today[cell] = today.get(cell, 0) + 1
                if flags[cell] & 2:
                    example(cell, self.decode_full(line), _ABSENT, chunk, i)
        self.tally.skipped += skipped

    def _observe(self, sessions: dict[str, list[datetime]], st: _AgentState, session: str, ts: datetime) -> int:
        """Record a call at `ts` (see `_instant`) in its session; n = 1 + the earlier calls less than a window before
        it, as `engine.SessionWindow` counts them (exact for calls up to an hour out of timestamp order). The loop in
        `feed` does the same inline for calls at least a window and an hour after the earliest datetime."""
        bound = _minus(ts, self.window)
        times = sessions.get(session)
        if times is None:
            self._start(st, sessions, session, ts)
            n = 1
        elif ts >= times[-1]:
            older = bisect_right(times, bound) if bound is not None else 0
            n = len(times) - older + 1
            times.append(ts)
            stale = _minus(ts, self.keep + self.window)
            if older > _PRUNE_AT and stale is not None and times[0] <= stale:
                self._prune(times)
        else:
            n = bisect_right(times, ts) - (bisect_right(times, bound) if bound is not None else 0) + 1
            insort(times, ts)
        return n

    def _start(self, st: _AgentState, sessions: dict[str, list[datetime]], session: str, ts: datetime) -> None:
        """A session's first call; when the agent holds twice as many sessions as after its last sweep, first drop
        those whose last call is too old to count for a call up to an hour later than the agent's newest."""
        if len(sessions) >= st.limit:
            horizon = _minus(max(ts, *(v[-1] for v in sessions.values())), self.keep)
            for stale in [k for k, v in sessions.items() if horizon is not None and v[-1] <= horizon]:
                del sessions[stale]
            st.limit = 2 * len(sessions) + _SESSIONS_MIN
        sessions[session] = [ts]

    def _prune(self, times: list[datetime]) -> None:
        """Drop a session's call times too old to count for a call up to an hour earlier than its last one."""
        horizon = _minus(times[-1], self.keep)
        if horizon is not None:
            del times[: bisect_right(times, horizon)]

    def _slow(self, chunk: Chunk, i: int, line: bytes) -> None:
        """One line the fast path refused, read as it is and decided one by one; malformed lines are reported."""
        value: Any = _ABSENT
        try:
            rec = self.decode_full(line)
        except msgspec.DecodeError as exc:
            odd = self._odd(chunk, i, line, exc)
            if odd is None:
                return
            rec, value = odd
        if not chunk.utf8 and not _is_utf8(line):
            self._bad(chunk, i, "the line is not valid UTF-8")
            return
        if self.recorded and rec.verdict not in _VERDICT_SET:
            self._bad(chunk, i, "no recorded verdict (ALLOW, APPROVAL_REQUIRED or DENY) for --baseline recorded")
            return
        tally = self.tally
        ts = rec.ts if rec.ts.tzinfo is not None else rec.ts.replace(tzinfo=UTC)
        at = _instant(ts)
        if at >= self.until:
            tally.skipped += 1
            return
        st = self.states.get(rec.agent) or self._state(rec.agent)
        plan = (self._plan_at(st, rec.action, at) if self.spec.as_of_event
                else st.plans.get(rec.action) or self._plan_for(st, rec.action))
        session = rec.session or ""
        n = self._observe(st.sessions, st, session, at)
        if at < self.since:
            tally.skipped += 1
            return
        cell = plan.fixed
        if cell < 0:
            cell = self._miss(plan, rec, ts, session, n, None, value, chunk, i)
            if cell < 0:
                return
        self.counts[cell] += 1
        if self.flags[cell]:
            self._special(cell, at, chunk, i, line, rec, value)

    def _other(self, plan: _Plan, rec: Any, line: bytes, n: int, session: str, chunk: Chunk, i: int) -> int:
        """The cell of a call `feed` does not key inline: its plan is fixed, decides one by one, reads the whole
        payload, or keys by session or recorded verdict as well."""
        if plan.fixed >= 0:
            return plan.fixed
        if plan.uncached:
            return self._miss_line(plan, line, n, None, chunk, i)
        if plan.mode == 2:
            pay: Any = bytes(_WHOLE_PAYLOAD.decode(line).payload)
        elif plan.mode and plan.getter is not None:
            pay = _KEY.encode(plan.getter(rec.payload or self.blank))
        else:
            pay = ()
        target = rec.target
        operation = rec.operation
        where = 0 if target == plan.target and operation == plan.operation else self._place(plan, target, operation)
        key = (where << _WHERE_SHIFT | (plan.classes[n - 1] if n - 1 < plan.limit else plan.top), pay,
               session if plan.needs_session else None, rec.verdict if self.recorded else None)
        cell = plan.memo.get(key, -1)
        if cell < 0:
            cell = self._miss_line(plan, line, n, key, chunk, i)
        return cell

    def _place(self, plan: _Plan, target: Target | None, operation: str | None) -> int:
        """A small id for a call's (target, operation) within its plan: 0 for the first one the plan meets."""
        places = plan.places
        if not places:
            plan.target, plan.operation = target, operation
            places[(target, operation)] = 0
            return 0
        found = places.get((target, operation))
        if found is None:
            found = places[(target, operation)] = len(places)
        return found

    def _payload_reads(self) -> tuple[list[str], set[str]]:
        """The `if`s that read the payload (both sides, every rule) and the payload keys they read."""
        sources: list[str] = []
        keys: set[str] = set()
        for side in self.sides:
            for policy in side.policies.policies if side.policies is not None else ():
                for rule in policy.rules:
                    if rule.program is None or rule.static:
                        continue
                    for name, read in rule.fields:
                        if name == "payload":
                            sources.append(str(rule.source))
                            keys.update(read or ())
        return sources, keys

    def _special(self, cell: int, at: datetime, chunk: Chunk, i: int, line: bytes, rec: Activity | None,
                 value: Any) -> None:
        """Count an approval cell on its day; take the call as an example of its flip while examples are wanted."""
        flag = self.flags[cell]
        if flag & 1:
            day = (at - _EPOCH) // _ONE_DAY
            if day != self.day:
                self._new_day(day)
            self.today[cell] = self.today.get(cell, 0) + 1
        if flag & 2:
            self._example(cell, rec if rec is not None else self.decode_full(line), value, chunk, i)

    def _new_day(self, day: int) -> None:
        """Add the approval cells counted on the current day to the tally, and start counting `day`."""
        days = self.tally.days
        aclass = self.aclass
        for cell, n in self.today.items():
            key = (aclass[cell], self.day)
            days[key] = days.get(key, 0) + n  # type: ignore[index]
        self.today.clear()
        self.day = day

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

    def _state(self, agent: str) -> _AgentState:
        known = agent in self.timeline
        if not known:
            if self.strangers >= PLAN_LIMIT:
                for name in [k for k, st in self.states.items() if not st.known]:
                    self.plan_count -= len(self.states.pop(name).plans)
                self.strangers = 0
            self.strangers += 1
        found = self.states[agent] = _AgentState(agent, known)
        return found

    def _plan_for(self, st: _AgentState, action: str) -> _Plan:
        found = self.timeline.get(st.name)
        plan = self._plan(st.name, action, found[1][-1] if found else None)
        self._keep(st, action, plan)
        return plan

    def _plan_at(self, st: _AgentState, action: str, at: datetime) -> _Plan:
        found = self.timeline.get(st.name)
        version = bisect_right(found[0], (at - _EPOCH) // _ONE_US) if found else 0
        plan = st.plans.get((action, version))
        if plan is None:
            info = found[1][version - 1] if found and version > 0 else None
            plan = self._plan(st.name, action, info)
            self._keep(st, (action, version), plan)
        return plan

    def _keep(self, st: _AgentState, key: Any, plan: _Plan) -> None:
        if self.plan_count >= PLAN_LIMIT:
            self._forget()
            for other in self.states.values():
                other.plans.clear()
            self.plan_count = 0
        st.plans[key] = plan
        self.plan_count += 1

    def _plan(self, agent: str, action: str, info: AgentInfo | None) -> _Plan:
        """Work out, once per agent version and action, which inputs the two sides' outcomes can depend on."""
        plan = _Plan(agent)
        fixed = [True, True]
        payload_keys: set[str] = set()
        whole = exact_n = reads_count = reads_name = False
        sources: list[str] = []
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
                if rule.program is None:
                    continue
                reads_name = reads_name or any(name == "agent" and (keys is None or "name" in keys)
                                               for name, keys in rule.fields)
                if rule.static:
                    continue
                sources.append(str(rule.source))
                for name, keys in rule.fields:
                    if name == "payload":
                        readers.append(rule.ref)
                        if keys is None:
                            whole = True
                        else:
                            payload_keys.update(keys)
                    elif name == "session":
                        if keys is None:
                            exact_n = plan.needs_session = True
                        else:
                            reads_count = reads_count or "count" in keys
                            plan.needs_session = plan.needs_session or "id" in keys
                    elif name == "now":
                        plan.uncached = True
            if readers and not self.payloads:
                plan.unevaluable[index] = (DENY, UNEVALUABLE, tuple(sorted(set(readers))), None)
        if whole:
            plan.mode = 2
        elif payload_keys:
            plan.mode = 1
            plan.keys = tuple(sorted(payload_keys))
            if self.fields:
                plan.getter = operator.attrgetter(*(self.fields[k] for k in plan.keys))
        if all(fixed):
            plan.constant = True
            plan.uncached = False
            plan.mode = 0
        boundaries = None if exact_n else count_boundaries(sources) if reads_count else ()
        plan.classes, plan.top = self._classes(boundaries)
        plan.limit = len(plan.classes)
        plan.extra = plan.needs_session or self.recorded
        if not (plan.extra or plan.uncached or plan.constant):
            plan.kind = 0 if plan.mode == 0 else 1 if plan.mode == 1 and plan.getter is not None else 2
        plan.shared = not self.recorded and self._signature(0, info, action) == self._signature(1, info, action)
        if info is not None and not plan.uncached and not plan.constant:
            found = self.profile_of.get((id(info), reads_name))
            if found is None:
                found = self.profile_of[(id(info), reads_name)] = _profile(info, reads_name)
            profile = (action, found, plan.mode, plan.keys, boundaries, plan.extra)
            plan.common = self.profiles.setdefault(profile, {})
        return plan

    def _classes(self, boundaries: tuple[int, ...] | None) -> tuple[Sequence[int], int]:
        """Outcome classes of the session count n, indexed by n - 1: n itself (None), else one id per distinct pair
        (frequency component, how many boundaries are below n); every n past the table's end has the class `top`."""
        found = self.class_tables.get(boundaries)
        if found is None:
            if boundaries is None:
                found = (range(1, _FAR), 0)
            else:
                end = max(self.saturation, boundaries[-1] + 2 if boundaries else 0)
                ids: dict[tuple[int, int], int] = {}
                table = [ids.setdefault((self.model.session_frequency(n), bisect_left(boundaries, n)), len(ids))
                         for n in range(1, end + 2)]
                found = (table[:-1], table[-1])
            self.class_tables[boundaries] = found
        return found

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

    def _forget(self) -> None:
        """Empty every memo (and the ids its keys use), so memory stays flat whatever the input."""
        for st in self.states.values():
            for plan in st.plans.values():
                plan.memo.clear()
                plan.places.clear()
                plan.target = plan.operation = False
        for outcomes in self.profiles.values():
            outcomes.clear()
        self.memo_size = 0

    def _miss_line(self, plan: _Plan, line: bytes, n: int, key: Any, chunk: Chunk, i: int) -> int:
        """A call the plan's memo does not know: known to another agent of the same profile, or decided."""
        rec = self.decode_full(line)
        common = None
        if key is not None and plan.common is not None:
            head, rest = (key, ()) if type(key) is int else (key[0], key[1:])
            common = (rec.target, rec.operation, head & _CLASS_MASK, *rest)
            found = plan.common.get(common)
            if found is not None:
                cell = self._cell(plan.agent, rec.action, *found)
                self._remember(plan, key, cell)
                return cell
        ts = rec.ts if rec.ts.tzinfo is not None else rec.ts.replace(tzinfo=UTC)
        return self._miss(plan, rec, ts, rec.session or "", n, key, _ABSENT, chunk, i, common)

    def _miss(self, plan: _Plan, rec: Activity, ts: datetime, session: str, n: int, key: Any,
              value: Any, chunk: Chunk, i: int, common: Any = None) -> int:
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
            self._remember(plan, key, cell)
            if common is not None and plan.common is not None:
                plan.common[common] = (base, proposed)
        return cell

    def _remember(self, plan: _Plan, key: Any, cell: int) -> None:
        if self.memo_size >= MEMO_LIMIT:
            self._forget()
            return  # the key's target id went with the memo
        plan.memo[key] = cell
        self.memo_size += 1

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
            self.flags.append((1 if approval else 0) | (2 if wanted else 0))
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
                self.flags[other] &= ~2

    def result(self) -> Tally:
        """The tally with counts keyed by (agent, action, outcomes) so tallies of processes can be merged."""
        self._new_day(self.day)
        tally = self.tally
        tally.events = sum(self.counts)
        tally.cells = {}
        for key, n in zip(self.cells, self.counts, strict=True):
            if n:
                tally.cells[key] = tally.cells.get(key, 0) + n
        return tally


def _profile(info: AgentInfo, name: bool) -> bytes:
    """Everything the engine knows of an agent but its name (unless a rule reads the name): agents with the same
    profile get the same outcomes for the same calls."""
    fields = dataclasses.asdict(info)
    fields.pop("cel")
    if not name:
        fields.pop("name")
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _instant(ts: datetime) -> datetime:
    """A call's time as the engine's session window sees it, in microseconds rounded from float seconds: the time
    itself from 1900 to 2040 (float seconds hold every microsecond there), else moved by at most a microsecond."""
    if _EXACT_FROM <= ts < _EXACT_UNTIL:
        return ts
    try:
        return _EPOCH + timedelta(microseconds=round(ts.timestamp() * _US))
    except OverflowError:
        return ts


def _minus(moment: datetime, span: timedelta) -> datetime | None:
    """`moment - span`, or None when that is before the earliest datetime (every call time is after it)."""
    try:
        return moment - span
    except OverflowError:
        return None


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
