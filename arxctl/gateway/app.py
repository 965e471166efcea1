"""The gateway's ASGI app (Starlette): HTTP in, `Gateway` calls, HTTP out.

    POST /v1/calls              {action, payload, session, target?, reasoning?, approval?}, bearer = the handle
    GET  /v1/approvals/{id}     the agent's poll of its own approval (same bearer)
    GET  /metrics               Prometheus text: per-agent health, state, audit
    GET  /healthz               the process is up
    GET  /readyz                200 only while a valid enforcement state is loaded and the audit log is writable
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from arxctl.gateway.calls import MAX_REQUEST_BYTES, Answer, Gateway

DRIFT_EVERY_S = 0.2
STATUS_RETRY_S = 1.0
HEALTH_EVERY = 25
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _response(answer: Answer) -> Response:
    return Response(answer.body, answer.status, headers=dict(answer.headers), media_type=answer.content_type)


async def _body(request: Request) -> bytes:
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            break
        chunks.append(chunk)
    return b"".join(chunks) if size <= MAX_REQUEST_BYTES else b" " * (MAX_REQUEST_BYTES + 1)


def build_app(gateway: Gateway, *, on_start: Callable[[], Any] | None = None,
              on_stop: Callable[[], Any] | None = None) -> Starlette:
    """The app around a gateway; `on_start`/`on_stop` run inside the server's event loop (driver sessions)."""

    async def calls(request: Request) -> Response:
        return _response(await gateway.call(_bearer(request), await _body(request)))

    async def approval(request: Request) -> Response:
        return _response(await gateway.approval(_bearer(request), request.path_params["approval_id"]))

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(gateway.metrics(), media_type=PROMETHEUS)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        snapshot = gateway.enforcer.snapshot
        if snapshot.error is not None:
            return PlainTextResponse(f"not ready: {snapshot.error}\n", status_code=503)
        if not gateway.log.healthy:
            return PlainTextResponse("not ready: the audit log cannot be written\n", status_code=503)
        return PlainTextResponse(f"ready: {snapshot.source} {snapshot.revision}\n")

    async def drift_loop() -> None:
        ticks = 0
        while True:
            await asyncio.sleep(DRIFT_EVERY_S)
            ticks += 1
            try:
                for line in await gateway.respond_to_drift():
                    gateway.warn(f"live drift: {line}")
                if ticks % HEALTH_EVERY == 0:
                    gateway.write_health()
            except Exception as exc:
                gateway.warn(f"live drift or health report failed: {type(exc).__name__}: {exc}")

    async def status_loop(every_s: float) -> None:
        """Cluster mode: retry failed hold writes every second, write health into Agent statuses every `every_s`."""
        loop = asyncio.get_running_loop()
        next_report = loop.time() + every_s
        while True:
            await asyncio.sleep(min(every_s, STATUS_RETRY_S))
            due = loop.time() >= next_report
            if due:
                next_report = loop.time() + every_s
            try:
                for line in await gateway.report_to_cluster(health=due):
                    gateway.warn(f"live drift hold: {line}")
            except Exception as exc:
                gateway.warn(f"writing Agent statuses failed: {type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_start is not None:
            await on_start()
        tasks = [asyncio.create_task(drift_loop())]
        if gateway.cluster is not None:
            tasks.append(asyncio.create_task(status_loop(gateway.cluster.every_s)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:
                for line in await gateway.respond_to_drift():
                    gateway.warn(f"live drift: {line}")
            finally:
                gateway.write_health()
            if on_stop is not None:
                await on_stop()

    routes = [
        Route("/v1/calls", calls, methods=["POST"]),
        Route("/v1/approvals/{approval_id}", approval, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
