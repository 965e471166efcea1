"""JSON Schemas for every resource kind: the one source for `validate` and for `crds/`."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

KINDS: dict[str, str] = {
    "Agent": "agent.json",
    "Policy": "policy.json",
    "Grant": "grant.json",
    "ConnectorCatalog": "connectorcatalog.json",
}


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for a kind (cached)."""
    text = resources.files(__package__).joinpath(KINDS[kind]).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def validator(kind: str):  # -> jsonschema.protocols.Validator
    """A compiled Draft 2020-12 validator for a kind (cached)."""
    from jsonschema import Draft202012Validator

    schema = load_schema(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
