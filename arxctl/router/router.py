"""The agent-facing API: one call in, the first healthy provider in order answers, every attempt audited.

Transient failures (auth, rate limit, quota, overload, 5xx, timeouts, dropped connections) hand the call to
the next provider before the agent sees an error. Bad requests and content-policy refusals are raised at
once and never re-routed. A stream that fails after text reached the caller is raised, not re-routed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arxctl.clock import format_ts
from arxctl.errors import InputError
from arxctl.router.audit import AuditRow, AuditSink, ChainSink, build_body, outcome_of
from arxctl.router.breaker import LOCAL, REDIS, Breaker, Clock, Gate, Health, connect_redis
from arxctl.router.config import BreakerSettings, RouterConfig, default_config, load_config, redact_url
from arxctl.router.errors import (
    BreakerUnavailable,
    LLMBadRequest,
    LLMBadResponse,
    LLMCircuitOpen,
    LLMError,
    LLMNoModel,
    LLMRejection,
    LLMStreamInterrupted,
    LLMUnavailable,
)
from arxctl.router.providers import Params, Provider, make_provider
from arxctl.router.types import Attempt, Completion, Message, Response, Usage, normalize_messages, prompt_digest

DEFAULT_TIER = "frontier"
PING: tuple[dict[str, str], ...] = ({"role": "user", "content": "Reply with the single word: ok"},)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _until(moment: float | None) -> str:
    return format_ts(datetime.fromtimestamp(moment, UTC)) if moment else "unknown"


@dataclass(slots=True)
class _Call:
    """The running record of one call: attempts so far, breaker mode, and the audit row at the end."""

    router: Router
    model_tier: str
    agent: str | None
    session: str | None
    actor: str | None
    stream: bool
    messages: tuple[Message, ...] = ()
    digest: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    modes: set[str] = field(default_factory=set)
    skipped_until: list[float] = field(default_factory=list)

    @property
    def breaker(self) -> str:
        if self.router.breaker.remote is None or LOCAL in self.modes:
            return LOCAL
        return REDIS

    def candidates(self) -> Iterator[tuple[Provider, str, Gate]]:
        """Providers in the caller's order whose circuit lets a call through; the others are recorded."""
        for name in self.router.config.order_for(self.agent):
            provider = self.router.providers[name]
            model = provider.spec.models.get(self.model_tier)
            if model is None:
                self.attempts.append(Attempt(name, False, LLMNoModel.__name__, "no_model_for_tier"))
                continue
            gate = self.router.breaker.acquire(name)
            self.modes.add(gate.mode)
            if not gate.allowed:
                reason = "circuit_open" if gate.state == "open" else gate.state
                self.attempts.append(Attempt(name, False, LLMCircuitOpen.__name__, reason, model=model))
                if gate.open_until:
                    self.skipped_until.append(gate.open_until)
                continue
            yield provider, model, gate

    def failed(self, provider: Provider, model: str, gate: Gate, exc: LLMError, start: float) -> None:
        self.attempts.append(Attempt(provider.name, False, exc.kind, exc.error_type, exc.status_code, _ms(start),
                                     model))
        breaker = self.router.breaker
        if exc.counts_for_breaker:
            self.modes.add(breaker.failure(gate))
        elif isinstance(exc, LLMRejection):
            self.modes.add(breaker.success(gate))
        else:
            breaker.release(gate)

    def succeeded(self, provider: Provider, model: str, gate: Gate, start: float, status: int = 200) -> None:
        self.attempts.append(Attempt(provider.name, True, None, None, status, _ms(start), model))
        self.modes.add(self.router.breaker.success(gate))

    def write(self, outcome: str, *, provider_used: str | None, model: str | None, usage: Usage,
              error: LLMError | None) -> None:
        body = build_body(
            model_tier=self.model_tier, session=self.session, stream=self.stream, outcome=outcome,
            provider_used=provider_used, model=model, attempts=self.attempts, usage=usage,
            prompt_digest=self.digest, breaker=self.breaker, error=error,
        )
        self.router.audit(AuditRow(self.agent, self.actor or self.agent, body))

    def fail(self, exc: LLMError, *, provider_used: str | None = None, model: str | None = None,
             usage: Usage = Usage()) -> LLMError:
        """Record the failed call and return the error for the caller to raise."""
        exc.attempts = tuple(self.attempts)
        exc.provider_used = provider_used
        exc.breaker = self.breaker
        self.write(outcome_of(exc), provider_used=provider_used, model=model, usage=usage, error=exc)
        return exc

    def exhausted(self) -> LLMError:
        """The error when no provider answered: circuit-open when none was even contacted."""
        contacted = [a for a in self.attempts if a.kind not in (LLMCircuitOpen.__name__, LLMNoModel.__name__)]
        if not contacted and self.skipped_until:
            until = min(self.skipped_until)
            skipped = [a for a in self.attempts if a.kind == LLMCircuitOpen.__name__]
            names = ", ".join(a.provider for a in skipped)
            if all(a.error_type == "circuit_open" for a in skipped):
                message = f"circuit open for every provider ({names}); next retry after {_until(until)}"
            else:
                message = f"circuit open or half-open with a probe in flight for every provider ({names})"
            return self.fail(LLMCircuitOpen(message, open_until=until))
        summary = "; ".join(
            f"{a.provider}: {a.kind}" + (f" ({a.status_code})" if a.status_code else "") for a in self.attempts
        )
        return self.fail(LLMUnavailable(f"no provider answered: {summary}"))

    def response(self, provider: Provider, completion: Completion) -> Response:
        self.write("ok", provider_used=provider.name, model=completion.model or self.attempts[-1].model,
                   usage=completion.usage, error=None)
        return Response(
            text=completion.text, provider=provider.name, model=completion.model or self.attempts[-1].model or "",
            model_tier=self.model_tier, stop_reason=completion.stop_reason, usage=completion.usage,
            failover_hops=len(self.attempts) - 1, attempts=tuple(self.attempts), breaker=self.breaker,
            prompt_digest=self.digest or "",
        )


class ChatStream:
    """Text deltas as they arrive; `response` holds the finished Response once the stream is exhausted."""

    def __init__(self) -> None:
        self.response: Response | None = None
        self._items: Iterator[str] = iter(())

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        return next(self._items)

    def close(self) -> None:
        """Stop early; the call is recorded as cancelled."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Router:
    """Routes chat calls across providers in order, with fleet-wide circuit breaking and an audit row each."""

    def __init__(
        self, config: RouterConfig, providers: Mapping[str, Provider], breaker: Breaker, audit: AuditSink,
        *, owned: Iterable[Any] = (),
    ) -> None:
        self.config = config
        self.providers = dict(providers)
        self.breaker = breaker
        self.audit = audit
        self._owned = list(owned)

    @classmethod
    def from_config(
        cls, config: RouterConfig | Path | str | None = None, *, audit: AuditSink | None = None,
        store: Any = None, clock: Clock = time.time, redis_client: Any = None, redis_url: str | None = None,
        env: Mapping[str, str] | None = None, transport: Any = None,
    ) -> Router:
        """Build a router from a config (object, file, or None for the defaults) and an audit sink or store.

        The breaker uses `redis_client`, else `redis_url`, else the config's `redis.url`, else `$ARX_REDIS_URL`;
        with none of them it is in-process only. An audit sink (a callable) or a store is required.
        """
        if isinstance(config, str | Path):
            config = load_config(Path(config))
        cfg = config if config is not None else default_config()
        environ = os.environ if env is None else env
        if audit is None:
            if store is None:
                raise InputError("Router needs an audit sink: pass audit=<callable> or store=<Store>")
            audit = ChainSink(store)
        owned: list[Any] = []
        if redis_client is None:
            url = redis_url or cfg.redis.url or environ.get("ARX_REDIS_URL")
            if url:
                redis_client = connect_redis(url, cfg.redis.timeout)
                owned.append(redis_client)
        breaker = Breaker(cfg.breaker, clock=clock, redis_client=redis_client, redis_settings=cfg.redis)
        providers = {p.name: make_provider(p, env=environ, transport=transport) for p in cfg.providers}
        owned.extend(providers.values())
        return cls(cfg, providers, breaker, audit, owned=owned)

    def _begin(self, messages: Iterable[Any], model_tier: str, agent: str | None, session: str | None,
               actor: str | None, stream: bool) -> _Call:
        call = _Call(self, model_tier, agent, session, actor, stream)
        try:
            call.messages = normalize_messages(messages)
            call.digest = prompt_digest(call.messages)
            order = self.config.order_for(agent)
            if not any(model_tier in self.providers[name].spec.models for name in order):
                tiers = sorted({t for name in order for t in self.providers[name].spec.models})
                raise LLMBadRequest(f"unknown model tier '{model_tier}'; configured: {', '.join(tiers)}",
                                    error_type="model_tier")
        except LLMBadRequest as exc:
            raise call.fail(exc) from None
        return call

    def chat(
        self, messages: Iterable[Mapping[str, Any] | Message], *, model_tier: str = DEFAULT_TIER,
        agent: str | None = None, session: str | None = None, actor: str | None = None,
        max_tokens: int = 1024, temperature: float | None = None,
    ) -> Response:
        """Send a chat to the first healthy provider in order; raises only when none can answer."""
        call = self._begin(messages, model_tier, agent, session, actor, stream=False)
        params = Params(max_tokens, temperature)
        for provider, model, gate in call.candidates():
            start = time.perf_counter()
            try:
                completion = provider.complete(model, call.messages, params)
            except LLMError as exc:
                call.failed(provider, model, gate, exc, start)
                if not exc.failover:
                    raise call.fail(exc) from None
                continue
            except Exception as exc:
                bad = LLMBadResponse(f"{provider.name}: unreadable response ({type(exc).__name__})",
                                     provider=provider.name, error_type="unreadable")
                call.failed(provider, model, gate, bad, start)
                continue
            call.succeeded(provider, model, gate, start)
            return call.response(provider, completion)
        raise call.exhausted()

    def stream(
        self, messages: Iterable[Mapping[str, Any] | Message], *, model_tier: str = DEFAULT_TIER,
        agent: str | None = None, session: str | None = None, actor: str | None = None,
        max_tokens: int = 1024, temperature: float | None = None,
    ) -> ChatStream:
        """Stream a chat: fails over until the first text arrives; after that a failure is raised, not re-routed."""
        call = self._begin(messages, model_tier, agent, session, actor, stream=True)
        holder = ChatStream()
        holder._items = self._stream(call, Params(max_tokens, temperature), holder)
        return holder

    def _stream(self, call: _Call, params: Params, holder: ChatStream) -> Iterator[str]:
        for provider, model, gate in call.candidates():
            start = time.perf_counter()
            delivered = 0
            completion: Completion | None = None
            items = provider.stream(model, call.messages, params)
            try:
                for item in items:
                    if isinstance(item, Completion):
                        completion = item
                    else:
                        delivered += len(item)
                        yield item
            except GeneratorExit:
                items.close()
                call.attempts.append(Attempt(provider.name, True, None, "cancelled", 200, _ms(start), model))
                self.breaker.release(gate)
                call.write("cancelled", provider_used=provider.name, model=model, usage=Usage(), error=None)
                raise
            except Exception as exc:
                items.close()
                error = exc if isinstance(exc, LLMError) else LLMBadResponse(
                    f"{provider.name}: unreadable stream ({type(exc).__name__})", provider=provider.name,
                    error_type="unreadable")
                call.failed(provider, model, gate, error, start)
                if not error.failover:
                    raise call.fail(error, provider_used=provider.name, model=model) from None
                if delivered:
                    interrupted = LLMStreamInterrupted(
                        f"{provider.name}: stream failed after {delivered} characters reached the caller "
                        f"({error.kind}); not re-routed", cause_kind=error.kind, delivered_chars=delivered,
                        provider=provider.name, status_code=error.status_code, error_type=error.error_type)
                    raise call.fail(interrupted, provider_used=provider.name, model=model) from None
                continue
            assert completion is not None
            call.succeeded(provider, model, gate, start)
            holder.response = call.response(provider, completion)
            return
        raise call.exhausted()

    def check(self, *, model_tier: str = DEFAULT_TIER, agent: str | None = None, actor: str | None = None,
              session: str | None = None) -> CheckResult:
        """Send a tiny request through the chain of providers (what `arxctl router test` runs)."""
        try:
            response = self.chat(PING, model_tier=model_tier, agent=agent, actor=actor, session=session,
                                 max_tokens=16)
        except LLMBadRequest as exc:
            if exc.provider is None:
                raise InputError(str(exc)) from None
            return CheckResult(False, exc.provider_used, exc.attempts, None, str(exc), exc.breaker or LOCAL)
        except LLMError as exc:
            return CheckResult(False, exc.provider_used, exc.attempts, None, str(exc), exc.breaker or LOCAL)
        return CheckResult(True, response.provider, response.attempts, response.text, None, response.breaker)

    def health(self) -> list[Health]:
        """Each configured provider's breaker state (from Redis when configured)."""
        return self.breaker.health(p.name for p in self.config.providers)

    def close(self) -> None:
        for thing in self._owned:
            thing.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of a test call through the chain."""

    ok: bool
    provider_used: str | None
    attempts: tuple[Attempt, ...]
    text: str | None
    error: str | None
    breaker: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "provider_used": self.provider_used, "failover_hops": max(0, len(self.attempts) - 1),
            "breaker": self.breaker, "text": self.text, "error": self.error,
            "attempts": [a.to_dict() for a in self.attempts],
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Every configured provider's breaker state as Redis holds it."""

    redis: str
    settings: BreakerSettings
    kinds: tuple[str, ...]
    providers: tuple[Health, ...]

    @property
    def healthy(self) -> bool:
        return all(h.state == "closed" for h in self.providers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "redis": self.redis, "healthy": self.healthy,
            "breaker": {"failures": self.settings.failures, "window_s": self.settings.window,
                        "open_s": self.settings.open, "probe_timeout_s": self.settings.probe_timeout},
            "providers": [h.to_dict() | {"kind": kind} for kind, h in zip(self.kinds, self.providers, strict=True)],
        }


def fleet_status(
    config: RouterConfig, redis_url: str | None = None, *, clock: Clock = time.time,
    env: Mapping[str, str] | None = None,
) -> StatusReport:
    """Read each provider's breaker state from Redis (`redis_url`, else the config's, else $ARX_REDIS_URL)."""
    environ = os.environ if env is None else env
    url = redis_url or config.redis.url or environ.get("ARX_REDIS_URL")
    if not url:
        raise InputError("no Redis configured: pass --redis URL, set redis.url in router.yaml, or ARX_REDIS_URL")
    shown = redact_url(url)
    try:
        client = connect_redis(url, config.redis.timeout)
    except ValueError as exc:
        raise InputError(f"invalid Redis URL {shown}: {exc}") from None
    try:
        breaker = Breaker(config.breaker, clock=clock, redis_client=client, redis_settings=config.redis)
        try:
            health = breaker.health(p.name for p in config.providers)
        except BreakerUnavailable:
            raise BreakerUnavailable(f"cannot read breaker state from Redis at {shown}") from None
    finally:
        client.close()
    return StatusReport(shown, config.breaker, tuple(p.kind for p in config.providers), tuple(health))
