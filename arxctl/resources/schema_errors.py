"""JSON Schema errors as diagnostics with file, line and column: one wording for manifests and config files.

Config files (`router.yaml`, `gateway.yaml`, driver files) may hold secrets in the wrong place, so by default
no message quotes the offending value; resource manifests opt in with `echo_values`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from arxctl.diagnostics import Diagnostic, Severity
from arxctl.resources.yamlio import Document, JsonPath, json_path_str

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

Wording = tuple[str, str]
"""A diagnostic's rule and message."""

SpecialWording = Callable[["ValidationError", list[str | int]], Wording | None]
"""A caller's own wording for some schema errors (given the error and its path), None for the shared one."""

_EMPTY = ("minItems", "minProperties", "minLength")


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def type_name(value: Any) -> str:
    """The JSON type of a value, as JSON Schema names it."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def schema_diagnostics(
    doc: Document,
    validator: Validator,
    *,
    echo_values: bool = False,
    patterns: Mapping[str, Wording] | None = None,
    special: SpecialWording | None = None,
    missing_field_path: bool = False,
    outcome_key: str | None = None,
) -> list[Diagnostic]:
    """Every schema error in `doc`, positioned; values are quoted only with `echo_values`.

    `patterns` words a `pattern` error by the schema's regex (e.g. durations); `special` words any other error
    first. With `missing_field_path` a missing required field is reported at its parent's key under its own
    JSON path (else at the parent). Unknown keys under `outcome_key` are outcomes, listed without the fields.
    """
    out: list[Diagnostic] = []
    for err in validator.iter_errors(doc.data):
        path: list[str | int] = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            out.extend(_unknown_keys(doc, err, path, outcome_key))
        elif err.validator == "required":
            out.append(_missing(doc, err, path, missing_field_path))
        else:
            wording = special(err, path) if special is not None else None
            rule, message = wording or _wording(err, echo_values, patterns or {})
            out.append(_diag(doc, path, rule, message))
    return out


def _diag(doc: Document, path: JsonPath, rule: str, message: str, *, key: bool = False,
          at: tuple[int, int] | None = None) -> Diagnostic:
    line, col = at or doc.position(path, key=key)
    return Diagnostic(doc.path, line, col, rule, Severity.error, message, json_path_str(path))


def _unknown_keys(doc: Document, err: ValidationError, path: list[str | int],
                  outcome_key: str | None) -> list[Diagnostic]:
    allowed = sorted(err.schema.get("properties", {}))
    outcomes = outcome_key is not None and bool(path) and path[-1] == outcome_key
    out: list[Diagnostic] = []
    for extra in sorted(k for k in err.instance if k not in allowed):
        message = f"unknown {'outcome' if outcomes else 'field'} '{extra}'{suggest(extra, allowed)}"
        if allowed and not outcomes:
            message += f"; allowed: {', '.join(allowed)}"
        out.append(_diag(doc, [*path, extra], "ARX101", message, key=True))
    return out


def _missing(doc: Document, err: ValidationError, path: list[str | int], missing_field_path: bool) -> Diagnostic:
    missing = err.message.split("'")[1] if "'" in err.message else str(err.validator_value)
    message = f"missing required field '{missing}'"
    if missing_field_path:
        return _diag(doc, [*path, missing], "ARX102", message, at=doc.position(path, key=bool(path)))
    return _diag(doc, path, "ARX102", message)


def _wording(err: ValidationError, echo_values: bool, patterns: Mapping[str, Wording]) -> Wording:
    v, value = err.validator, err.validator_value
    if v == "pattern" and value in patterns:
        return patterns[value]
    if v == "enum":
        choices = ", ".join(map(str, value))
        return "ARX103", f"{err.instance!r} is not one of: {choices}" if echo_values else f"must be one of: {choices}"
    if v == "type":
        expected = value if isinstance(value, str) else "/".join(value)
        got = f", got {type_name(err.instance)}" if echo_values else ""
        return "ARX103", f"expected {expected}{got}"
    if echo_values:
        return "ARX103", err.message
    if v == "pattern":
        return "ARX103", f"does not match {value}"
    if v in _EMPTY:
        return "ARX103", "must not be empty"
    if v == "minimum":
        return "ARX103", f"must be at least {value}"
    return "ARX103", f"invalid value ({v})"
