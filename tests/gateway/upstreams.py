"""Loopback servers that behave like ServiceNow's Table API and Slack's Web API, including their error bodies."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson

SN_USER, SN_PASSWORD = "svc-arx", "sn-pass-0001"
SLACK_TOKEN = "xoxb-test-0001"
SN_NOT_FOUND = {"error": {"message": "No Record found",
                          "detail": "Record doesn't exist or ACL restricts the record retrieval"}, "status": "failure"}
SN_UNAUTHENTICATED = {"error": {"message": "User Not Authenticated",
                                "detail": "Required to provide Auth information"}, "status": "failure"}


@dataclass
class Seen:
    """One request an upstream received."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any


@dataclass
class Upstream:
    """A running fake and what it received."""

    url: str
    seen: list[Seen] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if method is None or s.method == method]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _read(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return orjson.loads(raw) if raw else None

    def _send(self, status: int, body: Any) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        body = self._read()
        seen = Seen(self.command, parts.path, parse_qs(parts.query), self.headers.get("Authorization"), body)
        with self.upstream.lock:
            self.upstream.seen.append(seen)
        status, answer = self.answer(seen)
        self._send(status, answer)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def answer(self, seen: Seen) -> tuple[int, Any]:
        raise NotImplementedError


class ServiceNowHandler(_Handler):
    """The Table API: basic auth, {"result": ...} on success, ServiceNow's failure body otherwise."""

    def answer(self, seen: Seen) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(f"{SN_USER}:{SN_PASSWORD}".encode()).decode()
        if seen.authorization != expected:
            return 401, SN_UNAUTHENTICATED
        parts = seen.path.strip("/").split("/")
        if parts[:3] != ["api", "now", "table"] or len(parts) < 4:
            return 400, {"error": {"message": "Invalid table", "detail": None}, "status": "failure"}
        table = parts[3]
        records = self.upstream.records
        with self.upstream.lock:
            if len(parts) == 4 and seen.method == "POST":
                sys_id = f"{table}-{len(records) + 1}"
                records[sys_id] = {"sys_id": sys_id, **(seen.body or {})}
                return 201, {"result": records[sys_id]}
            if len(parts) != 5:
                return 400, {"error": {"message": "Method not supported", "detail": None}, "status": "failure"}
            record = records.get(parts[4])
            if record is None:
                return 404, SN_NOT_FOUND
            if seen.method == "GET":
                return 200, {"result": record}
            if seen.method == "PATCH":
                record.update(seen.body or {})
                return 200, {"result": record}
            if seen.method == "DELETE":
                del records[parts[4]]
                return 204, {}
        return 405, {"error": {"message": "Method not supported", "detail": None}, "status": "failure"}


class SlackHandler(_Handler):
    """The Web API: bearer token; errors are HTTP 200 with {"ok": false, "error": ...}."""

    channels: ClassVar[dict[str, str]] = {"C0SECOPS": "secops"}

    def answer(self, seen: Seen) -> tuple[int, Any]:
        if seen.authorization != f"Bearer {SLACK_TOKEN}":
            return 200, {"ok": False, "error": "invalid_auth"}
        if seen.path == "/api/chat.postMessage":
            channel = (seen.body or {}).get("channel")
            if channel not in self.channels:
                return 200, {"ok": False, "error": "channel_not_found"}
            return 200, {"ok": True, "channel": channel, "ts": "1776160800.000100",
                         "message": {"type": "message", "text": (seen.body or {}).get("text"), "bot_id": "B01"}}
        return 200, {"ok": False, "error": "unknown_method"}


@contextmanager
def serve(handler: type[_Handler], prefix: str = "") -> Iterator[Upstream]:
    """Run a fake on a free loopback port until the block ends."""
    upstream = Upstream("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Bound", (handler,), {"upstream": upstream}))
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
