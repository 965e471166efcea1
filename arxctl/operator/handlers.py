"""Kopf handlers: thin triggers over the controller, which applies the pure reconcile functions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import kopf

from arxctl.operator.controller import Controller
from arxctl.operator.reconcile import FINALIZER, GROUP, VERSION

STORAGE_PREFIX = "operator.arx.dev"
WATCHED = ("agents", "policies", "connectorcatalogs", "grants")
DECOMMISSION_BACKOFF_S = 5.0


def connection_info(configuration: Any, namespace: str) -> kopf.ConnectionInfo:
    """Kopf's credentials from the `kubernetes` client configuration the controller uses (one login for both)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else ((None, parts[0]) if len(parts) == 1 else (parts[0], parts[1]))
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        scheme=scheme, token=token, certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file, default_namespace=namespace,
    )


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    """The operator's handlers, registered on a registry of their own (no module-level state)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=STORAGE_PREFIX)
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 270
        controller.start()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(controller.kube.configuration, controller.kube.namespace)

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        controller.stop()

    for plural in WATCHED:
        @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-changed", registry=registry)
        def changed(namespace: str, **_: Any) -> None:
            controller.request(namespace)

    @kopf.on.delete(GROUP, VERSION, "agents", id="decommission", backoff=DECOMMISSION_BACKOFF_S, registry=registry)
    def deleted(namespace: str, name: str, **_: Any) -> None:
        controller.decommission(namespace, name, reason="the Agent was deleted")

    @kopf.on.probe(id="bundles", registry=registry)
    def bundles(**_: Any) -> dict[str, str]:
        return dict(controller.reconciled)

    return registry


def run(controller: Controller, *, namespaces: Sequence[str], clusterwide: bool, liveness: str | None,
        stop_flag: Any = None) -> None:
    """Run the operator until SIGTERM/SIGINT (or `stop_flag`); one replica, no peering (see docs/operator.md)."""
    kopf.run(registry=build_registry(controller), standalone=True, clusterwide=clusterwide,
             namespaces=list(namespaces), liveness_endpoint=liveness, stop_flag=stop_flag)
