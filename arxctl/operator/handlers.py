"""Kopf handlers: thin triggers over the controller, which applies the pure reconcile functions."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Sequence
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


def is_pattern(namespace: str) -> bool:
    """A glob, an exclusion or a list (`team-*`, `!kube-*`, `a,b`) rather than one namespace's name."""
    return any(c in namespace for c in "*?[!,")


def matches(namespace: str, pattern: str) -> bool:
    """Kopf's namespace pattern semantics: comma-separated globs read left to right; the first inclusive glob
    matches (a leading exclusion implies `*`), an exclusion unmatches, a later inclusion re-matches what the
    first one matched."""
    globs = [glob.strip() for glob in pattern.split(",")]
    if globs[0].startswith("!"):
        globs.insert(0, "*")
    found = first = fnmatch.fnmatchcase(namespace, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            found = found and not fnmatch.fnmatchcase(namespace, glob[1:])
        else:
            found = found or (first and fnmatch.fnmatchcase(namespace, glob))
    return found


def namespace_filter(namespaces: Sequence[str]) -> Callable[[str], bool] | None:
    """Which namespaces to act on when some of `namespaces` are patterns; None when all are plain names."""
    patterns = [n for n in namespaces if is_pattern(n)]
    if not patterns:
        return None
    exact = frozenset(n for n in namespaces if not is_pattern(n))
    return lambda namespace: namespace in exact or any(matches(namespace, p) for p in patterns)


def build_registry(controller: Controller, watched: Callable[[str], bool] | None = None) -> kopf.OperatorRegistry:
    """The operator's handlers, registered on a registry of their own (no module-level state); with `watched`,
    they only act on objects in the namespaces it accepts."""
    registry = kopf.OperatorRegistry()

    def in_scope(namespace: str | None, **_: Any) -> bool:
        return watched is None or (namespace is not None and watched(namespace))

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
        @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-changed", when=in_scope, registry=registry)
        def changed(namespace: str, event: Any, resource: kopf.Resource, **_: Any) -> None:
            controller.changed(namespace, resource.plural, event.get("object"), event.get("type") == "DELETED")

    @kopf.on.delete(GROUP, VERSION, "agents", id="decommission", backoff=DECOMMISSION_BACKOFF_S, when=in_scope,
                    registry=registry)
    def deleted(namespace: str, name: str, **_: Any) -> None:
        controller.decommission(namespace, name, reason="the Agent was deleted")

    @kopf.on.probe(id="bundles", registry=registry)
    def bundles(**_: Any) -> dict[str, str]:
        return dict(controller.reconciled)

    return registry


def run(controller: Controller, *, namespaces: Sequence[str], clusterwide: bool, liveness: str | None,
        stop_flag: Any = None) -> None:
    """Run the operator until SIGTERM/SIGINT (or `stop_flag`); one replica, no peering.

    Namespace patterns are matched here, over cluster-wide watches: Kopf's own namespace discovery lists the
    namespaces twice (to populate, then to start its watch) and drops the second listing, so a namespace created
    in between, e.g. just as the operator starts, would never be watched.
    """
    watched = None if clusterwide else namespace_filter(namespaces)
    kopf.run(registry=build_registry(controller, watched), standalone=True,
             clusterwide=clusterwide or watched is not None,
             namespaces=[] if clusterwide or watched is not None else list(namespaces), liveness_endpoint=liveness,
             stop_flag=stop_flag)
