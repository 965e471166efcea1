"""A synthetic fleet and its activity (formats.md section 5): diurnal load, sessions, bursts, misbehaving agents."""

from __future__ import annotations

import math
import random
import re
import sys
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from arxctl.errors import InputError
from arxctl.policy.catalog import Catalog, builtin

HOURLY = (0.08, 0.06, 0.05, 0.05, 0.06, 0.10, 0.25, 0.55, 0.90, 1.00, 1.00, 0.95,
          0.80, 0.90, 1.00, 1.00, 0.90, 0.75, 0.50, 0.35, 0.25, 0.18, 0.12, 0.10)
WEEKEND = 0.35
WEEK_MEAN = (5 + 2 * WEEKEND) / 7
REGION_OFFSET_H = {"us-east": -5, "us-west": -8, "eu-west": 0, "eu-central": 1, "ap-south": 5, "ap-southeast": 8}
OPERATION_WEIGHT = {"read": 6.0, "write": 2.5, "destructive": 0.3, "containment": 0.5}
MISBEHAVIOURS = ("undeclared", "prod-target", "burst")
MISBEHAVING_SHARE = 0.03
UNDECLARED_SHARE = 0.04
PROD_TARGET_SHARE = 0.25
BURST_SHARE, BURST_SHARE_MISBEHAVING = 0.01, 0.12
MAX_SESSION_CALLS = 200
_US = 1_000_000
_HOUR_US = 3600 * _US
_DNS_LABEL = 63
_GZIP_CHUNK = 1 << 20
_LIST_VERBS = re.compile(r"^(list|query|search|scan|history|describe|select|soql|get_items)")
BUCKETS = ("bank-logs-prod", "bank-statements", "ml-features", "cs-exports", "audit-archive", "tmp-scratch")
CHANNELS = ("#ops", "#cs-triage", "#cloud-sec-alerts", "#ir-active", "#platform", "#general")
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1", "gpt-4.1-mini")


@dataclass(frozen=True, slots=True)
class Profile:
    """How one agent behaves: volume, session shape, time zone and misbehaviours."""

    calls_per_day: float
    session_calls: float
    gap_s: float
    utc_offset_h: int
    misbehaviour: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FleetAgent:
    """An Agent resource of the synthetic fleet and its behaviour."""

    doc: dict[str, Any]
    profile: Profile

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


@dataclass(slots=True)
class Summary:
    """What `generate` wrote."""

    events: int = 0
    bytes: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    agents: int = 0
    misbehaving: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "bytes": self.bytes, "first_ts": self.first_ts, "last_ts": self.last_ts,
                "agents": self.agents, "misbehaving": self.misbehaving}


def _clone_name(base: str, index: int) -> str:
    suffix = f"-{index:03d}"
    return base[: _DNS_LABEL - len(suffix)].rstrip("-") + suffix


def build_fleet(templates: Sequence[Mapping[str, Any]], count: int, seed: int,
                calls_per_day: float = 2000.0) -> list[FleetAgent]:
    """`count` agents: the templates themselves, then numbered clones of them (same connectors and labels)."""
    if count < 1:
        raise InputError("--agents must be at least 1")
    usable = sorted((t for t in templates if (t.get("spec") or {}).get("connectors")),
                    key=lambda t: str(t["metadata"]["name"]))
    if not usable:
        raise InputError("no Agent manifest with connectors to build the fleet from")
    rnd = random.Random(f"fleet:{seed}")
    docs: list[dict[str, Any]] = []
    taken = {str(t["metadata"]["name"]) for t in usable}
    for i in range(count):
        template = usable[i % len(usable)]
        if i < len(usable):
            docs.append(_plain(template))
            continue
        doc = _plain(template)
        name = _clone_name(str(template["metadata"]["name"]), i // len(usable))
        while name in taken:
            name = _clone_name(name, i)
        taken.add(name)
        doc["metadata"]["name"] = name
        docs.append(doc)
    bad = set()
    if count >= 3:
        bad = set(rnd.sample(range(count), max(1, round(count * MISBEHAVING_SHARE))))
    volumes = [math.exp(rnd.gauss(0.0, 0.45)) for _ in range(count)]
    scale = count / sum(volumes)
    fleet = []
    for i, doc in enumerate(docs):
        region = str((doc["metadata"].get("labels") or {}).get("region", ""))
        kinds: tuple[str, ...] = ()
        if i in bad:
            kinds = tuple(sorted(rnd.sample(MISBEHAVIOURS, rnd.choice((1, 2)))))
        profile = Profile(
            calls_per_day=calls_per_day * volumes[i] * scale,
            session_calls=rnd.uniform(4.0, 14.0),
            gap_s=rnd.uniform(2.0, 20.0),
            utc_offset_h=REGION_OFFSET_H.get(region, rnd.choice((-5, 0, 1))),
            misbehaviour=kinds,
        )
        fleet.append(FleetAgent(doc, profile))
    return fleet


def _plain(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-plain deep copy of an Agent resource (apiVersion, kind, metadata, spec)."""
    metadata = doc.get("metadata") or {}
    meta: dict[str, Any] = {"name": metadata["name"]}
    if metadata.get("labels"):
        meta["labels"] = dict(metadata["labels"])
    return orjson.loads(orjson.dumps({"apiVersion": doc.get("apiVersion", "arx.dev/v1alpha1"), "kind": "Agent",
                                      "metadata": meta, "spec": doc.get("spec") or {}}))


@dataclass(slots=True)
class _Choice:
    """One action an agent may call: the target it goes to and how to build its payload."""

    action: str
    target: dict[str, str]
    env: str
    system: str
    payload: Callable[[random.Random], dict[str, Any]]


@dataclass(slots=True)
class _Runner:
    """Per-agent generation state: its RNG, its action tables and its session counter."""

    index: int
    name: str
    profile: Profile
    rnd: random.Random
    entries: list[list[_Choice]]
    undeclared: list[_Choice]
    sessions: int = 0


def _table(choices: list[tuple[_Choice, float]], size: int = 64) -> list[_Choice]:
    """A lookup table that draws each choice with its weight (uniform index into the table)."""
    total = sum(w for _, w in choices)
    table: list[_Choice] = []
    for choice, weight in choices:
        table.extend([choice] * max(1, round(size * weight / total)))
    return table


def _runner(index: int, agent: FleetAgent, catalog: Catalog, seed: int) -> _Runner:
    entries: list[list[_Choice]] = []
    declared: set[str] = set()
    used: set[str] = set()
    for item in agent.doc["spec"].get("connectors") or []:
        target = item.get("target") or {}
        system = str(target.get("system") or item["name"])
        env = str(target.get("env") or "prod")
        weighted = []
        for action in item.get("actions") or []:
            info = catalog.lookup(action)
            operation = info.operation if info else "write"
            declared.add(action)
            weighted.append((_Choice(action, {"system": system, "env": env}, env, system,
                                     payload_factory(action, operation)), OPERATION_WEIGHT.get(operation, 1.0)))
        if weighted:
            entries.append(_table(weighted))
            used.add(str(item["name"]))
    undeclared = []
    for action, info in sorted(catalog.actions.items()):
        if info.connector in used and action not in declared:
            undeclared.append(_Choice(action, {"system": f"{info.connector}-prod", "env": "prod"}, "prod",
                                      f"{info.connector}-prod", payload_factory(action, info.operation)))
    return _Runner(index, agent.name, agent.profile, random.Random(f"agent:{seed}:{agent.name}"), entries,
                   undeclared)


def payload_factory(action: str, operation: str) -> Callable[[random.Random], dict[str, Any]]:
    """A function drawing a plausible payload for an action: known shapes first, then one per operation class."""
    connector, _, rest = action.partition(".")
    resource, _, verb = rest.partition(".")
    if action == "servicenow.change.close":
        return lambda r: {"change_ids": [f"CHG{r.randrange(10**6):07d}" for _ in range(1 if r.random() < 0.85
                                                                                    else r.randint(2, 3))],
                          "close_code": "successful" if r.random() < 0.95 else "unsuccessful"}
    if action == "aws.s3.put_bucket_acl":
        return lambda r: {"bucket": r.choice(BUCKETS), "acl": "private" if r.random() < 0.96 else "public-read"}
    if action == "aws.iam.attach_user_policy":
        return lambda r: {"user_name": f"svc-{r.randrange(400)}", "policy_arn": "arn:aws:iam::aws:policy/" + (
            "ReadOnlyAccess" if r.random() < 0.97 else "AdministratorAccess")}
    if connector == "aws" and resource == "s3":
        return lambda r: {"bucket": r.choice(BUCKETS), "key": f"obj/{r.randrange(10**6)}"}
    if connector == "slack" and resource == "chat":
        return lambda r: {"channel": r.choice(CHANNELS), "text": f"update {r.randrange(10**5)}"}
    if connector in ("openai", "anthropic") and verb in ("create", "count_tokens"):
        return lambda r: {"model": r.choice(MODELS), "max_tokens": r.choice((512, 1024, 4096))}
    if operation == "containment":
        return lambda r: {"device_id": f"{r.getrandbits(128):032x}"}
    if operation == "read":
        if _LIST_VERBS.match(verb):
            return lambda r: {"query": f"{resource}:{r.choice(('open', 'recent', 'assigned', 'all'))}",
                              "limit": r.choice((20, 50, 100))}
        return lambda r: {"id": f"{resource}-{r.randrange(10**6)}"}

    def write(r: random.Random) -> dict[str, Any]:
        bulk = r.random() < 0.05
        payload: dict[str, Any] = {"id": f"{resource}-{r.randrange(10**6)}", "mode": "bulk" if bulk else "single",
                                   "count": r.randint(2, 40) if bulk else 1}
        if r.random() < 0.1:
            payload["reason"] = "urgent: customer impact" if r.random() < 0.3 else "routine"
        return payload

    return write


def _hour_rate(profile: Profile, hour_start_us: int) -> float:
    """Expected calls in the UTC hour starting at `hour_start_us` for this agent."""
    local = datetime.fromtimestamp(hour_start_us / _US, UTC) + timedelta(hours=profile.utc_offset_h)
    weekday = 1.0 if local.weekday() < 5 else WEEKEND
    return profile.calls_per_day * HOURLY[local.hour] / sum(HOURLY) * weekday / WEEK_MEAN


def _sessions(runner: _Runner, hour_start_us: int) -> Iterator[tuple[int, int, bytes]]:
    """The events of the sessions this agent starts in one hour: (t_us, seq, line)."""
    profile = runner.profile
    rnd = runner.rnd
    rate = _hour_rate(profile, hour_start_us) / profile.session_calls
    if rate <= 0 or not runner.entries:
        return
    bursty = "burst" in profile.misbehaviour
    undeclared = runner.undeclared if "undeclared" in profile.misbehaviour else []
    prod_target = "prod-target" in profile.misbehaviour
    random_ = rnd.random
    expo = rnd.expovariate
    t = expo(rate) * 3600.0
    seq = 0
    while t < 3600.0:
        runner.sessions += 1
        session = f"s-{runner.index:x}-{runner.sessions:x}"
        burst = random_() < (BURST_SHARE_MISBEHAVING if bursty else BURST_SHARE)
        if burst:
            calls = rnd.randint(25, 80)
        else:
            calls = min(MAX_SESSION_CALLS, 1 + int(expo(1.0 / max(profile.session_calls - 1.0, 0.5))))
        primary = runner.entries[int(random_() * len(runner.entries))]
        at = hour_start_us + int(t * _US)
        for _ in range(calls):
            table = primary if random_() < 0.8 else runner.entries[int(random_() * len(runner.entries))]
            choice = table[int(random_() * len(table))]
            if undeclared and random_() < UNDECLARED_SHARE:
                choice = undeclared[int(random_() * len(undeclared))]
            target = choice.target
            if prod_target and choice.env != "prod" and random_() < PROD_TARGET_SHARE:
                target = {"system": choice.system, "env": "prod"}
            record = {"ts": _format_us(at), "agent": runner.name, "session": session, "action": choice.action,
                      "target": target, "payload": choice.payload(rnd)}
            seq += 1
            yield at, seq, orjson.dumps(record)
            gap = rnd.uniform(0.2, 1.5) if burst else 0.05 + expo(1.0 / profile.gap_s)
            at += int(gap * _US)
        t += expo(rate) * 3600.0


_DAY_PREFIX: dict[int, str] = {}


def _format_us(t_us: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-04-14T09:15:03.120Z."""
    day, rest = divmod(t_us, 86_400 * _US)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")
        _DAY_PREFIX[day] = prefix
    seconds, micros = divmod(rest, _US)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{micros // 1000:03d}Z"


def generate(fleet: Sequence[FleetAgent], *, days: int, seed: int, start: datetime,
             catalog: Catalog | None = None) -> Iterator[bytes]:
    """Activity lines (without newline) for `days` days from `start`, in timestamp order."""
    if days < 1:
        raise InputError("--days must be at least 1")
    catalog = catalog or builtin()
    runners = [_runner(i, agent, catalog, seed) for i, agent in enumerate(fleet)]
    first = int(start.astimezone(UTC).timestamp()) * _US
    end = first + days * 24 * _HOUR_US
    pending: list[tuple[int, int, int, bytes]] = []
    for hour in range(days * 24):
        hour_start = first + hour * _HOUR_US
        for runner in runners:
            pending.extend((at, runner.index, seq, line) for at, seq, line in _sessions(runner, hour_start))
        pending.sort()
        horizon = min(hour_start + _HOUR_US, end)
        cut = bisect_left(pending, (horizon,))
        for item in pending[:cut]:
            yield item[3]
        del pending[:cut]


def write(lines: Iterator[bytes], out: Path | None, *, level: int = 6, summary: Summary | None = None,
          stream: IO[bytes] | None = None) -> Summary:
    """Write NDJSON lines to `out` (gzip when it ends in .gz) or to `stream`; atomic for files."""
    summary = summary or Summary()
    compress = out is not None and out.name.endswith(".gz")
    target: IO[bytes]
    temp: Path | None = None
    if out is None:
        target = stream or sys.stdout.buffer
    else:
        temp = out.with_name(f".{out.name}.partial")
        try:
            target = temp.open("wb")
        except OSError as exc:
            raise InputError(f"{out}: cannot write: {exc}") from None
    try:
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31) if compress else None
        batch: list[bytes] = []
        size = 0
        last: bytes | None = None
        for line in lines:
            if summary.events == 0:
                summary.first_ts = orjson.loads(line)["ts"]
            summary.events += 1
            batch.append(line)
            size += len(line) + 1
            last = line
            if size >= _GZIP_CHUNK:
                _flush(target, compressor, batch, summary)
                batch, size = [], 0
        _flush(target, compressor, batch, summary)
        if compressor is not None:
            tail = compressor.flush()
            target.write(tail)
            summary.bytes += len(tail)
        if last is not None:
            summary.last_ts = orjson.loads(last)["ts"]
    except BaseException:
        if temp is not None:
            target.close()
            temp.unlink(missing_ok=True)
        raise
    if temp is not None and out is not None:
        target.close()
        temp.replace(out)
    else:
        target.flush()
    return summary


def _flush(target: IO[bytes], compressor: Any, batch: list[bytes], summary: Summary) -> None:
    if not batch:
        return
    data = b"\n".join(batch) + b"\n"
    if compressor is not None:
        data = compressor.compress(data)
    target.write(data)
    summary.bytes += len(data)


def default_start(now: datetime, days: int) -> datetime:
    """Midnight UTC `days` days before today, so the activity ends today."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def fleet_manifests(fleet: Sequence[FleetAgent]) -> str:
    """The fleet's Agent resources as one multi-document YAML text (to register before a replay)."""
    import yaml

    header = "# Generated by `arxctl activity generate`: the synthetic fleet's Agent manifests.\n"
    return header + yaml.safe_dump_all([a.doc for a in fleet], sort_keys=False, default_flow_style=None)


def misbehaving(fleet: Sequence[FleetAgent]) -> dict[str, list[str]]:
    return {a.name: list(a.profile.misbehaviour) for a in fleet if a.profile.misbehaviour}


def start_from(text: str | None, now: datetime, days: int) -> datetime:
    """`--start` (an RFC 3339 date or timestamp), else `default_start`."""
    if not text:
        return default_start(now, days)
    from arxctl.clock import parse_ts

    try:
        return parse_ts(text if "T" in text else f"{text}T00:00:00Z")
    except ValueError:
        raise InputError(f"--start {text!r} is not a date (2026-04-01) or an RFC 3339 timestamp") from None



def templates(store: Any, manifests: Sequence[Path], catalog: Catalog) -> list[dict[str, Any]]:
    """The Agent resources to build a fleet from: `--manifests` files, else the registered agents."""
    if manifests:
        from arxctl.policy.simulate import load_agent_docs

        return load_agent_docs(manifests, catalog)
    if store is None:
        raise InputError("no arxctl state here: register agents first, or give --manifests DIR")
    from arxctl.registry import resources as registry

    docs = [v.doc for _, v in registry.current(store, "Agent")]
    if not docs:
        raise InputError("no registered agents: register some first, or give --manifests DIR")
    return docs


def generate_file(
    docs: Sequence[Mapping[str, Any]], *, agents: int, days: int, seed: int, start: datetime, out: Path | None,
    calls_per_day: float = 2000.0, level: int = 6, catalog: Catalog | None = None,
    manifests_out: Path | None = None,
) -> Summary:
    """Build the fleet, write its activity (and, when asked, its Agent manifests) and say what was written."""
    if calls_per_day <= 0:
        raise InputError("--calls-per-day must be greater than 0")
    if not 0 <= level <= 9:
        raise InputError("--level must be 0-9")
    fleet = build_fleet(docs, agents, seed, calls_per_day)
    if manifests_out is not None:
        try:
            manifests_out.write_text(fleet_manifests(fleet), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{manifests_out}: cannot write: {exc.strerror or exc}") from None
    summary = Summary(agents=len(fleet), misbehaving=misbehaving(fleet))
    return write(generate(fleet, days=days, seed=seed, start=start, catalog=catalog), out, level=level,
                 summary=summary)
