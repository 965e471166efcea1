"""A small Kubernetes REST client over the `kubernetes` package: JSON in and out, server-side apply with strict
field validation, merge patches with a resourceVersion precondition, and 409-conflict retries with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arxctl import API_VERSION
from arxctl.errors import ArxError, InputError, NotFoundError

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON = "application/json"
REQUEST_TIMEOUT_S = 30.0
CONFLICT_DEADLINE_S = 10.0
_BACKOFF_S = (0.01, 0.02, 0.05, 0.1, 0.2)

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kind:
    """Where a kind is served: its apiVersion, plural, and whether it lives in a namespace."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced:
            if not namespace:
                raise InputError(f"{self.plural} are namespaced: a namespace is needed")
            base += f"/namespaces/{namespace}"
        path = f"{base}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


KINDS: dict[str, Kind] = {
    "Agent": Kind(API_VERSION, "agents"),
    "Policy": Kind(API_VERSION, "policies"),
    "Grant": Kind(API_VERSION, "grants"),
    "ConnectorCatalog": Kind(API_VERSION, "connectorcatalogs"),
    "ConfigMap": Kind("v1", "configmaps"),
    "Secret": Kind("v1", "secrets"),
    "Event": Kind("v1", "events"),
    "Namespace": Kind("v1", "namespaces", namespaced=False),
}


class KubeError(ArxError):
    """The API server refused a request; carries its HTTP status, reason and message (never the request body)."""

    def __init__(self, status: int, reason: str, message: str, method: str, path: str) -> None:
        self.status, self.reason, self.message = status, reason, message
        super().__init__(f"{method} {path}: {status} {reason}: {message}")


class Conflict(KubeError):
    """409: the object changed since it was read (or an apply conflicts with another field manager)."""


class Unreachable(ArxError):
    """The API server could not be reached."""

    exit_code = 2


def _error(exc: Any, method: str, path: str) -> KubeError:
    status = int(getattr(exc, "status", 0) or 0)
    reason, message = str(getattr(exc, "reason", "") or ""), ""
    try:
        body = json.loads(exc.body)
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    except (TypeError, ValueError, AttributeError):
        message = str(getattr(exc, "body", "") or "")[:500]
    cls = Conflict if status == 409 else KubeError
    return cls(status, reason, message, method, path)


class Kube:
    """JSON requests to one API server through a `kubernetes.client.ApiClient` (thread-safe for requests)."""

    def __init__(self, api_client: Any, namespace: str = "default", timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.api = api_client
        self.namespace = namespace
        self.timeout_s = timeout_s

    @classmethod
    def connect(cls, kubeconfig: Path | None = None, context: str | None = None,
                timeout_s: float = REQUEST_TIMEOUT_S) -> Kube:
        """From a kubeconfig (`--kubeconfig`, else $KUBECONFIG or ~/.kube/config) and context, else in-cluster."""
        from kubernetes import client, config

        configuration = client.Configuration()
        namespace = "default"
        try:
            if kubeconfig is None and context is None and _in_cluster():
                config.load_incluster_config(client_configuration=configuration)
                namespace = _in_cluster_namespace()
            else:
                path = str(kubeconfig) if kubeconfig else _default_kubeconfig()
                config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
                contexts, active = config.list_kube_config_contexts(config_file=path)
                chosen = next((c for c in contexts if c["name"] == context), None) if context else active
                namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
        except (config.ConfigException, OSError, KeyError, ValueError) as exc:
            where = f" {kubeconfig}" if kubeconfig else ""
            raise InputError(f"cannot load the kubeconfig{where}: {exc}") from None
        return cls(client.ApiClient(configuration), namespace, timeout_s)

    @property
    def configuration(self) -> Any:
        return self.api.configuration

    def request(self, method: str, path: str, *, body: Any = None, query: Mapping[str, Any] | None = None,
                content_type: str = JSON, timeout_s: float | None = None) -> Obj:
        """One request (within `timeout_s`, default the client's); the decoded JSON answer, or KubeError /
        Unreachable."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        try:
            method_, url, headers, payload, _ = self.api.param_serialize(
                method, path, query_params=params, header_params={"Accept": JSON, "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"])
            response = self.api.call_api(method_, url, header_params=headers, body=payload,
                                         _request_timeout=self.timeout_s if timeout_s is None else timeout_s)
            data = response.read()
        except ApiException as exc:
            if not exc.status:
                raise Unreachable(f"{method} {path}: cannot reach the API server: {exc.reason}") from None
            raise _error(exc, method, path) from None
        except HTTPError as exc:
            raise Unreachable(f"{method} {path}: cannot reach the API server: {exc}") from None
        if not 200 <= response.status < 300:
            raise _error(ApiException(status=response.status, reason=response.reason,
                                      body=data.decode("utf-8", "replace") if data else ""), method, path)
        return json.loads(data) if data else {}

    def get(self, path: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path: str, *, label_selector: str | None = None) -> list[Obj]:
        return list(self.request("GET", path, query={"labelSelector": label_selector}).get("items") or [])

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body, query={"fieldValidation": "Strict"})

    def delete(self, path: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            self.request("DELETE", path)
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    def apply(self, obj: Obj, *, field_manager: str, force: bool = False, dry_run: bool = False,
              namespace: str | None = None) -> Obj:
        """Server-side apply with `fieldValidation=Strict` (unknown or duplicate fields are errors)."""
        kind = kind_of(obj)
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        path = kind.path(ns if kind.namespaced else None, obj["metadata"]["name"])
        query = {"fieldManager": field_manager, "fieldValidation": "Strict", "force": "true" if force else None,
                 "dryRun": "All" if dry_run else None}
        return self.request("PATCH", path, body=obj, query=query, content_type=APPLY)

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        return self.request("PATCH", path, body=patch, content_type=MERGE)


def kind_of(obj: Mapping[str, Any]) -> Kind:
    kind = KINDS.get(str(obj.get("kind")))
    if kind is None or kind.api_version != obj.get("apiVersion"):
        raise InputError(f"{obj.get('apiVersion')}/{obj.get('kind')} is not a kind arxctl applies")
    return kind


def modify(kube: Kube, path: str, compute: Callable[[Obj], Obj | None], *,
           deadline_s: float = CONFLICT_DEADLINE_S, clock: Callable[[], float] = time.monotonic) -> tuple[Obj, int]:
    """Read, compute a merge patch from what was read, and write it guarded by the resourceVersion read; on 409
    read again and recompute until the deadline. Returns (the object after, how many conflicts were retried);
    NotFoundError when the object is gone; the last Conflict once the deadline has passed."""
    deadline = clock() + deadline_s
    conflicts = 0
    while True:
        current = kube.get(path)
        if current is None:
            raise NotFoundError(f"{path} does not exist")
        patch = compute(current)
        if patch is None:
            return current, conflicts
        guarded = {**patch, "metadata": {**(patch.get("metadata") or {}),
                                         "resourceVersion": current["metadata"]["resourceVersion"]}}
        try:
            return kube.merge_patch(path, guarded), conflicts
        except Conflict:
            if clock() >= deadline:
                raise
            time.sleep(_BACKOFF_S[min(conflicts, len(_BACKOFF_S) - 1)])
            conflicts += 1


def _in_cluster() -> bool:
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and Path(
        "/var/run/secrets/kubernetes.io/serviceaccount/token").exists()


def _in_cluster_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text(encoding="utf-8").strip() if path.exists() else "default"


def _default_kubeconfig() -> str:
    import os

    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
