"""Routing against loopback providers: failover, re-raised rejections, streams, the breaker, the audit row."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from arxctl.router import Router
from arxctl.router.config import BreakerSettings, ProviderSpec, RouterConfig
from arxctl.router.errors import (
    LLMBadRequest,
    LLMCircuitOpen,
    LLMRefusal,
    LLMStreamInterrupted,
    LLMUnavailable,
)
from tests.router import fakes
from tests.router.conftest import ANTHROPIC_KEY, OPENAI_KEY, FakeClock, Rows, free_port, make_config
from tests.router.fakes import FakeProvider

HI = [{"role": "user", "content": "hi"}]
DIGEST = "sha256:" + hashlib.sha256(
    json.dumps([{"content": "hi", "role": "user"}], separators=(",", ":"), sort_keys=True).encode()
).hexdigest()
USAGE = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


def attempt(provider: str, kind: str | None = None, error_type: str | None = None, status: int | None = None,
            *, ok: bool = False, model: str | None = None) -> dict[str, Any]:
    default_model = "claude-test-frontier" if provider == "anthropic" else "gpt-test-frontier"
    return {"provider": provider, "model": model or default_model, "ok": ok, "kind": kind,
            "error_type": error_type, "status_code": status}


def success(provider: str) -> dict[str, Any]:
    return attempt(provider, status=200, ok=True)


def expected(*attempts: dict[str, Any], outcome: str = "ok", provider_used: str | None = "openai",
             model: str | None = "gpt-test-frontier", usage: dict[str, int] = USAGE, stream: bool = False,
             breaker: str = "local", error: dict[str, Any] | None = None, session: str | None = None,
             tier: str = "frontier", digest: str | None = DIGEST) -> dict[str, Any]:
    return {
        "action_type": "llm.chat", "connector": "llm", "model_tier": tier, "session": session, "stream": stream,
        "outcome": outcome, "provider_used": provider_used, "model": model,
        "failover_hops": max(0, len(attempts) - 1), "attempts": list(attempts), "usage": usage,
        "prompt_digest": digest, "breaker": breaker, "error": error,
    }


def body(rows: Rows, index: int = -1) -> dict[str, Any]:
    """The row's body with each attempt's latency checked and removed (the only non-deterministic field)."""
    data = copy.deepcopy(rows[index].body)
    for a in data["attempts"]:
        latency = a.pop("latency_ms")
        assert isinstance(latency, float) and latency >= 0
    return data


@pytest.fixture
def router(anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows, clock: FakeClock
           ) -> Iterator[Router]:
    with Router.from_config(make_config(anthropic, openai, read_timeout=0.5), audit=rows, clock=clock) as r:
        yield r


def test_the_primary_answers(router: Router, rows: Rows, openai: FakeProvider) -> None:
    response = router.chat(HI, agent="triage-cs-01", session="s-1")
    assert (response.text, response.provider, response.model, response.failover_hops) == (
        "hello from the fake", "anthropic", "claude-test-frontier", 0)
    assert (response.usage.total_tokens, response.stop_reason, response.breaker) == (18, "end_turn", "local")
    assert openai.hits == 0
    assert (rows[-1].agent, rows[-1].actor) == ("triage-cs-01", "triage-cs-01")
    assert body(rows) == expected(success("anthropic"), provider_used="anthropic", model="claude-test-frontier",
                                  session="s-1")


@pytest.mark.parametrize(
    ("behaviour", "kind", "error_type", "status"),
    [
        (fakes.error(401, "authentication_error", "invalid x-api-key"), "LLMAuthError", "authentication_error", 401),
        (fakes.error(403, "permission_error", "organization suspended"), "LLMAuthError", "permission_error", 403),
        (fakes.error(429, "rate_limit_error", "slow down"), "LLMRateLimitError", "rate_limit_error", 429),
        (fakes.error(529, "overloaded_error", "Overloaded"), "LLMOverloadedError", "overloaded_error", 529),
        (fakes.error(500, "api_error", "Internal server error"), "LLMServerError", "api_error", 500),
        (fakes.raw(502, b"<html>502 Bad Gateway</html>"), "LLMServerError", None, 502),
        (fakes.slow(5.0), "LLMTimeoutError", "read_timeout", None),
        (fakes.drop(), "LLMConnectionError", "dropped", None),
        (fakes.raw(200, b"{not json"), "LLMBadResponse", "bad_json", None),
        (fakes.raw(200, b'{"content": 3}', "application/json"), "LLMBadResponse", "bad_shape", None),
    ],
)
def test_transient_failures_hand_the_call_to_the_next_provider(
    router: Router, rows: Rows, anthropic: FakeProvider, openai: FakeProvider, behaviour: fakes.Behaviour,
    kind: str, error_type: str | None, status: int | None,
) -> None:
    anthropic.then(behaviour)
    response = router.chat(HI)
    assert (response.provider, response.failover_hops, response.text) == ("openai", 1, "hello from the fake")
    assert (anthropic.hits, openai.hits) == (1, 1)
    assert body(rows) == expected(attempt("anthropic", kind, error_type, status), success("openai"))


def test_openai_first_fails_over_to_anthropic_on_quota(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows
) -> None:
    openai.then(fakes.error(429, "insufficient_quota", "You exceeded your current quota", code="insufficient_quota"))
    with Router.from_config(make_config(openai, anthropic), audit=rows) as router:
        response = router.chat(HI)
    assert response.provider == "anthropic"
    assert body(rows) == expected(attempt("openai", "LLMQuotaError", "insufficient_quota", 429),
                                  success("anthropic"), provider_used="anthropic", model="claude-test-frontier")


def test_a_refused_connection_fails_over(openai: FakeProvider, keys: dict, rows: Rows) -> None:
    closed = ProviderSpec("anthropic", "anthropic", f"http://127.0.0.1:{free_port()}", "ANTHROPIC_API_KEY",
                          {"frontier": "claude-test-frontier"}, connect_timeout=1.0, read_timeout=1.0)
    config = make_config(openai)
    config = RouterConfig(providers=(closed, *config.providers), order=("anthropic", "openai"))
    with Router.from_config(config, audit=rows) as router:
        assert router.chat(HI).provider == "openai"
    assert body(rows) == expected(attempt("anthropic", "LLMConnectionError", "connect_error"), success("openai"))


@pytest.mark.parametrize(
    ("flavor", "behaviour", "cls", "kind", "error_type", "status", "outcome"),
    [
        ("anthropic", fakes.error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000"),
         LLMBadRequest, "LLMBadRequest", "invalid_request_error", 400, "bad_request"),
        ("anthropic", fakes.error(400, "invalid_request_error", "Output blocked by content filtering policy"),
         LLMRefusal, "LLMRefusal", "invalid_request_error", 400, "refused"),
        ("anthropic", fakes.refusal(), LLMRefusal, "LLMRefusal", "refusal", None, "refused"),
        ("openai", fakes.error(400, "invalid_request_error", "This model's maximum context length is 128000",
                               code="context_length_exceeded"),
         LLMBadRequest, "LLMBadRequest", "context_length_exceeded", 400, "bad_request"),
        ("openai", fakes.error(400, "invalid_request_error", "Your request was rejected by our safety system",
                               code="content_policy_violation"),
         LLMRefusal, "LLMRefusal", "content_policy_violation", 400, "refused"),
        ("openai", fakes.refusal(), LLMRefusal, "LLMRefusal", "refusal", None, "refused"),
    ],
)
def test_bad_requests_and_refusals_are_raised_at_once_and_never_re_routed(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows, flavor: str,
    behaviour: fakes.Behaviour, cls: type, kind: str, error_type: str, status: int | None, outcome: str,
) -> None:
    first, second = (anthropic, openai) if flavor == "anthropic" else (openai, anthropic)
    first.then(behaviour)
    with Router.from_config(make_config(first, second), audit=rows) as router, pytest.raises(cls) as info:
        router.chat(HI)
    assert second.hits == 0
    assert info.value.attempts[0].kind == kind
    model = "claude-test-frontier" if flavor == "anthropic" else "gpt-test-frontier"
    assert body(rows) == expected(
        attempt(flavor, kind, error_type, status), outcome=outcome, provider_used=None, model=None,
        usage=NO_USAGE, error={"kind": kind, "error_type": error_type, "provider": flavor},
    ) | {"attempts": [attempt(flavor, kind, error_type, status, model=model)]}


def test_a_refusal_does_not_count_against_the_provider(
    router: Router, anthropic: FakeProvider, clock: FakeClock
) -> None:
    for _ in range(6):
        anthropic.then(fakes.refusal())
        with pytest.raises(LLMRefusal):
            router.chat(HI)
    assert router.health()[0].to_dict()["failures_in_window"] == 0
    assert router.chat(HI).provider == "anthropic"


def test_when_every_provider_fails_the_error_lists_each_attempt(
    router: Router, rows: Rows, anthropic: FakeProvider, openai: FakeProvider
) -> None:
    anthropic.then(fakes.error(529, "overloaded_error", "Overloaded"))
    openai.then(fakes.error(500, "server_error", "boom"))
    with pytest.raises(LLMUnavailable) as info:
        router.chat(HI)
    assert str(info.value) == "no provider answered: anthropic: LLMOverloadedError (529); openai: LLMServerError (500)"
    assert [a.kind for a in info.value.attempts] == ["LLMOverloadedError", "LLMServerError"]
    assert body(rows) == expected(
        attempt("anthropic", "LLMOverloadedError", "overloaded_error", 529),
        attempt("openai", "LLMServerError", "server_error", 500),
        outcome="unavailable", provider_used=None, model=None, usage=NO_USAGE,
        error={"kind": "LLMUnavailable", "error_type": None, "provider": None},
    )


def test_a_single_provider_is_protected_by_its_breaker(
    anthropic: FakeProvider, keys: dict, rows: Rows, clock: FakeClock
) -> None:
    anthropic.default = fakes.error(529, "overloaded_error", "Overloaded")
    with Router.from_config(make_config(anthropic), audit=rows, clock=clock) as router:
        for _ in range(5):
            with pytest.raises(LLMUnavailable):
                router.chat(HI)
            clock.advance(1)
        with pytest.raises(LLMCircuitOpen) as info:
            router.chat(HI)
        assert anthropic.hits == 5
        assert str(info.value) == (
            "circuit open for every provider (anthropic); next retry after 2026-04-14T10:02:04Z")
        assert info.value.open_until == 1_776_160_924.0
        assert body(rows) == expected(
            attempt("anthropic", "LLMCircuitOpen", "circuit_open"), outcome="circuit_open", provider_used=None,
            model=None, usage=NO_USAGE, error={"kind": "LLMCircuitOpen", "error_type": None, "provider": None},
        )
        clock.advance(119)
        anthropic.default = fakes.ok()
        response = router.chat(HI)
        assert (response.provider, anthropic.hits) == ("anthropic", 6)
        assert router.health()[0].state == "closed"


def test_an_open_primary_is_skipped_without_contacting_it(
    router: Router, rows: Rows, anthropic: FakeProvider, openai: FakeProvider
) -> None:
    anthropic.default = fakes.error(503, "overloaded_error", "busy")
    for _ in range(5):
        router.chat(HI)
    assert anthropic.hits == 5
    response = router.chat(HI)
    assert (response.provider, response.failover_hops, anthropic.hits) == ("openai", 1, 5)
    assert body(rows) == expected(attempt("anthropic", "LLMCircuitOpen", "circuit_open"), success("openai"))


def test_a_missing_key_skips_the_provider_without_tripping_it(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with Router.from_config(make_config(anthropic, openai), audit=rows) as router:
        for _ in range(6):
            assert router.chat(HI).provider == "openai"
        assert router.health()[0].failures == 0
    assert anthropic.hits == 0
    assert body(rows) == expected(attempt("anthropic", "LLMMissingKey", "missing_api_key"), success("openai"))


def test_an_agent_order_overrides_the_org_order(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows
) -> None:
    config = make_config(anthropic, openai, agents={"openai-first": ("openai", "anthropic")})
    with Router.from_config(config, audit=rows) as router:
        assert router.chat(HI, agent="openai-first").provider == "openai"
        assert router.chat(HI, agent="someone-else").provider == "anthropic"


def test_a_provider_without_the_tier_is_skipped(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows
) -> None:
    config = make_config(anthropic, openai)
    only_openai = ProviderSpec("openai", "openai", openai.base_url, "OPENAI_API_KEY", {"vision": "gpt-test-v"})
    config = RouterConfig(providers=(config.providers[0], only_openai), order=config.order)
    with Router.from_config(config, audit=rows) as router:
        response = router.chat(HI, model_tier="vision")
    assert (response.provider, response.model) == ("openai", "gpt-test-v")
    assert body(rows) == expected(
        {"provider": "anthropic", "model": None, "ok": False, "kind": "LLMNoModel",
         "error_type": "no_model_for_tier", "status_code": None},
        attempt("openai", status=200, ok=True, model="gpt-test-v"), tier="vision", model="gpt-test-v",
    )


@pytest.mark.parametrize(
    ("messages", "tier", "message"),
    [
        ([{"role": "user", "content": "hi"}], "huge",
         "unknown model tier 'huge'; configured: fast, frontier"),
        ([{"role": "robot", "content": "hi"}], "frontier", "messages[0].role must be one of: assistant, system, user"),
        ([{"role": "user", "content": ["hi"]}], "frontier", "messages[0].content must be a string"),
        ([{"role": "system", "content": "be brief"}], "frontier",
         "messages need at least one user or assistant message"),
    ],
)
def test_bad_calls_are_refused_before_any_provider_and_recorded(
    router: Router, rows: Rows, anthropic: FakeProvider, messages: list, tier: str, message: str
) -> None:
    with pytest.raises(LLMBadRequest) as info:
        router.chat(messages, model_tier=tier)
    assert str(info.value) == message
    assert anthropic.hits == 0
    assert body(rows) == expected(
        outcome="bad_request", provider_used=None, model=None, usage=NO_USAGE, tier=tier,
        error={"kind": "LLMBadRequest", "error_type": "model_tier" if tier == "huge" else "messages",
               "provider": None},
        digest=None if tier == "frontier" else DIGEST,
    )


def test_without_an_audit_sink_there_is_no_router(anthropic: FakeProvider) -> None:
    from arxctl.errors import InputError

    with pytest.raises(InputError) as info:
        Router.from_config(make_config(anthropic))
    assert str(info.value) == "Router needs an audit sink: pass audit=<callable> or store=<Store>"


def test_keys_never_reach_rows_or_errors(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows
) -> None:
    anthropic.then(fakes.error(401, "authentication_error", f"invalid x-api-key {ANTHROPIC_KEY}"))
    openai.then(fakes.error(400, "invalid_request_error", f"Incorrect API key provided: {OPENAI_KEY}",
                            code="invalid_value"))
    with Router.from_config(make_config(anthropic, openai), audit=rows) as router, \
            pytest.raises(LLMBadRequest) as info:
        router.chat(HI)
    assert str(info.value) == "openai: invalid_value (HTTP 400): Incorrect API key provided: [redacted]"
    dumped = json.dumps([r.body for r in rows]) + str(info.value) + repr(info.value.attempts)
    assert ANTHROPIC_KEY not in dumped and OPENAI_KEY not in dumped
    assert anthropic.received[0].headers["x-api-key"] == ANTHROPIC_KEY


# ------------------------------------------------------------------ streaming


def test_a_stream_delivers_deltas_then_the_response(router: Router, rows: Rows) -> None:
    stream = router.stream(HI, session="s-2")
    assert list(stream) == ["hello f", "rom the", " fake"]
    assert stream.response is not None
    assert (stream.response.text, stream.response.usage.total_tokens) == ("hello from the fake", 18)
    assert body(rows) == expected(success("anthropic"), provider_used="anthropic", model="claude-test-frontier",
                                  stream=True, session="s-2")


def test_an_openai_stream_reports_usage(anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows
                                        ) -> None:
    with Router.from_config(make_config(openai, anthropic), audit=rows) as router:
        stream = router.stream(HI)
        assert "".join(stream) == "hello from the fake"
    assert stream.response is not None
    assert (stream.response.usage.to_dict(), stream.response.stop_reason) == (USAGE, "stop")
    assert openai.received[0].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("behaviour", "kind", "error_type", "status"),
    [
        (fakes.stream_cut(0), "LLMConnectionError", "dropped", None),
        (fakes.stream_cut(0, clean_eof=True), "LLMConnectionError", "stream_cut", None),
        (fakes.stream_error(0, "overloaded_error", "Overloaded"), "LLMOverloadedError", "overloaded_error", None),
        (fakes.error(429, "rate_limit_error", "slow down"), "LLMRateLimitError", "rate_limit_error", 429),
        (fakes.slow(5.0), "LLMTimeoutError", "read_timeout", None),
        (fakes.drop(), "LLMConnectionError", "dropped", None),
    ],
)
def test_a_stream_that_fails_before_any_text_fails_over(
    router: Router, rows: Rows, anthropic: FakeProvider, behaviour: fakes.Behaviour, kind: str,
    error_type: str | None, status: int | None,
) -> None:
    anthropic.then(behaviour)
    stream = router.stream(HI)
    assert "".join(stream) == "hello from the fake"
    assert stream.response is not None and stream.response.provider == "openai"
    assert body(rows) == expected(attempt("anthropic", kind, error_type, status), success("openai"), stream=True)


@pytest.mark.parametrize(
    ("behaviour", "kind", "error_type"),
    [
        (fakes.stream_cut(2), "LLMConnectionError", "dropped"),
        (fakes.stream_cut(2, clean_eof=True), "LLMConnectionError", "stream_cut"),
        (fakes.stream_error(2, "overloaded_error", "Overloaded"), "LLMOverloadedError", "overloaded_error"),
    ],
)
def test_a_stream_that_fails_after_text_reached_the_caller_is_raised_not_re_routed(
    router: Router, rows: Rows, anthropic: FakeProvider, openai: FakeProvider, behaviour: fakes.Behaviour,
    kind: str, error_type: str,
) -> None:
    anthropic.then(behaviour)
    received: list[str] = []
    with pytest.raises(LLMStreamInterrupted) as info:
        for delta in router.stream(HI):
            received.append(delta)
    assert received == ["hello from", " the fake"]
    assert (info.value.cause_kind, info.value.delivered_chars, openai.hits) == (kind, 19, 0)
    assert str(info.value) == (
        f"anthropic: stream failed after 19 characters reached the caller ({kind}); not re-routed")
    assert body(rows) == expected(
        attempt("anthropic", kind, error_type), outcome="interrupted", provider_used="anthropic",
        model="claude-test-frontier", usage=NO_USAGE, stream=True,
        error={"kind": "LLMStreamInterrupted", "error_type": error_type, "provider": "anthropic"},
    )


@pytest.mark.parametrize(
    ("flavor", "behaviour", "error_type", "status", "delivered"),
    [
        ("anthropic", fakes.stream_refusal(2), "refusal", None, ["hello from", " the fake"]),
        ("anthropic", fakes.stream_refusal(0), "refusal", None, []),
        ("openai", fakes.stream_refusal(2), "refusal", None, ["hello from", " the fake"]),
        ("openai", fakes.stream_error(1, "invalid_request_error", "flagged", code="content_policy_violation"),
         "content_policy_violation", None, ["hello from the fake"]),
        ("anthropic", fakes.error(400, "invalid_request_error", "Output blocked by content filtering policy"),
         "invalid_request_error", 400, []),
    ],
)
def test_a_refusal_in_a_stream_is_raised_and_never_re_routed(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows, flavor: str,
    behaviour: fakes.Behaviour, error_type: str, status: int | None, delivered: list[str],
) -> None:
    first, second = (anthropic, openai) if flavor == "anthropic" else (openai, anthropic)
    first.then(behaviour)
    received: list[str] = []
    with Router.from_config(make_config(first, second), audit=rows) as router, pytest.raises(LLMRefusal):
        for delta in router.stream(HI):
            received.append(delta)
    assert (received, second.hits) == (delivered, 0)
    model = "claude-test-frontier" if flavor == "anthropic" else "gpt-test-frontier"
    assert body(rows) == expected(
        attempt(flavor, "LLMRefusal", error_type, status), outcome="refused", provider_used=flavor, model=model,
        usage=NO_USAGE, stream=True, error={"kind": "LLMRefusal", "error_type": error_type, "provider": flavor},
    )


def test_a_stream_closed_by_the_caller_is_recorded_as_cancelled(router: Router, rows: Rows) -> None:
    with router.stream(HI) as stream:
        assert next(stream) == "hello f"
    assert body(rows) == expected(
        attempt("anthropic", None, "cancelled", 200, ok=True), outcome="cancelled", provider_used="anthropic",
        model="claude-test-frontier", usage=NO_USAGE, stream=True,
    )


def test_the_breaker_field_says_redis_when_redis_decided(
    anthropic: FakeProvider, keys: dict, rows: Rows, redis_client: Any
) -> None:
    with Router.from_config(make_config(anthropic), audit=rows, redis_client=redis_client) as router:
        router.chat(HI)
    assert body(rows)["breaker"] == "redis"


def test_the_breaker_field_says_local_when_redis_is_unreachable(
    anthropic: FakeProvider, keys: dict, rows: Rows
) -> None:
    config = make_config(anthropic, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with Router.from_config(config, audit=rows) as router:
        assert router.chat(HI).breaker == "local"
    assert body(rows)["breaker"] == "local"


def test_breaker_numbers_come_from_the_config(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows, clock: FakeClock
) -> None:
    anthropic.default = fakes.error(500, "api_error", "boom")
    config = make_config(anthropic, openai, breaker=BreakerSettings(failures=2, window=10, open=30))
    with Router.from_config(config, audit=rows, clock=clock) as router:
        router.chat(HI)
        router.chat(HI)
        router.chat(HI)
        assert anthropic.hits == 2
        clock.advance(30)
        anthropic.default = fakes.ok()
        assert router.chat(HI).provider == "anthropic"


def test_a_refusal_from_the_half_open_probe_closes_the_circuit(
    anthropic: FakeProvider, keys: dict, rows: Rows, clock: FakeClock
) -> None:
    anthropic.default = fakes.error(500, "api_error", "boom")
    with Router.from_config(make_config(anthropic), audit=rows, clock=clock) as router:
        for _ in range(5):
            with pytest.raises(LLMUnavailable):
                router.chat(HI)
        clock.advance(120)
        anthropic.default = fakes.refusal()
        with pytest.raises(LLMRefusal):
            router.chat(HI)
        assert [h.state for h in router.health()] == ["closed"]


def test_a_stream_with_no_provider_left_raises_unavailable(
    router: Router, rows: Rows, anthropic: FakeProvider, openai: FakeProvider
) -> None:
    anthropic.then(fakes.error(529, "overloaded_error", "Overloaded"))
    openai.then(fakes.stream_cut(0))
    stream = router.stream(HI)
    with pytest.raises(LLMUnavailable):
        next(stream)
    assert body(rows) == expected(
        attempt("anthropic", "LLMOverloadedError", "overloaded_error", 529),
        attempt("openai", "LLMConnectionError", "dropped"),
        outcome="unavailable", provider_used=None, model=None, usage=NO_USAGE, stream=True,
        error={"kind": "LLMUnavailable", "error_type": None, "provider": None},
    )


def test_while_another_caller_probes_a_single_provider_calls_fail_fast(
    anthropic: FakeProvider, keys: dict, rows: Rows, clock: FakeClock
) -> None:
    anthropic.default = fakes.error(500, "api_error", "boom")
    with Router.from_config(make_config(anthropic), audit=rows, clock=clock) as router:
        for _ in range(5):
            with pytest.raises(LLMUnavailable):
                router.chat(HI)
        clock.advance(120)
        assert router.breaker.acquire("anthropic").state == "probe"
        with pytest.raises(LLMCircuitOpen) as info:
            router.chat(HI)
    assert str(info.value) == (
        "circuit open or half-open with a probe in flight for every provider (anthropic)")
    assert anthropic.hits == 5
    assert body(rows)["attempts"] == [attempt("anthropic", "LLMCircuitOpen", "probe_in_flight")]
