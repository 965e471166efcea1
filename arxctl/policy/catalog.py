"""The connector catalog: every known action, its connector, operation class and default data class."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

OPERATIONS = ("read", "write", "destructive", "containment")
DATA_CLASSES = ("public", "internal", "confidential", "restricted")


@dataclass(frozen=True, slots=True)
class ActionInfo:
    """What the catalog knows about one `connector.resource.verb` action."""

    action: str
    connector: str
    operation: str
    data_class: str


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    name: str
    data_class: str
    description: str = ""
    hosts: tuple[str, ...] = ()
    actions: Mapping[str, str] = field(default_factory=dict)  # full action -> operation
    source: str = "builtin"


class CatalogConflict(ValueError):
    """A user catalog tried to change the operation class of a known action."""

    def __init__(self, action: str, old: str, new: str, source: str) -> None:
        self.action, self.old, self.new, self.source = action, old, new, source
        super().__init__(f"action {action} is already '{old}' in catalog; '{source}' cannot make it '{new}'")


class Catalog:
    """An immutable-by-convention set of connectors; `extend` returns a new catalog."""

    def __init__(self, connectors: Mapping[str, ConnectorInfo]) -> None:
        self.connectors: dict[str, ConnectorInfo] = dict(connectors)
        self.actions: dict[str, ActionInfo] = {}
        for c in self.connectors.values():
            for action, op in c.actions.items():
                self.actions[action] = ActionInfo(action, c.name, op, c.data_class)

    def lookup(self, action: str) -> ActionInfo | None:
        return self.actions.get(action)

    def connector(self, name: str) -> ConnectorInfo | None:
        return self.connectors.get(name)

    def extend(self, spec: Mapping[str, Any], source: str) -> Catalog:
        """Add the connectors of a ConnectorCatalog spec; raise CatalogConflict on a reclassification."""
        merged = dict(self.connectors)
        for entry in spec.get("connectors", []):
            name = entry["name"]
            new_actions = {f"{name}.{k}": v for k, v in entry.get("actions", {}).items()}
            old = merged.get(name)
            if old is not None:
                for action, op in new_actions.items():
                    if action in old.actions and old.actions[action] != op:
                        raise CatalogConflict(action, old.actions[action], op, source)
                actions = {**old.actions, **new_actions}
                merged[name] = ConnectorInfo(
                    name, old.data_class, old.description, old.hosts, actions, old.source
                )
            else:
                merged[name] = ConnectorInfo(
                    name,
                    entry["dataClass"],
                    entry.get("description", ""),
                    tuple(entry.get("hosts", ())),
                    new_actions,
                    source,
                )
        return Catalog(merged)

    def extend_all(self, specs: Iterable[tuple[Mapping[str, Any], str]]) -> Catalog:
        catalog = self
        for spec, source in specs:
            catalog = catalog.extend(spec, source)
        return catalog

    def __len__(self) -> int:
        return len(self.actions)


def split_action(action: str) -> tuple[str, str] | None:
    """`aws.s3.put_object` -> ('aws', 's3.put_object'); None when not connector.resource.verb."""
    parts = action.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], f"{parts[1]}.{parts[2]}"


@cache
def builtin_document() -> dict[str, Any]:
    """The built-in catalog file, a ConnectorCatalog resource."""
    import yaml

    text = resources.files("arxctl.data").joinpath("connectors.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@cache
def builtin() -> Catalog:
    return Catalog({}).extend(builtin_document()["spec"], "builtin")
