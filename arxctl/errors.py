"""Typed errors that core code raises; commands map them to exit codes."""

from __future__ import annotations


class ArxError(Exception):
    """Base of every arxctl error a person can act on."""

    exit_code = 1


class InputError(ArxError):
    """Bad input or usage: exit code 2, nothing stored."""

    exit_code = 2


class NotFoundError(InputError):
    """A named thing (agent, version, record) does not exist."""


class StateError(ArxError):
    """The state store is unreadable, locked too long or from a newer arxctl."""

    exit_code = 2


class ValidationFailed(InputError):
    """Resources failed validation; carries the diagnostics."""

    def __init__(self, diagnostics: list) -> None:  # list[Diagnostic]
        self.diagnostics = diagnostics
        first = diagnostics[0].render() if diagnostics else "validation failed"
        more = f" (+{len(diagnostics) - 1} more)" if len(diagnostics) > 1 else ""
        super().__init__(first + more)


class SealedError(ArxError):
    """An append was refused because the agent's record is sealed: exit code 1."""
