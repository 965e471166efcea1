"""Label selectors: `env=prod,region=us-east`, `env!=dev`, `team` (exists) or the brief's `env:prod/region:us-east`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from arxctl.errors import InputError


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists"
    value: str | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


def parse_selector(text: str) -> list[Requirement]:
    """Parse either syntax; an empty string selects everything."""
    text = text.strip()
    if not text:
        return []
    if "=" not in text and "," not in text and ":" in text:
        return _parse_brief(text)
    out: list[Requirement] = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            raise InputError(f"empty term in selector {text!r}")
        if "!=" in term:
            key, value = term.split("!=", 1)
            out.append(Requirement(_key(key, text), "!=", value.strip()))
        elif "==" in term or "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            out.append(Requirement(_key(key, text), "=", value.strip()))
        elif term.startswith("!"):
            out.append(Requirement(_key(term[1:], text), "!exists"))
        else:
            out.append(Requirement(_key(term, text), "exists"))
    return out


def _parse_brief(text: str) -> list[Requirement]:
    """`env:prod/region:us-east`; a key prefix like `example.com/team:x` is kept whole."""
    tokens = text.split("/")
    out: list[Requirement] = []
    pending = ""
    for token in tokens:
        token = pending + token
        if ":" not in token:
            pending = token + "/"
            continue
        pending = ""
        key, value = token.split(":", 1)
        out.append(Requirement(_key(key, text), "=", value.strip()))
    if pending:
        raise InputError(f"selector {text!r}: expected key:value pairs separated by '/'")
    return out


def _key(key: str, text: str) -> str:
    key = key.strip()
    if not key:
        raise InputError(f"selector {text!r}: empty label key")
    return key


def matches(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in requirements)
