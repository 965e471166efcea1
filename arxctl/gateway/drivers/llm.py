"""`llm.chat.create` through the arxctl router: ordered failover, the circuit breaker, every attempt recorded.

The credential is JSON mapping the router config's key variables to keys (`{"ANTHROPIC_API_KEY": ...}`): the
router reads keys from it instead of the process environment. A router is built per credential version, so a
rotation takes effect on the next call; its breaker state lives in Redis when the router config names one.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from arxctl.gateway.drivers.base import JSON, NOT_SUPPORTED, Caller, Current, Downstream, DriverError

ACTION = "llm.chat.create"
MAX_TOKENS = 32_768
_ROUTERS_MAX = 8


class LlmDriver:
    """Sends chats through an arxctl Router built from the gateway's router config."""

    connector = "llm"

    def __init__(self, router_config: Path | None = None) -> None:
        self.router_config = router_config
        self._routers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._rows = threading.local()

    def supports(self, action: str) -> bool:
        return action == ACTION

    def _collect(self, row: Any) -> None:
        self._rows.last = row

    def _router(self, secret: bytes) -> Any:
        key = hashlib.sha256(secret).hexdigest()
        with self._lock:
            found = self._routers.get(key)
        if found is not None:
            return found
        try:
            env = orjson.loads(secret)
        except orjson.JSONDecodeError:
            env = None
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise DriverError(502, "credential-unusable", "the llm credential must be a JSON object of key variables")
        from arxctl.router import Router

        router = Router.from_config(self.router_config, audit=self._collect, env=env)
        with self._lock:
            if len(self._routers) >= _ROUTERS_MAX:
                self._routers.clear()
            self._routers[key] = router
        return router

    def _chat(self, payload: Mapping[str, Any], secret: bytes, caller: Caller) -> tuple[int, dict[str, Any],
                                                                                       dict[str, Any] | None]:
        from arxctl.router import LLMBadRequest, LLMCircuitOpen, LLMError, LLMRefusal, LLMUnavailable

        messages = payload.get("messages")
        tier = payload.get("model_tier", "frontier")
        max_tokens = payload.get("max_tokens", 1024)
        temperature = payload.get("temperature")
        if not isinstance(messages, list) or not messages:
            raise DriverError(400, "bad-payload", "payload.messages must be a non-empty list")
        if not isinstance(tier, str):
            raise DriverError(400, "bad-payload", "payload.model_tier must be a string")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
            raise DriverError(400, "bad-payload", f"payload.max_tokens must be an integer from 1 to {MAX_TOKENS}")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, int | float)):
            raise DriverError(400, "bad-payload", "payload.temperature must be a number")
        router = self._router(secret)
        self._rows.last = None
        try:
            answer = router.chat(messages, model_tier=tier, agent=caller.agent, session=caller.session,
                                 max_tokens=max_tokens, temperature=temperature)
        except LLMError as exc:
            status = 400 if isinstance(exc, LLMBadRequest) else 422 if isinstance(exc, LLMRefusal) else 503 \
                if isinstance(exc, LLMCircuitOpen | LLMUnavailable) else 502
            row = self._rows.last
            return status, {"error": {"kind": exc.kind, "message": str(exc)}}, row.body if row else None
        row = self._rows.last
        body = {"text": answer.text, "provider": answer.provider, "model": answer.model,
                "model_tier": answer.model_tier, "stop_reason": answer.stop_reason, "usage": answer.usage.to_dict(),
                "failover_hops": answer.failover_hops}
        return 200, body, row.body if row else None

    async def call(self, action: str, payload: Mapping[str, Any], secret: bytes, caller: Caller) -> Downstream:
        import anyio

        if action != ACTION:
            raise DriverError(501, "action-not-supported", f"{action} is not an LLM action the gateway drives")
        status, body, evidence = await anyio.to_thread.run_sync(self._chat, payload, secret, caller)
        ok = status == 200
        error = None if ok else str(body["error"]["kind"])
        return Downstream(status, orjson.dumps(body), JSON, (), ok, error, 1, evidence)

    async def current(self, action: str, payload: Mapping[str, Any], secret: bytes) -> Current:
        return NOT_SUPPORTED

    def blast(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {"objects": 1, "object": "completion", "requests": 1}

    async def close(self) -> None:
        with self._lock:
            routers = list(self._routers.values())
            self._routers.clear()
        for router in routers:
            router.close()
