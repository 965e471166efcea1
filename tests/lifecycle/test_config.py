"""The project config: groups, admins, defaults, webhook and retention, with positioned errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from arxctl.errors import InputError, ValidationFailed
from arxctl.registry import config as project
from tests.lifecycle.helpers import CONFIG


def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    cfg = project.load(tmp_path)
    assert cfg.groups == {"secops-leads": frozenset({"alice", "bob"}), "cloud-sec-leads": frozenset({"priya"})}
    assert (cfg.admins, cfg.default_group, cfg.default_timeout, cfg.grant_approvers) == (
        frozenset({"carol"}), "secops-leads", timedelta(minutes=30), "cloud-sec-leads")
    assert cfg.webhook == project.WebhookConfig("http://127.0.0.1:9/hook", "ARX_TEST_WEBHOOK_SECRET",
                                                timedelta(seconds=5), 3)
    monkeypatch.setenv("ARX_TEST_WEBHOOK_SECRET", "hunter2")
    assert cfg.webhook.secret() == b"hunter2"
    assert cfg.retention_classes(tmp_path)["bank-10yr"].to_dict() == {"class": "bank-10yr", "years": 10,
                                                                       "immutable": True}
    assert cfg.path == str(tmp_path / "config.yaml")


def test_missing_config_is_empty_and_closed(tmp_path: Path) -> None:
    cfg = project.load(tmp_path)
    assert cfg == project.ProjectConfig()
    assert (cfg.members("secops-leads"), cfg.is_admin("root"), cfg.webhook) == (frozenset(), False, None)
    with pytest.raises(InputError) as err:
        project.load(tmp_path, tmp_path / "nope.yaml")
    assert str(err.value) == f"{tmp_path / 'nope.yaml'}: no such config file"


def test_webhook_secret_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARX_UNSET_SECRET", raising=False)
    with pytest.raises(InputError) as err:
        project.WebhookConfig("http://x", "ARX_UNSET_SECRET").secret()
    assert str(err.value) == "environment variable ARX_UNSET_SECRET (webhook.secret_env) is empty or unset"


@pytest.mark.parametrize(("text", "rendered"), [
    ("groups: {a: [x]}\nadmin: [y]\n",
     ["config.yaml:2:1: ARX101 $.admin: unknown field 'admin'; allowed: groups, admins, approvals, grants, webhook, "
      "retention"]),
    ("groups:\n  a: x\n", ["config.yaml:2:6: ARX103 $.groups.a: expected a list of user names, got str"]),
    ("approvals: {default_group: nobody, default_timeout: soon}\n",
     ["config.yaml:1:28: ARX103 $.approvals.default_group: group 'nobody' is not defined under groups",
      "config.yaml:1:53: ARX132 $.approvals.default_timeout: invalid duration 'soon': use a number and a unit, "
      "e.g. 30s, 15m, 4h, 1h30m, 7d"]),
    ("webhook:\n  url: ftp://x\n  retries: 50\n  secret: abc\n",
     ["config.yaml:4:3: ARX101 $.webhook.secret: unknown field 'secret'; allowed: url, secret_env, timeout, retries",
      "config.yaml:2:8: ARX103 $.webhook.url: url 'ftp://x' must start with http:// or https://",
      "config.yaml:3:12: ARX103 $.webhook.retries: retries must be an integer from 0 to 10"]),
    ("retention: {x: {years: -1}}\n",
     ["config.yaml:1:16: ARX103 $.retention.x: a retention class needs `years` (integer >= 0) and `immutable` "
      "(bool)"]),
    ("groups: [a\n", ["config.yaml:2:1: ARX001 $: did not find expected ',' or ']' (while parsing a flow "
                      "sequence)"]),
])
def test_errors_point_at_file_line_col(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                       rendered: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("config.yaml").write_text(text)
    with pytest.raises(ValidationFailed) as err:
        project.load(None, Path("config.yaml"))
    assert [d.render() for d in err.value.diagnostics] == rendered
