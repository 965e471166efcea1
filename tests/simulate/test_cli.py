"""`arxctl simulate` from the command line: formats, gates and exit codes, --baseline-ref on a real repository."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

from .conftest import FIXTURES

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def fx(cli, state_dir: Path) -> Path:
    """The fixtures copied next to the state directory (the CLI runs there), so paths in reports are relative."""
    target = state_dir.parent / "fx"
    shutil.copytree(FIXTURES, target)
    return target


ARGS = ["simulate", "fx/activity.ndjson", "--manifests", "fx/manifests", "--policy", "fx/proposed",
        "--baseline", "fx/baseline"]


def test_json_report(cli, fx: Path) -> None:
    result = cli(*ARGS, "--format", "json")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["events"] == 29
    assert report["flips"] == [{"from": "ALLOW", "to": "APPROVAL_REQUIRED", "count": 6},
                               {"from": "ALLOW", "to": "DENY", "count": 2}]
    assert report["gates"] == [] and report["ok"] is True
    assert report["sides"]["baseline"]["source"] == "fx/baseline"
    assert report["registry"] == "manifests in fx/manifests (all active)"


def test_markdown_for_a_pull_request(cli, fx: Path) -> None:
    result = cli(*ARGS, "--format", "markdown", "--max-new-denies", "0", "--max-new-approvals-per-day", "10")
    assert result.exit_code == 1
    assert result.stdout == (GOLDEN / "report.md").read_text(encoding="utf-8")


def test_text_report(cli, fx: Path) -> None:
    result = cli(*ARGS, "--fail-on-flip", "ALLOW->DENY")
    assert result.exit_code == 1
    assert result.stdout == (GOLDEN / "report.txt").read_text(encoding="utf-8")


def test_junit_has_one_testcase_per_gate(cli, fx: Path) -> None:
    result = cli(*ARGS, "-f", "junit", "--max-new-denies", "2", "--fail-on-flip", "ALLOW->DENY",
                 "--fail-on-flip", "DENY->ALLOW")
    assert result.exit_code == 1
    suite = ET.fromstring(result.stdout).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    cases = {case.get("name"): case.find("failure") for case in suite.findall("testcase")}
    assert list(cases) == ["max-new-denies", "fail-on-flip ALLOW->DENY", "fail-on-flip DENY->ALLOW"]
    assert cases["max-new-denies"] is None and cases["fail-on-flip DENY->ALLOW"] is None
    failure = cases["fail-on-flip ALLOW->DENY"]
    assert failure is not None and failure.get("message") == "2 > 0"


def test_gates_that_hold_exit_0(cli, fx: Path) -> None:
    result = cli(*ARGS, "--max-new-denies", "2", "--max-new-approvals-per-day", "5", "--fail-on-flip",
                 "DENY->ALLOW", "-q")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "result: every gate holds"


def test_strict_exits_2_on_a_malformed_line(cli, fx: Path) -> None:
    with (fx / "activity.ndjson").open("ab") as f:
        f.write(b"{not json\n")
    loose = cli(*ARGS, "-f", "json")
    assert loose.exit_code == 0
    assert orjson.loads(loose.stdout)["malformed"] == {
        "count": 1, "lines": ["fx/activity.ndjson:30: not a JSON object: JSON is malformed: "
                              "object keys must be strings (byte 1)"]}
    strict = cli(*ARGS, "--strict")
    assert strict.exit_code == 2
    assert strict.stdout == ""
    assert strict.stderr == ("error: fx/activity.ndjson:30: not a JSON object: JSON is malformed: object keys must "
                             "be strings (byte 1) (--strict)\n")


@pytest.mark.parametrize(("extra", "message"), [
    (["--fail-on-flip", "ALLOW"], "error: --fail-on-flip 'ALLOW': use FROM->TO with two different verdicts of "
                                  "ALLOW, APPROVAL_REQUIRED, DENY, e.g. ALLOW->DENY\n"),
    (["--baseline-ref", "HEAD"], "error: give --baseline or --baseline-ref, not both\n"),
    (["--since", "last week"], "error: --since 'last week': use a duration back from now (30d, 12h) or an RFC 3339 "
                               "date or timestamp (2026-04-01, 2026-04-01T00:00:00Z)\n"),
    (["--from-chain"], "error: --from-chain replays the chain's decisions; give no activity files with it\n"),
])
def test_usage_errors_exit_2(cli, fx: Path, extra: list[str], message: str) -> None:
    result = cli(*ARGS, *extra)
    assert result.exit_code == 2
    assert result.stderr == message


def test_without_state_or_files_it_says_what_to_give(cli, fx: Path) -> None:
    result = cli("simulate", "fx/activity.ndjson", "--policy", "fx/proposed")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no arxctl state here (register agents and policies, or pass --state); without one give "
        "--manifests DIR, --policy DIR and --baseline DIR, --baseline-ref REF or --baseline recorded\n")


def test_an_invalid_policy_file_exits_2_with_its_position(cli, fx: Path) -> None:
    (fx / "proposed" / "broken.yaml").write_text(
        "apiVersion: arx.dev/v1alpha1\nkind: Policy\nmetadata: {name: broken}\nspec:\n  rules:\n"
        "    - name: r\n      when: slack.chat.post\n      then: {aprove: {}}\n", encoding="utf-8")
    result = cli(*ARGS)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("fx/proposed/broken.yaml:8:")
    assert lines[-1] == "error: the policy or manifest files are not valid; nothing was replayed"


def test_baseline_ref_reads_the_policies_at_a_commit(cli, fx: Path) -> None:
    import git

    repo_dir = fx.parent / "repo"
    (repo_dir / "policies").mkdir(parents=True)
    repo = git.Repo.init(repo_dir)
    shutil.copy(fx / "baseline" / "change-control.yaml", repo_dir / "policies" / "change-control.yaml")
    repo.index.add(["policies/change-control.yaml"])
    repo.index.commit("baseline policies", author=git.Actor("t", "t@example.com"),
                      committer=git.Actor("t", "t@example.com"))
    for name in ("change-control.yaml", "tighter.yaml"):
        shutil.copy(fx / "proposed" / name, repo_dir / "policies" / name)
    result = cli("simulate", "fx/activity.ndjson", "--manifests", "fx/manifests", "--policy", "repo/policies",
                 "--baseline-ref", "HEAD", "-f", "json", "--fail-on-flip", "ALLOW->DENY")
    assert result.exit_code == 1, result.stderr
    report = orjson.loads(result.stdout)
    sha = repo.head.commit.hexsha[:12]
    assert report["sides"]["baseline"]["source"] == f"git HEAD:policies ({sha})"
    assert report["sides"]["baseline"]["policies"] == ["change-control"]
    assert report["flips"] == [{"from": "ALLOW", "to": "APPROVAL_REQUIRED", "count": 6},
                               {"from": "ALLOW", "to": "DENY", "count": 2}]
    missing = cli("simulate", "fx/activity.ndjson", "--manifests", "fx/manifests", "--policy", "repo/policies",
                  "--baseline-ref", "no-such-branch")
    assert missing.exit_code == 2
    assert missing.stderr == f"error: --baseline-ref 'no-such-branch': no such commit, branch or tag in " \
                             f"{repo_dir.resolve()}\n"


def test_progress_bar_only_on_a_terminal_without_quiet_or_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from arxctl.commands.simulate import ProgressBar

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with ProgressBar(False, 100) as update:
        assert update is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with ProgressBar(True, 100) as update:
        assert update is None
    monkeypatch.setenv("NO_COLOR", "1")
    with ProgressBar(False, 100) as update:
        assert update is None
    monkeypatch.delenv("NO_COLOR")
    bar = ProgressBar(False, 100)
    with bar as update:
        assert update is not None
        update(50, 1000)
        task = bar.bar.tasks[0]
        assert (task.completed, task.total, task.fields["lines"]) == (50, 100, 1000)
