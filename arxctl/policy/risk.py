"""The open risk formula (formats.md section 3): four auditable components, every number configurable."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_REVIEW = 60
DEFAULT_DENY = 80


def _frozen(d: dict[str, int]) -> MappingProxyType:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class RiskModel:
    """Weights of the risk formula; the defaults are the published ones."""

    operation: MappingProxyType = field(
        default_factory=lambda: _frozen({"read": 5, "write": 20, "destructive": 30, "containment": 40})
    )
    connector: MappingProxyType = field(
        default_factory=lambda: _frozen({"public": 0, "internal": 8, "confidential": 16, "restricted": 25})
    )
    target: MappingProxyType = field(
        default_factory=lambda: _frozen({"dev": 0, "staging": 10, "prod": 20, "unknown": 20})
    )
    frequency_free_calls: int = 10
    frequency_cap: int = 15
    frequency_window_s: float = 60.0

    def operation_risk(self, operation: str) -> int:
        # An operation class the model does not know scores as the most dangerous one (fail closed).
        return self.operation.get(operation, max(self.operation.values()))

    def connector_sensitivity(self, data_class: str) -> int:
        return self.connector.get(data_class, max(self.connector.values()))

    def target_sensitivity(self, env: str | None) -> int:
        return self.target.get(env or "unknown", self.target["unknown"])

    def session_frequency(self, n: int) -> int:
        """n = 1 + earlier calls by the same agent and session inside the window."""
        return min(self.frequency_cap, max(0, n - self.frequency_free_calls))

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": dict(self.operation),
            "connector": dict(self.connector),
            "target": dict(self.target),
            "frequency": {
                "free_calls": self.frequency_free_calls,
                "cap": self.frequency_cap,
                "window_s": self.frequency_window_s,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RiskModel:
        if not data:
            return cls()
        base = cls()
        freq = data.get("frequency", {})
        return cls(
            operation=_frozen({**base.operation, **data.get("operation", {})}),
            connector=_frozen({**base.connector, **data.get("connector", {})}),
            target=_frozen({**base.target, **data.get("target", {})}),
            frequency_free_calls=int(freq.get("free_calls", base.frequency_free_calls)),
            frequency_cap=int(freq.get("cap", base.frequency_cap)),
            frequency_window_s=float(freq.get("window_s", base.frequency_window_s)),
        )


def band(score: int, review: int, deny: int) -> str:
    """The threshold verdict for a score."""
    if score >= deny:
        return "DENY"
    if score >= review:
        return "APPROVAL_REQUIRED"
    return "ALLOW"
