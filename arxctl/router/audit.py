"""The audit row every LLM call writes (success or failure), and the sink that appends it to the chain."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arxctl.router.errors import (
    LLMBadRequest,
    LLMCircuitOpen,
    LLMError,
    LLMRefusal,
    LLMStreamInterrupted,
    LLMUnavailable,
)
from arxctl.router.types import Attempt, Usage

RECORD_TYPE = "llm.chat"
ACTION_TYPE = "llm.chat"
CONNECTOR = "llm"


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One call's record: who called, and the body stored in the chain."""

    agent: str | None
    actor: str | None
    body: dict[str, Any]


AuditSink = Callable[[AuditRow], None]


def outcome_of(error: LLMError | None) -> str:
    """The row's `outcome`: ok, refused, bad_request, circuit_open, unavailable or interrupted."""
    if error is None:
        return "ok"
    for cls, name in (
        (LLMRefusal, "refused"), (LLMBadRequest, "bad_request"), (LLMCircuitOpen, "circuit_open"),
        (LLMUnavailable, "unavailable"), (LLMStreamInterrupted, "interrupted"),
    ):
        if isinstance(error, cls):
            return name
    return "failed"


def build_body(
    *, model_tier: str, session: str | None, stream: bool, outcome: str, provider_used: str | None,
    model: str | None, attempts: Sequence[Attempt], usage: Usage, prompt_digest: str | None, breaker: str,
    error: LLMError | None = None,
) -> dict[str, Any]:
    """The `llm.chat` body: the attempt chain and token usage, never the prompt (only its digest)."""
    return {
        "action_type": ACTION_TYPE,
        "connector": CONNECTOR,
        "model_tier": model_tier,
        "session": session,
        "stream": stream,
        "outcome": outcome,
        "provider_used": provider_used,
        "model": model,
        "failover_hops": max(0, len(attempts) - 1),
        "attempts": [a.to_dict() for a in attempts],
        "usage": usage.to_dict(),
        "prompt_digest": prompt_digest,
        "breaker": breaker,
        "error": None if error is None else {"kind": error.kind, "error_type": error.error_type,
                                             "provider": error.provider},
    }


class ChainSink:
    """Appends each row to the audit chain as an `llm.chat` record, in its own write transaction."""

    def __init__(self, store: Any) -> None:  # arxctl.store.sqlite.Store
        self.store = store
        self._lock = threading.Lock()

    def __call__(self, row: AuditRow) -> None:
        from arxctl.chain.store import Entry, append

        with self._lock, self.store.transaction() as conn:
            append(conn, Entry(type=RECORD_TYPE, agent=row.agent, actor=row.actor, body=row.body))
