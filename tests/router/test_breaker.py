"""The breaker's windows with an injected clock, in Redis (Lua) and in-process, which must agree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arxctl.router.breaker import Breaker, Gate, connect_redis
from arxctl.router.config import BreakerSettings, RedisSettings
from arxctl.router.errors import BreakerUnavailable
from tests.router.conftest import T0, FakeClock, free_port, start_redis

MakeBreaker = Callable[..., Breaker]


@pytest.fixture(params=["redis", "local"])
def make_breaker(request: pytest.FixtureRequest) -> Iterator[MakeBreaker]:
    """A breaker on Redis (a flushed database) or on in-process state."""
    if request.param == "redis":
        client = request.getfixturevalue("redis_client")

        def build(clock: FakeClock, s: BreakerSettings = BreakerSettings()) -> Breaker:
            return Breaker(s, clock=clock, redis_client=client)

        yield build
    else:

        def build(clock: FakeClock, s: BreakerSettings = BreakerSettings()) -> Breaker:
            return Breaker(s, clock=clock)

        yield build


def fail(breaker: Breaker, provider: str = "anthropic") -> Gate:
    gate = breaker.acquire(provider)
    assert gate.allowed
    breaker.failure(gate)
    return gate


def test_five_failures_in_the_window_open_the_circuit_for_120_seconds(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    breaker = make_breaker(clock)
    for _ in range(4):
        fail(breaker)
        clock.advance(1)
    assert breaker.health(["anthropic"])[0].to_dict() == {
        "provider": "anthropic", "state": "closed", "failures_in_window": 4, "open_until": None,
        "probe_in_flight": False,
    }
    fail(breaker)
    gate = breaker.acquire("anthropic")
    assert (gate.state, gate.open_until) == ("open", T0 + 4 + 120)
    assert breaker.health(["anthropic"])[0].to_dict() == {
        "provider": "anthropic", "state": "open", "failures_in_window": 5, "open_until": "2026-04-14T10:02:04Z",
        "probe_in_flight": False,
    }
    clock.advance(119.999)
    assert breaker.acquire("anthropic").state == "open"
    assert breaker.acquire("openai").state == "closed"


def test_failures_older_than_the_window_do_not_count(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    breaker = make_breaker(clock)
    for _ in range(4):
        fail(breaker)
    clock.advance(60)
    fail(breaker)
    assert breaker.acquire("anthropic").state == "closed"
    assert breaker.health(["anthropic"])[0].failures == 1


def test_after_the_deadline_one_probe_goes_through_and_its_success_closes(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    breaker = make_breaker(clock)
    for _ in range(5):
        fail(breaker)
    clock.advance(120)
    probe = breaker.acquire("anthropic")
    assert (probe.state, probe.allowed) == ("probe", True)
    assert breaker.health(["anthropic"])[0].state == "half-open"
    other = breaker.acquire("anthropic")
    assert (other.state, other.allowed) == ("probe_in_flight", False)
    breaker.success(probe)
    assert breaker.acquire("anthropic").state == "closed"
    assert breaker.health(["anthropic"])[0].failures == 0


def test_a_failed_probe_reopens_at_once(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    breaker = make_breaker(clock)
    for _ in range(5):
        fail(breaker)
    clock.advance(130)
    probe = breaker.acquire("anthropic")
    assert probe.state == "probe"
    breaker.failure(probe)
    gate = breaker.acquire("anthropic")
    assert (gate.state, gate.open_until) == ("open", T0 + 130 + 120)


def test_an_abandoned_probe_lease_expires(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    breaker = make_breaker(clock)
    for _ in range(5):
        fail(breaker)
    clock.advance(120)
    assert breaker.acquire("anthropic").state == "probe"
    clock.advance(29.9)
    assert breaker.acquire("anthropic").state == "probe_in_flight"
    clock.advance(0.1)
    assert breaker.acquire("anthropic").state == "probe"


def test_a_released_probe_lease_lets_the_next_caller_probe(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    breaker = make_breaker(clock)
    for _ in range(5):
        fail(breaker)
    clock.advance(120)
    probe = breaker.acquire("anthropic")
    breaker.release(probe)
    assert breaker.acquire("anthropic").state == "probe"


def test_a_racing_writer_with_an_earlier_clock_never_shortens_the_deadline(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    breaker = make_breaker(clock)
    clock.now = T0 + 100
    for _ in range(5):
        fail(breaker)
    assert breaker.acquire("anthropic").open_until == T0 + 220
    clock.now = T0
    breaker.failure(Gate("anthropic", "closed", None, breaker.acquire("anthropic").mode))
    clock.now = T0 + 100
    assert breaker.acquire("anthropic").open_until == T0 + 220
    clock.now = T0 + 150
    breaker.failure(Gate("anthropic", "closed", None, breaker.acquire("anthropic").mode))
    assert breaker.acquire("anthropic").open_until == T0 + 270


def test_two_breakers_with_skewed_clocks_share_one_deadline_in_redis(redis_client: object) -> None:
    ahead, behind = FakeClock(T0 + 100), FakeClock(T0)
    first = Breaker(BreakerSettings(), clock=ahead, redis_client=redis_client)
    second = Breaker(BreakerSettings(), clock=behind, redis_client=redis_client)
    for _ in range(5):
        fail(first)
    for _ in range(5):
        second.failure(Gate("anthropic", "closed", None, "redis"))
    assert second.acquire("anthropic").open_until == T0 + 220
    assert first.acquire("anthropic").open_until == T0 + 220


def test_every_number_is_configurable(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    breaker = make_breaker(clock, BreakerSettings(failures=2, window=10, open=30, probe_timeout=5))
    fail(breaker)
    clock.advance(10)
    fail(breaker)
    assert breaker.acquire("anthropic").state == "closed"
    fail(breaker)
    assert breaker.acquire("anthropic").open_until == T0 + 10 + 30
    clock.advance(30)
    assert breaker.acquire("anthropic").state == "probe"
    clock.advance(5)
    assert breaker.acquire("anthropic").state == "probe"


def test_redis_keys_carry_ttls(redis_client: object, clock: FakeClock) -> None:
    breaker = Breaker(BreakerSettings(), clock=clock, redis_client=redis_client)
    fail(breaker)
    failures, state = breaker.remote.keys("anthropic")  # type: ignore[union-attr]
    assert failures == "arx:breaker:{anthropic}:failures"
    assert 59_000 < redis_client.pttl(failures) <= 60_000  # type: ignore[attr-defined]
    assert redis_client.exists(state) == 0  # type: ignore[attr-defined]
    for _ in range(4):
        fail(breaker)
    assert 239_000 < redis_client.pttl(state) <= 240_000  # type: ignore[attr-defined]


def test_an_unreachable_redis_falls_back_to_local_state_and_comes_back(tmp_path: Path, clock: FakeClock) -> None:
    port = free_port()
    client = connect_redis(f"redis://127.0.0.1:{port}/0", 0.25)
    breaker = Breaker(BreakerSettings(), clock=clock, redis_client=client,
                      redis_settings=RedisSettings(retry_after=5.0))
    for _ in range(5):
        gate = fail(breaker)
        assert gate.mode == "local"
    gate = breaker.acquire("anthropic")
    assert (gate.state, gate.mode) == ("open", "local")
    with pytest.raises(BreakerUnavailable) as info:
        breaker.health(["anthropic"])
    assert str(info.value) == "cannot read breaker state from Redis: ConnectionError"
    server = start_redis(tmp_path, port)
    try:
        clock.advance(4.9)
        assert breaker.acquire("openai").mode == "local"
        clock.advance(0.1)
        gate = breaker.acquire("openai")
        assert (gate.state, gate.mode) == ("closed", "redis")
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
        client.close()


OPS = st.lists(
    st.tuples(st.sampled_from(["fail", "probe-ok", "probe-fail"]), st.integers(0, 400_000)),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_open_deadline_never_moves_earlier(redis_client: object, ops: list[tuple[str, int]]) -> None:
    """Whatever the interleaving and however skewed the writers' clocks, `open_until` only grows."""
    redis_client.flushdb()  # type: ignore[attr-defined]
    clock = FakeClock()
    remote = Breaker(BreakerSettings(), clock=clock, redis_client=redis_client)
    local = Breaker(BreakerSettings(), clock=clock)
    highest = {"redis": 0.0, "local": 0.0}
    for op, offset_ms in ops:
        clock.now = T0 + offset_ms / 1000
        for name, breaker in (("redis", remote), ("local", local)):
            gate = breaker.acquire("p")
            if op == "fail" or (op == "probe-fail" and gate.probe):
                breaker.failure(Gate("p", gate.state if gate.probe else "closed", None, gate.mode))
            elif op == "probe-ok" and gate.probe:
                breaker.success(gate)
            health = breaker.health(["p"])[0]
            if health.open_until is None:
                highest[name] = 0.0
            else:
                assert health.open_until >= highest[name]
                highest[name] = health.open_until
