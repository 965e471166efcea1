"""AWS through boto3: `aws.<service>.<operation>` calls the boto3 client method with the payload as its arguments.

The credential is JSON (`aws_access_key_id`, `aws_secret_access_key`, optional `aws_session_token`). Clients are
built per service and credential, with automatic retries off: a write is sent once, as the engine allowed it.
boto3 blocks, so calls run in worker threads.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from arxctl.gateway.drivers.base import (
    JSON,
    MAX_BODY_BYTES,
    NOT_SUPPORTED,
    Caller,
    Current,
    Downstream,
    DriverError,
    project,
    redact_values,
    select,
)

_CLIENTS_MAX = 64


def _jsonable(value: Any) -> Any:
    """orjson's fallback for what boto3 answers with: bytes and streams as base64, decimals as numbers."""
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if hasattr(value, "read"):
        data = value.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            raise DriverError(502, "downstream-too-large", f"aws answered more than {MAX_BODY_BYTES} bytes")
        return {"base64": base64.b64encode(data).decode("ascii")}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dump(value: Any) -> bytes:
    return orjson.dumps(value, default=_jsonable)


class AwsDriver:
    """Calls AWS service operations with the platform's AWS credential."""

    connector = "aws"

    def __init__(self, spec: Mapping[str, Any], *, region: str | None = None, endpoint_url: str | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0) -> None:
        self.services = frozenset(spec.get("services") or ())
        self.readers: Mapping[str, Mapping[str, Any]] = dict(spec.get("current") or {})
        self.counts: Mapping[str, str] = dict(spec.get("count") or {})
        self.nouns: Mapping[str, str] = dict(spec.get("objects") or {})
        self.region = region
        self.endpoint_url = endpoint_url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._operations: dict[str, frozenset[str]] = {}
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _split(self, action: str) -> tuple[str, str] | None:
        parts = action.split(".")
        if len(parts) != 3 or parts[0] != "aws" or parts[1] not in self.services:
            return None
        return parts[1], parts[2]

    def operations(self, service: str) -> frozenset[str]:
        """The snake_case operation names of a service, from botocore's model."""
        found = self._operations.get(service)
        if found is None:
            import botocore.session
            from botocore import xform_name

            model = botocore.session.get_session().get_service_model(service)
            found = frozenset(xform_name(name) for name in model.operation_names)
            self._operations[service] = found
        return found

    def supports(self, action: str) -> bool:
        split = self._split(action)
        return split is not None and split[1] in self.operations(split[0])

    def _client(self, service: str, secret: bytes) -> Any:
        key = (service, hashlib.sha256(secret).hexdigest())
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
        try:
            creds = orjson.loads(secret)
        except orjson.JSONDecodeError:
            creds = None
        if not isinstance(creds, dict) or not all(isinstance(creds.get(k), str) and creds.get(k)
                                                  for k in ("aws_access_key_id", "aws_secret_access_key")):
            raise DriverError(502, "credential-unusable", "the aws credential must be JSON with aws_access_key_id "
                                                          "and aws_secret_access_key")
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                        retries={"total_max_attempts": 1, "mode": "standard"})
        client = boto3.session.Session().client(
            service, region_name=creds.get("region") or self.region or "us-east-1", endpoint_url=self.endpoint_url,
            aws_access_key_id=creds["aws_access_key_id"], aws_secret_access_key=creds["aws_secret_access_key"],
            aws_session_token=creds.get("aws_session_token"), config=config,
        )
        with self._lock:
            if len(self._clients) >= _CLIENTS_MAX:
                self._clients.clear()
            self._clients[key] = client
        return client

    def _invoke(self, service: str, operation: str, payload: Mapping[str, Any],
                secret: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, answer without its metadata); a service error is an answer, not an exception."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ParamValidationError,
            ReadTimeoutError,
        )

        client = self._client(service, secret)
        try:
            answer = getattr(client, operation)(**payload)
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata") or {}
            error = exc.response.get("Error") or {}
            return int(meta.get("HTTPStatusCode") or 400), {"Error": {"Code": error.get("Code"),
                                                                      "Message": error.get("Message")}}
        except ParamValidationError as exc:
            raise DriverError(400, "bad-payload", redact_values(str(exc).replace("\n", " "), payload)) from None
        except (ConnectTimeoutError, ReadTimeoutError):
            raise DriverError(504, "downstream-timeout", f"aws {service} did not answer in time") from None
        except EndpointConnectionError:
            raise DriverError(502, "downstream-unreachable", f"aws {service} could not be reached") from None
        except BotoCoreError as exc:
            raise DriverError(502, "downstream-error", f"aws {service}: {type(exc).__name__}") from None
        meta = answer.pop("ResponseMetadata", None) or {}
        return int(meta.get("HTTPStatusCode") or 200), answer

    async def call(self, action: str, payload: Mapping[str, Any], secret: bytes, caller: Caller) -> Downstream:
        import anyio

        split = self._split(action)
        if split is None or split[1] not in self.operations(split[0]):
            raise DriverError(501, "action-not-supported", f"{action} is not an AWS operation the gateway drives")
        status, answer = await anyio.to_thread.run_sync(self._invoke, split[0], split[1], payload, secret)
        body = await anyio.to_thread.run_sync(_dump, answer)
        ok = 200 <= status < 300
        error = None if ok else str((answer.get("Error") or {}).get("Code") or f"HTTP {status}")
        return Downstream(status, body, JSON, (), ok, error)

    async def current(self, action: str, payload: Mapping[str, Any], secret: bytes) -> Current:
        import anyio

        split = self._split(action)
        reader = self.readers.get(f"{split[0]}.{split[1]}") if split else None
        if reader is None:
            return NOT_SUPPORTED
        service, _, operation = str(reader["operation"]).partition(".")
        params = {k: payload[k] for k in reader.get("params") or () if k in payload}
        try:
            status, answer = await anyio.to_thread.run_sync(self._invoke, service, operation, params, secret)
        except DriverError as exc:
            return Current(None, f"unavailable: {exc.message}")
        if not 200 <= status < 300:
            code = (answer.get("Error") or {}).get("Code")
            return Current(None, f"unavailable: aws answered HTTP {status} ({code})")
        record = select(answer, reader.get("record"))
        if reader.get("as"):
            record = {reader["as"]: record}
        written = {k: v for k, v in payload.items() if k not in params}
        state = {**params, **project(orjson.loads(_dump(record)), written)}
        return Current(state, "fetched")

    def blast(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        split = self._split(action)
        service = split[0] if split else "aws"
        counted = self.counts.get(f"{service}.{split[1]}") if split else None
        found = select(payload, counted) if counted else None
        return {"objects": len(found) if isinstance(found, list) else 1, "object": self.nouns.get(service, "resource"),
                "requests": 1}

    async def close(self) -> None:
        with self._lock:
            self._clients.clear()
