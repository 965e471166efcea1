"""End to end: the sample agents tree, and a real project (the installed kubernetes client) in a process pool."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import kubernetes

from arxctl.analyze.engine import analyze_paths
from arxctl.analyze.model import span_sha256

SAMPLE = [
    ("agents/cloud-posture/Dockerfile", 1, "ARXA401", None),
    ("agents/cloud-posture/Dockerfile", 2, "ARXA407", "aws.*"),
    ("agents/cloud-posture/remediate.py", 34, "ARXA101", "aws.s3.list_buckets"),
    ("agents/cloud-posture/remediate.py", 36, "ARXA101", "aws.s3.get_bucket_acl"),
    ("agents/cloud-posture/remediate.py", 41, "ARXA101", "aws.s3.get_bucket_policy"),
    ("agents/cloud-posture/remediate.py", 49, "ARXA101", "aws.s3.get_public_access_block"),
    ("agents/cloud-posture/remediate.py", 52, "ARXA101", "aws.s3.put_bucket_acl"),
    ("agents/cloud-posture/remediate.py", 53, "ARXA101", "aws.s3.put_public_access_block"),
    ("agents/cloud-posture/remediate.py", 62, "ARXA101", "aws.iam.list_users"),
    ("agents/cloud-posture/remediate.py", 63, "ARXA101", "aws.iam.get_user"),
    ("agents/cloud-posture/remediate.py", 66, "ARXA105", "jira.issue.create"),
    ("agents/cloud-posture/remediate.py", 69, "ARXA105", "jira.issue.comment"),
    ("agents/cloud-posture/remediate.py", 72, "ARXA102", "pagerduty.event.trigger"),
    ("agents/cloud-posture/remediate.py", 87, "ARXA103", "slack.chat.post"),
    ("agents/incident-responder/responder.py", 37, "ARXA102", "pagerduty.incident.read"),
    ("agents/incident-responder/responder.py", 43, "ARXA102", "pagerduty.incident.acknowledge"),
    ("agents/incident-responder/responder.py", 46, "ARXA102", "pagerduty.incident.note"),
    ("agents/incident-responder/responder.py", 58, "ARXA102", "crowdstrike.detection.read"),
    ("agents/incident-responder/responder.py", 62, "ARXA102", "crowdstrike.host.read"),
    ("agents/incident-responder/responder.py", 66, "ARXA102", "crowdstrike.host.contain"),
    ("agents/incident-responder/responder.py", 79, "ARXA102", "okta.user.read"),
    ("agents/incident-responder/responder.py", 82, "ARXA102", "okta.session.clear"),
    ("agents/incident-responder/responder.py", 100, "ARXA102", "slack.chat.post"),
    ("agents/pr-reviewer/reviewer.py", 30, "ARXA104", "github.pulls.read"),
    ("agents/pr-reviewer/reviewer.py", 36, "ARXA104", "github.contents.read"),
    ("agents/pr-reviewer/reviewer.py", 42, "ARXA104", "github.pulls.read"),
    ("agents/pr-reviewer/reviewer.py", 43, "ARXA108", "anthropic.messages.create"),
    ("agents/pr-reviewer/reviewer.py", 50, "ARXA104", "github.pulls.review"),
    ("agents/pr-reviewer/reviewer.py", 52, "ARXA104", "github.issues.comment"),
    ("agents/pr-reviewer/reviewer.py", 58, "ARXA104", "github.pulls.read"),
    ("agents/triage/triage.py", 30, "ARXA102", "servicenow.change.read"),
    ("agents/triage/triage.py", 35, "ARXA102", "servicenow.incident.read"),
    ("agents/triage/triage.py", 41, "ARXA102", "servicenow.change.close"),
    ("agents/triage/triage.py", 62, "ARXA103", "slack.chat.post"),
]


def test_every_sample_agent(workspace: Path, cli) -> None:
    result = cli("analyze", "agents", "-f", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert (doc["files"], doc["lines"], doc["summary"]) == (9, 382, {"info": 33, "warning": 1})
    assert [(f["path"], f["start_line"], f["rule_id"], f["action"]) for f in doc["findings"]] == SAMPLE


def test_real_project_kubernetes_client_in_a_process_pool() -> None:
    root = Path(kubernetes.__file__).parent
    parts = ["config", "stream", "watch", "utils", "dynamic", "leaderelection"]
    analysis = analyze_paths([root / p for p in parts], workers=2)
    assert analysis.files >= 40
    by_file: dict[str, set] = defaultdict(set)
    for f in analysis.findings:
        by_file[f.path.split("/kubernetes/", 1)[1]].add((f.rule_id, f.action))
        text = (analysis.root / f.path).read_text()
        assert f.sha256 == span_sha256(text, f.start_line, f.start_col, f.end_line, f.end_col)
    assert dict(by_file) == {
        "config/exec_provider.py": {("ARXA111", "shell.process.run")},
        "config/kube_config.py": {("ARXA111", "shell.process.run")},
        "config/kube_config_test.py": {("ARXA302", None)},
        "leaderelection/resourcelock/configmaplock.py": {
            ("ARXA107", "kubernetes.configmaps.create"), ("ARXA107", "kubernetes.configmaps.read"),
            ("ARXA107", "kubernetes.configmaps.update")},
        "leaderelection/resourcelock/leaselock.py": {
            ("ARXA107", "kubernetes.leases.create"), ("ARXA107", "kubernetes.leases.read"),
            ("ARXA107", "kubernetes.leases.update")},
        "stream/stream_test.py": {("ARXA107", "kubernetes.exec.run")},
        "stream/ws_client.py": {("ARXA302", None)},
        "stream/ws_client_test.py": {("ARXA107", "kubernetes.namespaces.read")},
    }
