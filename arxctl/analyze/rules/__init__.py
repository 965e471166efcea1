"""Connector rules, one module per connector family, each with a stable rule id and a DESCRIPTION."""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import libcst as cst

from arxctl.analyze.rules import (
    boto3,
    db,
    http,
    process,
    sdk_github,
    sdk_jira,
    sdk_kubernetes,
    sdk_llm,
    sdk_salesforce,
    slack,
    smtp,
)

CONNECTOR_RULES: tuple[ModuleType, ...] = (
    boto3, http, slack, sdk_github, sdk_jira, sdk_salesforce, sdk_kubernetes, sdk_llm, db, process, smtp,
)


class RuleSet:
    """Dispatch from imported names and object families to the rule modules."""

    def __init__(self, modules: Iterable[ModuleType]) -> None:
        self.modules = tuple(modules)
        self.by_family: dict[str, ModuleType] = {}
        self._entries: list[tuple[str, ModuleType]] = []
        self._patterns: list[tuple[re.Pattern[str], ModuleType]] = []
        for m in self.modules:
            for fam in m.FAMILIES:
                self.by_family[fam] = m
            self._entries.extend((prefix, m) for prefix in m.ENTRY)
            self._patterns.extend((re.compile(p), m) for p in getattr(m, "ENTRY_RE", ()))
        self._referencing = tuple(m for m in self.modules if hasattr(m, "reference"))
        self.top_modules = frozenset(name for m in self.modules for name in m.MODULES)
        self.needles: dict[str, re.Pattern[bytes]] = {
            name: re.compile(pattern) for m in self.modules for name, pattern in getattr(m, "NEEDLES", {}).items()
        }

    def for_qname(self, qname: str) -> list[ModuleType]:
        found = [m for prefix, m in self._entries if qname == prefix or qname.startswith(prefix + ".")]
        found.extend(m for pattern, m in self._patterns if pattern.match(qname) and m not in found)
        return found

    def is_entry(self, qname: str) -> bool:
        """True when a call or annotation naming `qname` can start a connector detection."""
        return bool(self.for_qname(qname))

    def references(self, analyzer: Any, node: cst.Attribute) -> list[Any]:
        """Hits for attribute references that act without a call (a method passed as a callback)."""
        out: list[Any] = []
        for m in self._referencing:
            out.extend(m.reference(analyzer, node))
        return out


RULESET = RuleSet(CONNECTOR_RULES)


def descriptions() -> dict[str, str]:
    return {m.RULE_ID: m.DESCRIPTION for m in CONNECTOR_RULES}
