"""A provider-neutral LLM router: ordered failover, fleet-wide circuit breaking in Redis, an audit row per call."""

from arxctl.router.audit import AuditRow, AuditSink, ChainSink
from arxctl.router.config import RouterConfig, default_config, load_config, parse_config
from arxctl.router.errors import (
    LLMAuthError,
    LLMBadRequest,
    LLMCircuitOpen,
    LLMError,
    LLMRefusal,
    LLMRejection,
    LLMStreamInterrupted,
    LLMUnavailable,
)
from arxctl.router.router import ChatStream, Router
from arxctl.router.types import Attempt, Message, Response, Usage

__all__ = [
    "Attempt",
    "AuditRow",
    "AuditSink",
    "ChainSink",
    "ChatStream",
    "LLMAuthError",
    "LLMBadRequest",
    "LLMCircuitOpen",
    "LLMError",
    "LLMRefusal",
    "LLMRejection",
    "LLMStreamInterrupted",
    "LLMUnavailable",
    "Message",
    "Response",
    "Router",
    "RouterConfig",
    "Usage",
    "default_config",
    "load_config",
    "parse_config",
]
