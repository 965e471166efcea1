"""Loopback HTTP servers that behave like the Anthropic Messages API and OpenAI Chat Completions.

Each server answers from a script of behaviours (one per request, then `default`): success bodies and SSE
streams in the provider's own shape, the provider's JSON error bodies and statuses, slow answers, dropped
connections, streams cut mid-way, error events and refusals mid-stream. Run as a module to serve one
provider in a separate process (the benchmark does): `python -m tests.router.fakes openai`.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request."""

    action: str = "ok"
    text: str = "hello from the fake"
    status: int = 200
    error_type: str | None = None
    code: str | None = None
    message: str = ""
    body: bytes = b""
    content_type: str = "application/json"
    chunks: int = 3
    delay: float = 0.0
    input_tokens: int = 11
    output_tokens: int = 7


def ok(text: str = "hello from the fake", *, input_tokens: int = 11, output_tokens: int = 7) -> Behaviour:
    return Behaviour("ok", text=text, input_tokens=input_tokens, output_tokens=output_tokens)


def error(status: int, error_type: str | None, message: str = "", *, code: str | None = None) -> Behaviour:
    return Behaviour("error", status=status, error_type=error_type, message=message, code=code)


def raw(status: int, body: bytes, content_type: str = "text/html") -> Behaviour:
    return Behaviour("raw", status=status, body=body, content_type=content_type)


def slow(delay: float) -> Behaviour:
    return Behaviour("slow", delay=delay)


def drop() -> Behaviour:
    return Behaviour("drop")


def refusal() -> Behaviour:
    return Behaviour("refusal")


def stream_cut(chunks: int, *, clean_eof: bool = False) -> Behaviour:
    """Send `chunks` text deltas, then cut the connection (mid chunked body, or a clean EOF)."""
    return Behaviour("stream_cut_eof" if clean_eof else "stream_cut", chunks=chunks)


def stream_error(chunks: int, error_type: str, message: str = "", *, code: str | None = None) -> Behaviour:
    """Send `chunks` text deltas, then an error event in the stream."""
    return Behaviour("stream_error", chunks=chunks, error_type=error_type, message=message, code=code)


def stream_refusal(chunks: int) -> Behaviour:
    """Send `chunks` text deltas, then a refusal (stop reason / content filter) in the stream."""
    return Behaviour("stream_refusal", chunks=chunks)


def error_body(flavor: str, error_type: str | None, message: str, code: str | None) -> bytes:
    if flavor == "anthropic":
        return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}})


def success_body(flavor: str, b: Behaviour, model: str, *, refused: bool = False) -> bytes:
    if flavor == "anthropic":
        return orjson.dumps({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [] if refused else [{"type": "text", "text": b.text}],
            "stop_reason": "refusal" if refused else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": b.input_tokens, "output_tokens": b.output_tokens},
        })
    message: dict[str, Any] = {"role": "assistant", "content": None if refused else b.text, "refusal": None}
    return orjson.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1776160800, "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "content_filter" if refused else "stop"}],
        "usage": {"prompt_tokens": b.input_tokens, "completion_tokens": b.output_tokens,
                  "total_tokens": b.input_tokens + b.output_tokens},
    })


def _sse(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


def stream_events(flavor: str, b: Behaviour, model: str) -> tuple[list[bytes], list[bytes]]:
    """(text-delta events, closing events) for a stream of `b.chunks` deltas of `b.text`."""
    size = -(-len(b.text) // b.chunks) if b.chunks else 0
    words = [b.text[i * size:(i + 1) * size] for i in range(b.chunks)] if b.chunks else []
    if flavor == "anthropic":
        head = [_sse("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
            "usage": {"input_tokens": b.input_tokens, "output_tokens": 1}}}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
            _sse("ping", {"type": "ping"})]
        deltas = [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": w}}) for w in words]
        tail = [_sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                       "usage": {"output_tokens": b.output_tokens}}),
                _sse("message_stop", {"type": "message_stop"})]
        return head + deltas, tail

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        return _sse(None, {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage})

    head = [chunk({"role": "assistant", "content": ""})]
    deltas = [chunk({"content": w}) for w in words]
    usage = {"prompt_tokens": b.input_tokens, "completion_tokens": b.output_tokens,
             "total_tokens": b.input_tokens + b.output_tokens}
    tail = [chunk({}, "stop"),
            _sse(None, {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model, "choices": [],
                        "usage": usage}),
            _sse(None, b"[DONE]")]
    return head + deltas, tail


class _Server(ThreadingHTTPServer):
    """A threading server that stays quiet when a client hangs up (timeouts and cuts do that on purpose)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeProvider:
    """One fake provider on 127.0.0.1; `script` is consumed one behaviour per request."""

    flavor: str
    script: deque[Behaviour] = field(default_factory=deque)
    default: Behaviour = field(default_factory=ok)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    record: bool = True

    def __post_init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + ("" if self.flavor == "anthropic" else "/v1")

    @property
    def hits(self) -> int:
        return len(self.received)

    def then(self, *behaviours: Behaviour) -> FakeProvider:
        self.script.extend(behaviours)
        return self

    def next_behaviour(self) -> Behaviour:
        with self.lock:
            return self.script.popleft() if self.script else self.default

    def start(self) -> FakeProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _handler(fake: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            try:
                self._post()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _post(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = orjson.loads(self.rfile.read(length)) if length else {}
            if fake.record:
                with fake.lock:
                    fake.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            expected = "/v1/messages" if fake.flavor == "anthropic" else "/v1/chat/completions"
            if self.path != expected:
                self._send(404, error_body(fake.flavor, "not_found_error", f"no route {self.path}", None))
                return
            b = fake.next_behaviour()
            model = body.get("model", "")
            streaming = bool(body.get("stream"))
            if b.action == "drop":
                self._cut()
            elif b.action == "error":
                self._send(b.status, error_body(fake.flavor, b.error_type, b.message, b.code))
            elif b.action == "raw":
                self._send(b.status, b.body, b.content_type)
            elif b.action == "slow":
                fake.release.wait(b.delay)
                self._answer(b, model, streaming)
            elif b.action == "refusal" and not streaming:
                self._send(200, success_body(fake.flavor, b, model, refused=True))
            elif b.action == "refusal":
                self._stream(b, model, ending="refusal")
            elif b.action.startswith("stream_"):
                self._stream(b, model, ending=b.action.removeprefix("stream_"))
            else:
                self._answer(b, model, streaming)

        def _answer(self, b: Behaviour, model: str, streaming: bool) -> None:
            if streaming:
                self._stream(b, model, ending="done")
            else:
                self._send(200, success_body(fake.flavor, b, model))

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _cut(self) -> None:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _write_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream(self, b: Behaviour, model: str, *, ending: str) -> None:
            head, tail = stream_events(fake.flavor, b, model)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            if ending == "cut_eof":
                self.send_header("connection", "close")
                self.end_headers()
                for event in head:
                    self.wfile.write(event)
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for event in head:
                self._write_chunk(event)
            if ending == "cut":
                self.wfile.write(b"40\r\ndata: {\"trunc")
                self._cut()
                return
            if ending == "error":
                if fake.flavor == "anthropic":
                    event = _sse("error", {"type": "error", "error": {"type": b.error_type, "message": b.message}})
                else:
                    event = _sse(None, {"error": {"message": b.message, "type": b.error_type, "code": b.code}})
                self._write_chunk(event)
            elif ending == "refusal":
                if fake.flavor == "anthropic":
                    event = _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "refusal"},
                                                   "usage": {"output_tokens": 2}})
                else:
                    event = _sse(None, {"id": "x", "object": "chat.completion.chunk", "model": model,
                                        "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]})
                self._write_chunk(event)
            else:
                for event in tail:
                    self._write_chunk(event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def main(argv: list[str]) -> None:
    """Serve one fake provider until stdin closes; prints the port first."""
    fake = FakeProvider(argv[0] if argv else "openai", record=False).start()
    sys.stdout.write(f"{fake.port}\n")
    sys.stdout.flush()
    sys.stdin.read()
    fake.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
