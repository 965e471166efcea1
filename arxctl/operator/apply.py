"""`arxctl apply` and `arxctl diff`: validated resources written by server-side apply, the way a GitOps controller
writes them, so the CLI and git produce the same objects."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from arxctl.errors import InputError
from arxctl.operator.k8s import Kube, kind_of
from arxctl.resources.validation import Resource

FIELD_MANAGER = "arxctl"
CREATED, CONFIGURED, UNCHANGED = "created", "configured", "unchanged"


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome for one object: what the server did (or would do, with dry_run) and the content diff."""

    kind: str
    name: str
    namespace: str
    action: str
    dry_run: bool
    diff: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        suffix = " (server dry run)" if self.dry_run else ""
        return f"{self.kind.lower()}.arx.dev/{self.name} {self.action}{suffix}"


def desired_objects(resources: Sequence[Resource], namespace: str) -> list[dict[str, Any]]:
    """What to apply: apiVersion, kind, metadata (name, namespace, labels, annotations) and spec; a status in a
    file is left out (the platform writes it). A document naming another namespace is an input error."""
    out = []
    for resource in resources:
        doc = resource.doc
        metadata = doc.get("metadata") or {}
        named = metadata.get("namespace")
        if named is not None and named != namespace:
            raise InputError(f"{resource.path}:{resource.source.start_line}: {resource.kind} '{resource.name}' names "
                             f"namespace '{named}' but the target is '{namespace}' (pass --namespace {named})")
        meta: dict[str, Any] = {"name": resource.name, "namespace": namespace}
        for key in ("labels", "annotations"):
            if metadata.get(key):
                meta[key] = dict(metadata[key])
        out.append({"apiVersion": doc["apiVersion"], "kind": doc["kind"], "metadata": meta, "spec": doc["spec"]})
    return out


def content(obj: dict[str, Any] | None) -> dict[str, Any]:
    """The part of an object that `apply` owns and `diff` compares: labels, annotations and spec."""
    if obj is None:
        return {}
    metadata = obj.get("metadata") or {}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()
                   if not k.startswith(("operator.arx.dev/", "kubectl.kubernetes.io/"))}
    out: dict[str, Any] = {"spec": obj.get("spec")}
    if metadata.get("labels"):
        out["labels"] = metadata["labels"]
    if annotations:
        out["annotations"] = annotations
    return out


def unified_diff(kind: str, name: str, live: dict[str, Any] | None, applied: dict[str, Any]) -> str:
    """A unified diff of the YAML of the live content and the content after apply (empty when equal)."""
    import io

    from ruamel.yaml import YAML

    def text(value: dict[str, Any]) -> list[str]:
        if not value:
            return []
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        stream = io.StringIO()
        yaml.dump(value, stream)
        return stream.getvalue().splitlines(keepends=True)

    label = f"{kind.lower()}.arx.dev/{name}"
    return "".join(difflib.unified_diff(text(content(live)), text(content(applied)), f"live/{label}",
                                        f"applied/{label}"))


def apply_objects(kube: Kube, objects: Sequence[dict[str, Any]], *, dry_run: bool = False, force: bool = False,
                  field_manager: str = FIELD_MANAGER) -> list[Applied]:
    """Server-side apply each object (strict field validation); with dry_run nothing is persisted."""
    out = []
    for obj in objects:
        kind = kind_of(obj)
        namespace = obj["metadata"]["namespace"]
        live = kube.get(kind.path(namespace, obj["metadata"]["name"]))
        after = kube.apply(obj, field_manager=field_manager, force=force, dry_run=dry_run)
        change = unified_diff(obj["kind"], obj["metadata"]["name"], live, after)
        action = CREATED if live is None else (CONFIGURED if change else UNCHANGED)
        out.append(Applied(obj["kind"], obj["metadata"]["name"], namespace, action, dry_run, change))
    return out
