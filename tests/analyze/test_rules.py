"""Golden tests per rule family: a source file -> exact findings; plus the rules' building blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arxctl.analyze.dockerfile import analyze as analyze_dockerfile
from arxctl.analyze.dockerfile import parse
from arxctl.analyze.engine import analyze_source, needs_deep
from arxctl.analyze.rules.db import classify
from arxctl.analyze.rules.http import connector_for_host, route_action
from arxctl.analyze.rules.hygiene import token_kind
from arxctl.analyze.rules.process import read_only
from arxctl.analyze.rules.sdk_kubernetes import k8s_action
from arxctl.analyze.rules.slack import web_api_action
from arxctl.analyze.values import Str, parse_url
from arxctl.policy.catalog import builtin

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name[: -len(".py.txt")] for p in GOLDEN.glob("*.py.txt"))


def rows(source: str, name: str) -> list[list]:
    return [[f.rule_id, f.severity, f.start_line, f.start_col, f.end_line, f.end_col, f.action, f.operation,
             f.message] for f in analyze_source(source, name)]


@pytest.mark.parametrize("case", CASES)
def test_golden_python(case: str) -> None:
    source = (GOLDEN / f"{case}.py.txt").read_text()
    expected = json.loads((GOLDEN / f"{case}.expected.json").read_text())
    assert rows(source, f"{case}.py") == expected


def test_golden_dockerfile() -> None:
    source = (GOLDEN / "Dockerfile.txt").read_text()
    expected = json.loads((GOLDEN / "Dockerfile.expected.json").read_text())
    got = [[f.rule_id, f.severity, f.start_line, f.start_col, f.end_line, f.end_col, f.action, f.message]
           for f in analyze_dockerfile(source, "Dockerfile")]
    assert got == expected


def test_secrets_never_in_messages() -> None:
    source = (GOLDEN / "hygiene.py.txt").read_text()
    messages = " ".join(f.message for f in analyze_source(source, "h.py"))
    for secret in ("AKIAZ7QEXAMPL3KEY123", "xoxb-123456789012", "S3cure-Passw0rd!", "9f8e7d6c5b4a39281706",
                   "hunter2-hunter2"):
        assert secret not in messages
    docker = (GOLDEN / "Dockerfile.txt").read_text()
    assert "xoxb" not in " ".join(f.message for f in analyze_dockerfile(docker, "Dockerfile"))


def test_span_hash_is_the_exact_source_text() -> None:
    import hashlib

    source = 'import requests\n\nrequests.delete("https://api.github.com/repos/a/b")\n'
    (f,) = analyze_source(source)
    assert (f.start_line, f.start_col, f.end_line, f.end_col) == (3, 1, 3, 52)
    assert f.sha256 == hashlib.sha256(b'requests.delete("https://api.github.com/repos/a/b")').hexdigest()
    assert (f.action, f.operation) == ("github.repos.delete", "destructive")


def test_unparseable_python_is_a_finding_with_position() -> None:
    (f,) = analyze_source("import os\n\ndef broken(:\n    pass\n", "bad.py")
    assert (f.rule_id, f.severity, f.path, f.start_line, f.start_col, f.end_line, f.end_col) == (
        "ARXA100", "error", "bad.py", 3, 1, 3, 13)
    assert f.message == "cannot parse Python: invalid syntax"


@pytest.mark.parametrize(("sql", "db", "expected"), [
    ("select * from t", "postgres", [("postgres.query.select", "SELECT")]),
    ("  -- note\n INSERT INTO t VALUES (1)", "sqlite", [("sqlite.query.insert", "INSERT")]),
    ("WITH x AS (SELECT 1) DELETE FROM t USING x", "postgres", [("postgres.query.delete", "DELETE")]),
    ("WITH x AS (SELECT 1) SELECT * FROM x", "postgres", [("postgres.query.select", "SELECT")]),
    ("TRUNCATE audit", "postgres", [("postgres.schema.ddl", "TRUNCATE")]),
    ("ALTER ROLE app WITH SUPERUSER", "postgres", [("postgres.privilege.grant", "ALTER")]),
    ("COPY t TO STDOUT", "postgres", [("postgres.copy.export", "COPY")]),
    ("COPY t FROM STDIN", "postgres", [("postgres.copy.import", "COPY")]),
    ("PRAGMA table_info(t)", "sqlite", [("sqlite.schema.read", "PRAGMA")]),
    ("PRAGMA user_version", "sqlite", [("sqlite.pragma.read", "PRAGMA")]),
    ("ATTACH DATABASE 'x.db' AS x", "sqlite", [("sqlite.database.attach", "ATTACH")]),
    ("VACUUM INTO '/tmp/copy.db'", "sqlite", [("sqlite.database.export", "VACUUM")]),
    ("SELECT name FROM sqlite_master", "sqlite", [("sqlite.schema.read", "SELECT")]),
    ("BEGIN; UPDATE t SET a = 1; COMMIT", "sqlite", [("sqlite.query.update", "UPDATE")]),
    ("MERGE INTO t USING s ON true", "postgres", [("postgres.query.update", "MERGE")]),
    ("CALL do_it()", "postgres", [("postgres.query.unresolved", "CALL")]),
])
def test_sql_verbs(sql: str, db: str, expected: list) -> None:
    assert classify(sql, db) == expected


@pytest.mark.parametrize(("method", "action"), [
    ("list_namespaced_pod", "kubernetes.pods.list"),
    ("list_pod_for_all_namespaces", "kubernetes.pods.list"),
    ("read_namespaced_pod_log", "kubernetes.pods.logs"),
    ("delete_collection_namespaced_pod", "kubernetes.pods.delete"),
    ("create_namespaced_pod_eviction", "kubernetes.nodes.drain"),
    ("connect_get_namespaced_pod_exec", "kubernetes.exec.run"),
    ("replace_namespaced_deployment", "kubernetes.deployments.update"),
    ("read_namespaced_secret", "kubernetes.secrets.read"),
    ("patch_node", "kubernetes.nodes.cordon"),
    ("create_namespaced_role_binding", "kubernetes.rbac.bind"),
    ("create_cluster_role", "kubernetes.rbac.create"),
    ("list_namespaced_stateful_set", "kubernetes.statefulsets.read"),
    ("list_namespaced_pod_with_http_info", "kubernetes.pods.list"),
    ("api_client", None),
])
def test_kubernetes_method_names(method: str, action: str | None) -> None:
    assert k8s_action(method) == action


@pytest.mark.parametrize(("argv", "expected"), [
    (["git", "status"], True), (["git", "push"], False), (["/bin/ls", "-la"], True), (["rm", "-rf", "/"], False),
    (["kubectl", "-n", "x", "get", "pods"], False), (["kubectl", "get", "pods", "-n", "x"], True),
    (["kubectl", "delete", "ns", "x"], False), ([], False),
])
def test_read_only_commands(argv: list[str], expected: bool) -> None:
    assert read_only(argv) is expected


def test_hosts_and_routes() -> None:
    catalog = builtin()
    assert connector_for_host("bank.service-now.com", catalog) == "servicenow"
    assert connector_for_host("api.eu-1.crowdstrike.com", catalog) == "crowdstrike"
    assert connector_for_host("hooks.slack.com", catalog) == "slack"
    assert connector_for_host("s3.us-east-1.amazonaws.com", catalog) == "aws"
    assert connector_for_host("example.com", catalog) == "http"
    assert connector_for_host(None, catalog) == "http"
    url = parse_url(Str(("https://", None, ".service-now.com/api/now/table/change_request/", None)))
    assert (url.host, url.path, url.resolved) == ("unresolved.service-now.com", "/api/now/table/change_request/*",
                                                  False)
    assert route_action("servicenow", "PATCH", url, {"state": "7"}) == "servicenow.change.close"
    assert route_action("servicenow", "PATCH", url, {"state": "2"}) == "servicenow.change.update"
    okta = parse_url(Str(("https://bank.okta.com/api/v1/users/00u1/lifecycle/suspend",)))
    assert route_action("okta", "POST", okta, {}) == "okta.user.suspend"
    pd = parse_url(Str(("https://events.pagerduty.com/v2/enqueue",)))
    assert route_action("pagerduty", "POST", pd, {"event_action": "resolve"}) == "pagerduty.event.resolve"
    assert route_action("crowdstrike", "POST", parse_url(Str(("https://api.crowdstrike.com/oauth2/token",))),
                        {}) == "skip"
    assert web_api_action("chat.postMessage") == "slack.chat.post"
    assert web_api_action("admin.users.remove") == "slack.admin.users_remove"
    assert web_api_action("auth.test") is None


def test_token_formats() -> None:
    assert token_kind("ghp_" + "a" * 36) == "GitHub token"
    assert token_kind("-----BEGIN OPENSSH PRIVATE KEY-----") == "private key"
    assert token_kind("postgresql://app:s3cret@db/app") == "password in URL"
    assert token_kind("AKIAIOSFODNN7EXAMPLE") is None
    assert token_kind("https://api.github.com/repos") is None


def test_prefilter_skips_files_without_connector_calls() -> None:
    assert needs_deep(b"import os\nprint(os.path.join('a', 'b'))\n")[0] is False
    assert needs_deep(b"import os\nos.system('ls')\n")[0] is True
    assert needs_deep(b"from kubernetes.client.configuration import Configuration\nConfiguration()\n")[0] is False
    assert needs_deep(b"from kubernetes import client\nclient.CoreV1Api()\n")[0] is True
    assert needs_deep(b"def f(x):\n    return x\n")[0] is False
    assert needs_deep(b"def f():\n    requests.get(verify=False)\n")[0] is True


def test_dockerfile_continuations_and_heredocs() -> None:
    text = "FROM a@sha256:00\nRUN <<EOF\necho hi\nEOF\nRUN a \\\n  # comment\n  b\nUSER app\n"
    got = [(i.keyword, i.args, i.start_line, i.end_line) for i in parse(text)]
    assert got == [("FROM", "a@sha256:00", 1, 1), ("RUN", "<<EOF\necho hi", 2, 4), ("RUN", "a b", 5, 7),
                   ("USER", "app", 8, 8)]
    assert analyze_dockerfile(text, "Dockerfile") == []
