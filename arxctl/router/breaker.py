"""Fleet-wide circuit breaking: atomic Lua scripts in Redis, an in-process mirror when Redis is unreachable.

N failures within the window open a provider's circuit until `open_until`; that deadline only ever moves
later. After it passes the circuit is half-open: one caller in the fleet holds a probe lease; the probe's
success closes the circuit, its failure re-opens it at once.
"""

from __future__ import annotations

import bisect
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from arxctl.clock import format_ts
from arxctl.errors import InputError
from arxctl.router.config import BreakerSettings, RedisSettings
from arxctl.router.errors import BreakerUnavailable

Clock = Callable[[], float]
REDIS = "redis"
LOCAL = "local"
CLOSED, OPEN, PROBE, PROBE_BUSY = 0, 1, 2, 3

ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local s = redis.call('HMGET', KEYS[1], 'open_until', 'tripped', 'probe_until')
local open_until = tonumber(s[1]) or 0
if open_until > now then return {1, open_until} end
if s[2] ~= '1' then return {0, open_until} end
if (tonumber(s[3]) or 0) > now then return {3, open_until} end
redis.call('HSET', KEYS[1], 'probe_until', now + lease)
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return {2, open_until}
"""

FAILURE_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local open = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], window)
local count = redis.call('ZCARD', KEYS[1])
local open_until = tonumber(redis.call('HGET', KEYS[2], 'open_until')) or 0
local opened = 0
if count >= threshold or ARGV[6] == '1' then
  if now + open > open_until then open_until = now + open end
  redis.call('HSET', KEYS[2], 'open_until', open_until, 'tripped', '1')
  redis.call('HDEL', KEYS[2], 'probe_until')
  local ttl = open_until - now + open
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
  opened = 1
end
return {count, open_until, opened}
"""

SUCCESS_LUA = """
local now = tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[2], 'open_until')) or 0
if open_until > now then
  redis.call('HDEL', KEYS[2], 'probe_until')
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

HEALTH_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local failures = redis.call('ZCOUNT', KEYS[1], '(' .. (now - window), '+inf')
local s = redis.call('HMGET', KEYS[2], 'open_until', 'tripped', 'probe_until')
return {failures, tonumber(s[1]) or 0, s[2] == '1' and 1 or 0, tonumber(s[3]) or 0}
"""


_GATE_STATES = {CLOSED: "closed", OPEN: "open", PROBE: "probe", PROBE_BUSY: "probe_in_flight"}


@dataclass(frozen=True, slots=True)
class Gate:
    """Whether a call may go to a provider now: closed, probe (the half-open lease), open, probe_in_flight."""

    provider: str
    state: str
    open_until: float | None
    mode: str

    @property
    def allowed(self) -> bool:
        return self.state in ("closed", "probe")

    @property
    def probe(self) -> bool:
        return self.state == "probe"


@dataclass(frozen=True, slots=True)
class Health:
    provider: str
    state: str
    failures: int
    open_until: float | None
    probe_in_flight: bool

    def to_dict(self) -> dict[str, Any]:
        until = format_ts(datetime.fromtimestamp(self.open_until, UTC)) if self.open_until else None
        return {
            "provider": self.provider, "state": self.state, "failures_in_window": self.failures,
            "open_until": until, "probe_in_flight": self.probe_in_flight,
        }


def _health(provider: str, now_ms: int, failures: int, open_until: int, tripped: bool, probe_until: int) -> Health:
    if open_until > now_ms:
        state = "open"
    elif tripped:
        state = "half-open"
    else:
        state = "closed"
    return Health(provider, state, failures, open_until / 1000 if open_until else None, probe_until > now_ms)


@dataclass(slots=True)
class _LocalState:
    failures: deque[int] = field(default_factory=deque)
    open_until: int = 0
    tripped: bool = False
    probe_until: int = 0


class LocalBreaker:
    """The same rules as the Lua scripts, for one process (thread-safe)."""

    def __init__(self, settings: BreakerSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _LocalState] = {}

    def _now(self) -> int:
        return int(self.clock() * 1000)

    def _trim(self, state: _LocalState, now: int) -> None:
        horizon = now - int(self.settings.window * 1000)
        while state.failures and state.failures[0] <= horizon:
            state.failures.popleft()

    def acquire(self, provider: str) -> tuple[int, int]:
        now = self._now()
        with self._lock:
            state = self._states.get(provider)
            if state is None:
                return CLOSED, 0
            if state.open_until > now:
                return OPEN, state.open_until
            if not state.tripped:
                return CLOSED, state.open_until
            if state.probe_until > now:
                return PROBE_BUSY, state.open_until
            state.probe_until = now + int(self.settings.probe_timeout * 1000)
            return PROBE, state.open_until

    def failure(self, provider: str, *, probe: bool) -> int:
        now = self._now()
        with self._lock:
            state = self._states.setdefault(provider, _LocalState())
            self._trim(state, now)
            bisect.insort(state.failures, now)
            if len(state.failures) >= self.settings.failures or probe:
                state.open_until = max(state.open_until, now + int(self.settings.open * 1000))
                state.tripped = True
                state.probe_until = 0
            return state.open_until

    def success(self, provider: str) -> None:
        now = self._now()
        with self._lock:
            state = self._states.get(provider)
            if state is None or not state.tripped:
                return
            if state.open_until > now:
                state.probe_until = 0
                return
            del self._states[provider]

    def release(self, provider: str) -> None:
        with self._lock:
            state = self._states.get(provider)
            if state is not None:
                state.probe_until = 0

    def health(self, provider: str) -> Health:
        now = self._now()
        with self._lock:
            state = self._states.get(provider)
            if state is None:
                return _health(provider, now, 0, 0, False, 0)
            self._trim(state, now)
            return _health(provider, now, len(state.failures), state.open_until, state.tripped, state.probe_until)


class RedisBreaker:
    """Breaker state in Redis, shared by every process; every update is one atomic script."""

    def __init__(self, client: Any, settings: BreakerSettings, clock: Clock, prefix: str = "arx:breaker") -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.prefix = prefix
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._failure = client.register_script(FAILURE_LUA)
        self._success = client.register_script(SUCCESS_LUA)
        self._health = client.register_script(HEALTH_LUA)

    def keys(self, provider: str) -> tuple[str, str]:
        """(failures sorted set, state hash); the hash tag keeps both in one Redis Cluster slot."""
        base = f"{self.prefix}:{{{provider}}}"
        return f"{base}:failures", f"{base}:state"

    def _now(self) -> int:
        return int(self.clock() * 1000)

    def acquire(self, provider: str) -> tuple[int, int]:
        lease = int(self.settings.probe_timeout * 1000)
        code, open_until = self._acquire(keys=[self.keys(provider)[1]], args=[self._now(), lease])
        return int(code), int(open_until)

    def failure(self, provider: str, *, probe: bool) -> int:
        s = self.settings
        member = f"{self._now()}-{uuid.uuid4().hex[:12]}"
        args = [self._now(), int(s.window * 1000), s.failures, int(s.open * 1000), member, "1" if probe else "0"]
        _, open_until, _ = self._failure(keys=list(self.keys(provider)), args=args)
        return int(open_until)

    def success(self, provider: str) -> None:
        self._success(keys=list(self.keys(provider)), args=[self._now()])

    def release(self, provider: str) -> None:
        self.client.hdel(self.keys(provider)[1], "probe_until")

    def health(self, provider: str) -> Health:
        now = self._now()
        failures, open_until, tripped, probe_until = self._health(
            keys=list(self.keys(provider)), args=[now, int(self.settings.window * 1000)]
        )
        return _health(provider, now, int(failures), int(open_until), bool(tripped), int(probe_until))


def connect_redis(url: str, timeout: float) -> Any:
    """A Redis client that fails fast (no retries, short timeouts), so fallback is quick."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ModuleNotFoundError:
        raise InputError("a Redis breaker needs the redis package: pip install 'arxctl[router]'") from None
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
    )


class Breaker:
    """Decides from Redis when reachable, else from the in-process mirror of this process's outcomes."""

    def __init__(
        self, settings: BreakerSettings, *, clock: Clock = time.time, redis_client: Any = None,
        redis_settings: RedisSettings = RedisSettings(),
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.local = LocalBreaker(settings, clock)
        self.remote: RedisBreaker | None = None
        self._errors: tuple[type[Exception], ...] = ()
        if redis_client is not None:
            from redis.exceptions import RedisError

            self.remote = RedisBreaker(redis_client, settings, clock, redis_settings.key_prefix)
            self._errors = (RedisError,)
        self.retry_after = redis_settings.retry_after
        self._redis_down_until = 0.0

    def _usable(self) -> RedisBreaker | None:
        """The Redis breaker unless Redis failed within the last `retry_after` seconds."""
        if self.remote is not None and self.clock() >= self._redis_down_until:
            return self.remote
        return None

    def _redis_failed(self) -> None:
        self._redis_down_until = self.clock() + self.retry_after

    def acquire(self, provider: str) -> Gate:
        """May a call go to this provider now? Takes the probe lease when the circuit is half-open."""
        remote, mode = self._usable(), REDIS
        code = open_until = 0
        if remote is not None:
            try:
                code, open_until = remote.acquire(provider)
            except self._errors:
                self._redis_failed()
                remote = None
        if remote is None:
            mode = LOCAL
            code, open_until = self.local.acquire(provider)
        return Gate(provider, _GATE_STATES[code], open_until / 1000 if open_until else None, mode)

    def failure(self, gate: Gate) -> str:
        """Count a provider failure; returns the mode that recorded it."""
        self.local.failure(gate.provider, probe=gate.probe and gate.mode == LOCAL)
        remote = self._usable() if gate.mode == REDIS else None
        if remote is not None:
            try:
                remote.failure(gate.provider, probe=gate.probe)
                return REDIS
            except self._errors:
                self._redis_failed()
        return LOCAL

    def success(self, gate: Gate) -> str:
        """A provider answered; a successful probe closes its circuit. Returns the mode that recorded it."""
        self.local.success(gate.provider)
        if gate.mode == REDIS and gate.probe:
            remote = self._usable()
            if remote is None:
                return LOCAL
            try:
                remote.success(gate.provider)
            except self._errors:
                self._redis_failed()
                return LOCAL
        return gate.mode

    def release(self, gate: Gate) -> None:
        """Give back a probe lease without a verdict (the call ended for a reason not about health)."""
        if not gate.probe:
            return
        self.local.release(gate.provider)
        remote = self._usable() if gate.mode == REDIS else None
        if remote is not None:
            try:
                remote.release(gate.provider)
            except self._errors:
                self._redis_failed()

    def health(self, providers: Iterable[str]) -> list[Health]:
        """Each provider's state from Redis (raises BreakerUnavailable) or, without Redis, from this process."""
        if self.remote is None:
            return [self.local.health(p) for p in providers]
        try:
            return [self.remote.health(p) for p in providers]
        except self._errors as exc:
            raise BreakerUnavailable(f"cannot read breaker state from Redis: {type(exc).__name__}") from None
