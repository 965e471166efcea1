"""The agent side of the connector gateway: SDK-shaped connectors, enforced on the platform side.

    from arxctl.sdk import Connector, CallDenied, ApprovalTimeout

    servicenow = Connector("servicenow", gateway="http://arx-gateway:8080", handle=os.environ["ARX_HANDLE"])
    result = servicenow.call("change.close", {"change_ids": ["CHG0031"]}, session="s-8f2c",
                             reasoning="both tickets duplicate CHG0007")
    result.status, result.json()

The agent holds only a short-lived handle; the gateway decides every call and makes the allowed ones with the
credential the platform holds. A denial raises `CallDenied` with the decision record. A call that needs
approval waits (polling `GET /v1/approvals/{id}` until its deadline), then is submitted again naming the
approval, which the gateway accepts for exactly that payload, once; no answer in time raises
`ApprovalTimeout`. Only the standard library is used.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_POLL_S = 1.0
REUSE_IDLE_S = 50.0
_FINAL_DENIED = ("denied", "revoked")
_FINAL_EXPIRED = ("expired",)


class GatewayError(Exception):
    """The gateway refused or could not make the call (not a downstream answer): HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = dict(body or {})

    @property
    def decision(self) -> dict[str, Any] | None:
        found = (self.body.get("error") or {}).get("decision")
        return found if isinstance(found, dict) else None


class HandleRefused(GatewayError):
    """The handle was refused (missing, forged, expired, revoked, or for another connector): get a new one."""

    @property
    def reason(self) -> str:
        return str((self.body.get("error") or {}).get("reason") or self.code)


class CallDenied(Exception):
    """The platform denied the call; `decision` is the decision record (verdict, reason, score, rules)."""

    def __init__(self, decision: Mapping[str, Any], message: str | None = None) -> None:
        self.decision = dict(decision)
        self.reason = str(self.decision.get("reason", ""))
        self.score = (self.decision.get("score") or {}).get("total")
        super().__init__(message or f"{self.decision.get('action')} denied ({self.reason}): "
                                    f"{self.decision.get('message', '')}")


class ApprovalDenied(CallDenied):
    """An approver declined the call (or decommissioning revoked the approval)."""

    def __init__(self, decision: Mapping[str, Any], approval: Mapping[str, Any]) -> None:
        self.approval = dict(approval)
        by = self.approval.get("decided_by") or "the platform"
        super().__init__(decision, f"approval {self.approval.get('id')} was {self.approval.get('status')} by {by}"
                                   + (f": {self.approval['comment']}" if self.approval.get("comment") else ""))


class ApprovalTimeout(Exception):
    """No approval in time: the approval expired unanswered (declined: silence is not consent), or the caller's
    own deadline passed first."""

    def __init__(self, approval: Mapping[str, Any], decision: Mapping[str, Any] | None = None) -> None:
        self.approval = dict(approval)
        self.decision = dict(decision or {})
        status = self.approval.get("status")
        super().__init__(f"approval {self.approval.get('id')} is {status}: no approval before the deadline")


class ApprovalPending(Exception):
    """With `wait=False`: the call waits for approval; poll with `Connector.approval(id)` and call again with
    `approval=id` once it is approved."""

    def __init__(self, approval: Mapping[str, Any], decision: Mapping[str, Any]) -> None:
        self.approval = dict(approval)
        self.decision = dict(decision)
        super().__init__(f"approval {self.approval.get('id')} pending (group {self.approval.get('group')}, "
                         f"expires {self.approval.get('expires_at')})")


@dataclass(frozen=True, slots=True)
class Result:
    """The downstream system's answer, as it came (status and body), with the gateway's decision id."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def decision_id(self) -> str | None:
        return self.headers.get("arx-decision-id")

    def json(self) -> Any:
        return orjson.loads(self.body)


class _Http:
    """One keep-alive connection to the gateway, reused while fresh; a POST is never sent twice."""

    def __init__(self, url: str, timeout: float, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"gateway URL {url!r} must be http(s)://host[:port]")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.context = context
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        if self.secure:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, token: str, body: bytes | None = None,
                idempotent: bool = False) -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        with self._lock:
            fresh = self._conn is not None and time.monotonic() - self._used < REUSE_IDLE_S
            if not fresh:
                self.close()
                self._conn = self._connect()
            attempts = 2 if idempotent and fresh else 1
            for attempt in range(attempts):
                assert self._conn is not None
                try:
                    self._conn.request(method, self.prefix + path, body=body, headers=headers)
                    response = self._conn.getresponse()
                    data = response.read()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    self.close()
                    if attempt + 1 >= attempts:
                        raise
                    self._conn = self._connect()
                    continue
                self._used = time.monotonic()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Connector:
    """One connector as the agent sees it: `call(action, payload)`; enforcement happens in the gateway.

    `gateway` defaults to `$ARX_GATEWAY_URL`; `handle` to `$ARX_HANDLE_<CONNECTOR>`, else `$ARX_HANDLE`, and may
    be a callable returning a fresh handle (handles live at most an hour; approvals can take longer).
    """

    def __init__(self, connector: str, *, gateway: str | None = None, handle: str | Callable[[], str] | None = None,
                 session: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, poll_interval: float = DEFAULT_POLL_S,
                 approval_timeout: float | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.connector = connector
        url = gateway or os.environ.get("ARX_GATEWAY_URL")
        if not url:
            raise ValueError("no gateway URL: pass gateway= or set ARX_GATEWAY_URL")
        env_handle = os.environ.get(f"ARX_HANDLE_{connector.upper().replace('-', '_')}") or os.environ.get(
            "ARX_HANDLE")
        self._handle = handle if handle is not None else env_handle
        if not self._handle:
            raise ValueError(f"no handle for {connector}: pass handle= or set ARX_HANDLE")
        self.session = session or ""
        self.poll_interval = poll_interval
        self.approval_timeout = approval_timeout
        self._http = _Http(url, timeout, ssl_context)

    def _token(self) -> str:
        return self._handle() if callable(self._handle) else str(self._handle)

    def _action(self, action: str) -> str:
        return action if action.startswith(f"{self.connector}.") else f"{self.connector}.{action}"

    def call(self, action: str, payload: Mapping[str, Any] | None = None, *, session: str | None = None,
             target: Mapping[str, str] | None = None, reasoning: str | None = None, wait: bool = True,
             approval_timeout: float | None = None, approval: str | None = None) -> Result:
        """Make a call through the gateway; the downstream answer comes back as a Result (any status).

        Raises CallDenied (with the decision record), ApprovalDenied, ApprovalTimeout, ApprovalPending (with
        `wait=False`), HandleRefused or GatewayError.
        """
        request: dict[str, Any] = {"action": self._action(action), "payload": dict(payload or {}),
                                   "session": session if session is not None else self.session}
        if target is not None:
            request["target"] = dict(target)
        if reasoning is not None:
            request["reasoning"] = reasoning
        if approval is not None:
            request["approval"] = approval
        status, headers, body = self._post(request)
        if status == 202 and headers.get("arx-verdict") == "APPROVAL_REQUIRED":
            held = orjson.loads(body)
            if not wait:
                raise ApprovalPending(held["approval"], held["decision"])
            limit = approval_timeout if approval_timeout is not None else self.approval_timeout
            self._wait(held["approval"], held["decision"], limit)
            request["approval"] = held["approval"]["id"]
            status, headers, body = self._post(request)
        return self._result(status, headers, body)

    def _post(self, request: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return self._http.request("POST", "/v1/calls", self._token(), orjson.dumps(request))

    def _result(self, status: int, headers: Mapping[str, str], body: bytes) -> Result:
        if headers.get("arx-verdict") == "DENY":
            raise CallDenied(orjson.loads(body)["decision"])
        if "arx-error" in headers:
            raise _gateway_error(status, headers["arx-error"], body)
        if status == 202:
            raise GatewayError(status, "unexpected", "a second approval was requested for an approved call")
        return Result(status, body, dict(headers))

    def approval(self, approval_id: str) -> dict[str, Any]:
        """The approval's current status, as the gateway shows it to the agent that asked."""
        status, headers, body = self._http.request("GET", f"/v1/approvals/{approval_id}", self._token(),
                                                   idempotent=True)
        if status != 200:
            raise _gateway_error(status, headers.get("arx-error", "unexpected"), body)
        return dict(orjson.loads(body))

    def _wait(self, approval: Mapping[str, Any], decision: Mapping[str, Any], limit: float | None) -> None:
        deadline = time.monotonic() + limit if limit is not None else None
        current = dict(approval)
        while True:
            state = current.get("status")
            if state == "approved":
                return
            if state in _FINAL_DENIED:
                raise ApprovalDenied(decision, current)
            if state in _FINAL_EXPIRED:
                raise ApprovalTimeout(current, decision)
            if state == "consumed":
                raise GatewayError(409, "approval-unusable", f"approval {current.get('id')} was already used")
            pause = self.poll_interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApprovalTimeout(current, decision)
                pause = min(pause, left)
            time.sleep(pause)
            current = self.approval(str(approval["id"]))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gateway_error(status: int, code: str, body: bytes) -> GatewayError:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = {}
    message = str(((data or {}).get("error") or {}).get("message") or f"HTTP {status}")
    cls = HandleRefused if code == "handle-refused" else GatewayError
    return cls(status, code, message, data if isinstance(data, dict) else {})


__all__ = ["ApprovalDenied", "ApprovalPending", "ApprovalTimeout", "CallDenied", "Connector", "GatewayError",
           "HandleRefused", "Result"]
