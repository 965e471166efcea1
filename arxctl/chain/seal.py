"""Sealing an agent's record and the retention classes a seal records."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arxctl.chain.records import Record
from arxctl.chain.store import SEALED, Entry, append, sealed_agents
from arxctl.errors import InputError, SealedError


@dataclass(frozen=True, slots=True)
class RetentionClass:
    """How long a sealed record is kept, and whether it may be altered meanwhile."""

    name: str
    years: int
    immutable: bool

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "years": self.years, "immutable": self.immutable}


BUILTIN_RETENTION: dict[str, RetentionClass] = {
    c.name: c
    for c in (
        RetentionClass("sox-7yr", 7, True),
        RetentionClass("hipaa-6yr", 6, True),
        RetentionClass("finra-6yr", 6, True),
        RetentionClass("pci-1yr", 1, True),
        RetentionClass("gdpr-min", 0, False),
        RetentionClass("standard-1yr", 1, False),
    )
}
RETENTION_FILE = "retention.yaml"


def retention_table(state_dir: Path | None = None, config: Path | None = None) -> dict[str, RetentionClass]:
    """The built-in classes, extended or overridden by `retention.yaml` in the state dir or `config`."""
    table = dict(BUILTIN_RETENTION)
    path = config if config is not None else (state_dir / RETENTION_FILE if state_dir is not None else None)
    if path is None or (config is None and not path.exists()):
        return table
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise InputError(f"{path}: cannot read the retention table: {exc}") from exc
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, dict):
        raise InputError(f"{path}:1:1: expected a mapping `classes: {{name: {{years: N, immutable: bool}}}}`")
    for name, spec in classes.items():
        years = spec.get("years") if isinstance(spec, dict) else None
        immutable = spec.get("immutable", True) if isinstance(spec, dict) else None
        if not isinstance(years, int) or isinstance(years, bool) or years < 0 or not isinstance(immutable, bool):
            raise InputError(f"{path}: retention class {name!r} needs `years` (integer >= 0) and `immutable` (bool)")
        table[str(name)] = RetentionClass(str(name), years, immutable)
    return table


def seal(
    conn: sqlite3.Connection, agent: str, retention_class: str, actor: str, reason: str,
    table: dict[str, RetentionClass] | None = None, ts: str | None = None,
) -> Record:
    """Append the `agent.sealed` record; afterwards nothing more can be appended for the agent."""
    classes = table if table is not None else BUILTIN_RETENTION
    chosen = classes.get(retention_class)
    if chosen is None:
        raise InputError(f"unknown retention class {retention_class!r}; known: {', '.join(sorted(classes))}")
    if not reason.strip():
        raise InputError("a seal needs a reason")
    if agent in sealed_agents(conn):
        raise SealedError(f"agent '{agent}' is already sealed")
    body = {"retention": chosen.to_dict(), "reason": reason}
    return append(conn, Entry(type=SEALED, agent=agent, actor=actor, body=body, ts=ts))
