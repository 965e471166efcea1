"""The project config: approver groups, admins, approval and grant defaults, the webhook, retention classes.

Read from `<state>/config.yaml` or `--config FILE`:

    groups: {secops-leads: [alice, bob], cloud-sec-leads: [priya]}
    admins: [carol]
    approvals: {default_group: secops-leads, default_timeout: 1h}
    grants: {approvers: cloud-sec-leads}
    webhook: {url: https://hooks.example/arx, secret_env: ARX_WEBHOOK_SECRET, timeout: 5s, retries: 3}
    retention: {bank-10yr: {years: 10, immutable: true}}

A missing file is an empty config: nobody may approve and nobody may reactivate (fail closed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from arxctl.chain.seal import RetentionClass, retention_table
from arxctl.diagnostics import Diagnostic, Severity
from arxctl.durations import parse_duration
from arxctl.errors import ArxError, InputError, ValidationFailed
from arxctl.resources.yamlio import Document, json_path_str, read_file

CONFIG_FILE = "config.yaml"
DEFAULT_APPROVAL_TIMEOUT = timedelta(hours=1)
DEFAULT_WEBHOOK_TIMEOUT = timedelta(seconds=5)
DEFAULT_WEBHOOK_RETRIES = 3
_SECTIONS = ("groups", "admins", "approvals", "grants", "webhook", "retention")
_FIELDS: dict[str, tuple[str, ...]] = {
    "approvals": ("default_group", "default_timeout"),
    "grants": ("approvers",),
    "webhook": ("url", "secret_env", "timeout", "retries"),
}


class NotPermitted(ArxError):
    """The actor may not do this (not in the approver group, not an admin, or approving their own request)."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where the drift.detected webhook goes and which environment variable holds its HMAC secret."""

    url: str
    secret_env: str | None = None
    timeout: timedelta = DEFAULT_WEBHOOK_TIMEOUT
    retries: int = DEFAULT_WEBHOOK_RETRIES

    def secret(self) -> bytes:
        """The signing secret from the environment; a missing secret is an input error (never sign with none)."""
        if not self.secret_env:
            raise InputError("webhook.secret_env is not set in the project config: the webhook cannot be signed")
        value = os.environ.get(self.secret_env)
        if not value:
            raise InputError(f"environment variable {self.secret_env} (webhook.secret_env) is empty or unset")
        return value.encode("utf-8")


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """Who may approve, reactivate and grant, plus defaults; immutable once loaded."""

    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()
    default_group: str | None = None
    default_timeout: timedelta = DEFAULT_APPROVAL_TIMEOUT
    grant_approvers: str | None = None
    webhook: WebhookConfig | None = None
    retention: Mapping[str, RetentionClass] = field(default_factory=dict)
    path: str | None = None

    def members(self, group: str | None) -> frozenset[str]:
        return self.groups.get(group, frozenset()) if group else frozenset()

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def require_admin(self, user: str, what: str) -> None:
        """Raise NotPermitted unless `user` is listed under `admins`."""
        if not self.is_admin(user):
            where = self.path or "the project config"
            raise NotPermitted(f"'{user}' may not {what}: only an admin listed under `admins` in {where} may")

    def require_member(self, user: str, group: str | None, what: str) -> None:
        """Raise NotPermitted unless `user` is a member of `group`."""
        where = self.path or "the project config"
        if not group:
            raise NotPermitted(f"'{user}' may not {what}: no approver group is set (set approvals.default_group "
                               f"in {where})")
        if group not in self.groups:
            raise NotPermitted(f"'{user}' may not {what}: group '{group}' is not defined under `groups` in {where}")
        if user not in self.groups[group]:
            raise NotPermitted(f"'{user}' may not {what}: not a member of group '{group}'")

    def require_grant_approver(self, user: str, what: str) -> None:
        """Raise NotPermitted unless `user` is in the `grants.approvers` group or an admin."""
        if self.is_admin(user) or user in self.members(self.grant_approvers):
            return
        where = self.path or "the project config"
        who = f"a member of group '{self.grant_approvers}' or an admin" if self.grant_approvers else "an admin"
        raise NotPermitted(f"'{user}' may not {what}: only {who} may (grants.approvers and admins in {where})")

    def retention_classes(self, state_dir: Path | None) -> dict[str, RetentionClass]:
        """Built-in classes, then `<state>/retention.yaml`, then this config's `retention` (last wins)."""
        table = retention_table(state_dir)
        table.update(self.retention)
        return table


def config_path(state_dir: Path | None, explicit: Path | None = None) -> Path | None:
    """`--config FILE` when given, else `<state>/config.yaml` when it exists."""
    if explicit is not None:
        return explicit
    if state_dir is not None and (state_dir / CONFIG_FILE).exists():
        return state_dir / CONFIG_FILE
    return None


def load(state_dir: Path | None = None, explicit: Path | None = None) -> ProjectConfig:
    """The project config; every problem is reported with file:line:col and nothing is half-applied."""
    path = config_path(state_dir, explicit)
    if path is None:
        return ProjectConfig()
    if not path.exists():
        raise InputError(f"{path}: no such config file")
    docs, problems = read_file(path)
    if problems:
        raise ValidationFailed(problems)
    if not docs:
        return ProjectConfig(path=str(path))
    if len(docs) > 1:
        raise ValidationFailed([Diagnostic(str(path), docs[1].start_line, 1, "ARX103", Severity.error,
                                           "the project config is one YAML document", "$")])
    return parse(docs[0])


def parse(doc: Document) -> ProjectConfig:
    """A config from one parsed YAML document (raises ValidationFailed with positions)."""
    checker = _Checker(doc)
    data = doc.data
    if not isinstance(data, dict):
        checker.error([], "ARX003", "the project config must be a mapping")
        checker.raise_if_any()
    for key in data:
        if key not in _SECTIONS:
            checker.error([key], "ARX101", f"unknown field '{key}'; allowed: {', '.join(_SECTIONS)}", key=True)
    groups: dict[str, frozenset[str]] = {}
    raw_groups = checker.mapping(data, ["groups"])
    for name, users in raw_groups.items():
        groups[str(name)] = frozenset(checker.users(users, ["groups", name]))
    admins = frozenset(checker.users(data.get("admins", []), ["admins"]))
    approvals = checker.section(data, "approvals")
    default_group = checker.text(approvals, ["approvals", "default_group"])
    if default_group is not None and default_group not in groups:
        checker.error(["approvals", "default_group"], "ARX103", f"group '{default_group}' is not defined under groups")
    timeout = checker.duration(approvals, ["approvals", "default_timeout"]) or DEFAULT_APPROVAL_TIMEOUT
    grants = checker.section(data, "grants")
    grant_approvers = checker.text(grants, ["grants", "approvers"])
    if grant_approvers is not None and grant_approvers not in groups:
        checker.error(["grants", "approvers"], "ARX103", f"group '{grant_approvers}' is not defined under groups")
    webhook = None
    hook = checker.section(data, "webhook")
    if hook:
        url = checker.text(hook, ["webhook", "url"])
        if url is None:
            checker.error(["webhook"], "ARX102", "missing required field 'url'", key=True)
        elif not url.startswith(("http://", "https://")):
            checker.error(["webhook", "url"], "ARX103", f"url {url!r} must start with http:// or https://")
        retries = hook.get("retries", DEFAULT_WEBHOOK_RETRIES)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
            checker.error(["webhook", "retries"], "ARX103", "retries must be an integer from 0 to 10")
            retries = DEFAULT_WEBHOOK_RETRIES
        webhook = WebhookConfig(
            url=url or "", secret_env=checker.text(hook, ["webhook", "secret_env"]),
            timeout=checker.duration(hook, ["webhook", "timeout"]) or DEFAULT_WEBHOOK_TIMEOUT, retries=retries,
        )
    retention: dict[str, RetentionClass] = {}
    for name, spec in checker.mapping(data, ["retention"]).items():
        where = ["retention", name]
        years = spec.get("years") if isinstance(spec, dict) else None
        immutable = spec.get("immutable", True) if isinstance(spec, dict) else None
        if not isinstance(years, int) or isinstance(years, bool) or years < 0 or not isinstance(immutable, bool):
            checker.error(where, "ARX103", "a retention class needs `years` (integer >= 0) and `immutable` (bool)")
            continue
        retention[str(name)] = RetentionClass(str(name), years, immutable)
    checker.raise_if_any()
    return ProjectConfig(
        groups=groups, admins=admins, default_group=default_group, default_timeout=timeout,
        grant_approvers=grant_approvers, webhook=webhook, retention=retention, path=doc.path,
    )


class _Checker:
    """Collects positioned diagnostics while reading the config."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Diagnostic] = []

    def error(self, path: Sequence[str | int], rule: str, message: str, *, key: bool = False) -> None:
        line, col = self.doc.position(path, key=key)
        self.problems.append(Diagnostic(self.doc.path, line, col, rule, Severity.error, message, json_path_str(path)))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ValidationFailed(self.problems)

    def mapping(self, data: Mapping[str, Any], path: list[str | int]) -> dict[str, Any]:
        value = data.get(str(path[-1]))
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, "ARX103", f"expected a mapping, got {type(value).__name__}")
            return {}
        return value

    def section(self, data: Mapping[str, Any], name: str) -> dict[str, Any]:
        value = self.mapping(data, [name])
        for key in value:
            if key not in _FIELDS[name]:
                self.error([name, key], "ARX101",
                           f"unknown field '{key}'; allowed: {', '.join(_FIELDS[name])}", key=True)
        return value

    def users(self, value: Any, path: list[str | int]) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, "ARX103", f"expected a list of user names, got {type(value).__name__}")
            return []
        out = []
        for i, user in enumerate(value):
            if not isinstance(user, str) or not user.strip():
                self.error([*path, i], "ARX103", "a user name must be a non-empty string")
            else:
                out.append(user.strip())
        return out

    def text(self, data: Mapping[str, Any], path: list[str | int]) -> str | None:
        value = data.get(str(path[-1]))
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(path, "ARX103", "expected a non-empty string")
            return None
        return value.strip()

    def duration(self, data: Mapping[str, Any], path: list[str | int]) -> timedelta | None:
        value = data.get(str(path[-1]))
        if value is None:
            return None
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.error(path, "ARX132", str(exc))
            return None
