"""Builders for the lifecycle tests: a store with registered agents and policies, and a project config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from arxctl.chain import store as chain
from arxctl.chain.verify import verify_store
from arxctl.registry import resources as registry
from arxctl.resources.validation import check_text
from arxctl.store.sqlite import Store
from tests.policy.helpers import agent_doc, approve, policy

T0 = "2026-04-14T10:00:00Z"
CONFIG = """\
groups:
  secops-leads: [alice, bob]
  cloud-sec-leads: [priya]
admins: [carol]
approvals: {default_group: secops-leads, default_timeout: 30m}
grants: {approvers: cloud-sec-leads}
webhook: {url: "http://127.0.0.1:9/hook", secret_env: ARX_TEST_WEBHOOK_SECRET}
retention: {bank-10yr: {years: 10, immutable: true}}
"""
CHANGE_POLICY = policy(
    "change-control",
    approve("change-close-over-one", "servicenow.change.close", "size(payload.change_ids) > 1"),
    selector={"env": "prod"},
)


def to_yaml(*docs: dict[str, Any]) -> str:
    """Documents as YAML text (JSON is YAML)."""
    return "\n---\n".join(orjson.dumps(d).decode() for d in docs)


def register(store: Store, *docs: dict[str, Any], actor: str = "tester") -> None:
    report = check_text(to_yaml(*docs))
    assert report.ok, [d.render() for d in report.diagnostics]
    registry.register(store, report.resources, actor=actor)


def populated(directory: Path, *, policies: bool = True) -> Store:
    """A store with triage-cs-01, triage-cs-02 (parent triage-cs-01) and the change-control policy."""
    store = Store(directory)
    docs = [agent_doc(), agent_doc("triage-cs-02", parent="triage-cs-01")]
    if policies:
        docs.append(CHANGE_POLICY)
    register(store, *docs)
    (directory / "config.yaml").write_text(CONFIG)
    return store


def types(store: Store, agent: str | None = None) -> list[str]:
    """The chain's record types in order (optionally one agent's)."""
    return [orjson.loads(line)["type"] for line in chain.iter_lines(store.conn, agent=agent)]


def bodies(store: Store, type_: str) -> list[dict[str, Any]]:
    out = []
    for line in chain.iter_lines(store.conn):
        data = orjson.loads(line)
        if data["type"] == type_:
            out.append(data["body"])
    return out


def assert_verifies(store: Store) -> None:
    result = verify_store(store)
    assert result.ok, result


def fails(error: type[BaseException] | tuple[type[BaseException], ...], message: str, fn: Any, *args: Any,
          **kwargs: Any) -> BaseException:
    """Call `fn` and assert it raises `error` with exactly `message`."""
    try:
        fn(*args, **kwargs)
    except error as exc:
        assert str(exc) == message, str(exc)
        return exc
    raise AssertionError(f"{fn.__name__} did not raise {error}")
