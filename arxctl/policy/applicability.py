"""Which policies apply to an agent, and the thresholds they combine to (formats.md section 4, step 4)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from arxctl.policy.risk import DEFAULT_DENY, DEFAULT_REVIEW


def applies(policy_spec: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    """A policy applies when every label in its selector (if any) matches the agent's labels."""
    selector = policy_spec.get("selector") or {}
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def effective_thresholds(policy_specs: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """The lowest review and the lowest deny set by the given (applicable) policies; defaults 60/80."""
    reviews = [p["thresholds"]["review"] for p in policy_specs if "review" in (p.get("thresholds") or {})]
    denies = [p["thresholds"]["deny"] for p in policy_specs if "deny" in (p.get("thresholds") or {})]
    return (min(reviews) if reviews else DEFAULT_REVIEW, min(denies) if denies else DEFAULT_DENY)
