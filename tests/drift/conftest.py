"""A real webhook receiver on loopback that checks the HMAC signature itself and can fail or hang on demand."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

SECRET = "whsec-7f1c-test-only-3b9e"
HANG_LIMIT_S = 20.0


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    fresh: bool
    answered: int | None

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """Answers `fail_first` requests with `fail_status`, hangs when `hang` is set, else 200 for a valid signature."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.fail_first = 0
        self.fail_status = 503
        self.retry_after: str | None = None
        self.hang = False
        self.release = threading.Event()
        self.requests: list[Received] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.handle(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/arx?token=q-secret-path"

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        stamp = handler.headers.get("X-Arx-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        signature_ok = hmac.compare_digest(expected, handler.headers.get("X-Arx-Signature", ""))
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
        with self.arrived:
            number = len(self.requests) + 1
        status: int | None
        if self.hang:
            status = None
        elif number <= self.fail_first:
            status = self.fail_status
        else:
            status = 200 if signature_ok and fresh else 401
        with self.arrived:
            self.requests.append(Received(handler.path, dict(handler.headers.items()), body, signature_ok, fresh,
                                          status))
            self.arrived.notify_all()
        if status is None:
            self.release.wait(HANG_LIMIT_S)
            handler.close_connection = True
            return
        handler.send_response(status)
        if self.retry_after is not None and status != 200:
            handler.send_header("Retry-After", self.retry_after)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.requests) >= n, timeout)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET).start()
    try:
        yield server
    finally:
        server.stop()
