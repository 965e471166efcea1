"""Drivers declared as data: every built-in file is valid and maps catalog actions; requests are built exactly;
payloads that would escape the path are refused; the gateway config reports mistakes with file:line:col."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from arxctl.errors import ValidationFailed
from arxctl.gateway.config import builtin_drivers, parse_config, read_driver
from arxctl.gateway.drivers import build_drivers
from arxctl.gateway.drivers.base import DriverError, project, redact_values
from arxctl.gateway.drivers.rest import RestDriver, RestSpec, _combine
from arxctl.policy.catalog import builtin

DRIVERS = build_drivers(parse_config("connectors:\n  servicenow: {base_url: 'https://bank.service-now.com'}\n"
                                     "  jira: {base_url: 'https://bank.atlassian.net'}\n", "gateway.yaml"))


def test_every_builtin_driver_maps_catalog_actions_and_says_which_it_does_not() -> None:
    catalog = builtin()
    not_driven = {}
    for declared in builtin_drivers():
        if declared.kind != "rest":
            continue
        spec = RestSpec.from_dict(declared.data, declared.source)
        assert [a for a in spec.actions if catalog.lookup(a) is None] == []
        not_driven[declared.connector] = sorted(set(catalog.connectors[declared.connector].actions) -
                                                set(spec.actions))
    assert not_driven == {
        "github": ["github.secrets.write"], "jira": ["jira.attachment.add"],
        "pagerduty": ["pagerduty.event.acknowledge", "pagerduty.event.resolve", "pagerduty.event.trigger"],
        "servicenow": ["servicenow.attachment.upload"], "slack": ["slack.files.upload"],
    }
    assert sorted(d.connector for d in builtin_drivers()) == ["aws", "github", "jira", "llm", "pagerduty",
                                                              "servicenow", "slack"]
    assert catalog.lookup("llm.chat.create") is not None


@pytest.mark.parametrize(("connector", "action", "payload", "expected"), [
    ("servicenow", "servicenow.change.close", {"change_ids": ["chg-1", "chg 2"], "close_code": "Duplicate"}, [
        ("PATCH", "https://bank.service-now.com/api/now/table/change_request/chg-1", [],
         b'{"close_code":"Duplicate","state":"3"}'),
        ("PATCH", "https://bank.service-now.com/api/now/table/change_request/chg%202", [],
         b'{"close_code":"Duplicate","state":"3"}')]),
    ("servicenow", "servicenow.table.read", {"table": "incident", "sysparm_limit": 5, "sysparm_display_value": True},
     [("GET", "https://bank.service-now.com/api/now/table/incident",
       [("sysparm_limit", "5"), ("sysparm_display_value", "true")], None)]),
    ("github", "github.contents.read", {"owner": "bank", "repo": "infra", "path": "ci/deploy file.yml",
                                        "ref": "main"},
     [("GET", "https://api.github.com/repos/bank/infra/contents/ci/deploy%20file.yml", [("ref", "main")], None)]),
    ("github", "github.contents.delete", {"owner": "bank", "repo": "infra", "path": "a.txt", "sha": "abc",
                                          "message": "rm"},
     [("DELETE", "https://api.github.com/repos/bank/infra/contents/a.txt", [],
       b'{"sha":"abc","message":"rm"}')]),
    ("jira", "jira.search.query", {"jql": "project = SEC", "maxResults": 10},
     [("POST", "https://bank.atlassian.net/rest/api/3/search/jql", [], b'{"jql":"project = SEC","maxResults":10}')]),
    ("pagerduty", "pagerduty.incident.acknowledge", {"id": "PT4KHLK"},
     [("PUT", "https://api.pagerduty.com/incidents/PT4KHLK", [],
       b'{"incident":{"type":"incident_reference","status":"acknowledged"}}')]),
    ("slack", "slack.users.read", {"user": "U0123", "include_locale": True},
     [("GET", "https://slack.com/api/users.info", [("user", "U0123"), ("include_locale", "true")], None)]),
    ("slack", "slack.conversations.history", {"channel": "C1", "types": ["public", "private"]},
     [("GET", "https://slack.com/api/conversations.history",
       [("channel", "C1"), ("types", "public"), ("types", "private")], None)]),
])
def test_requests_are_built_from_the_declaration(connector: str, action: str, payload: dict,
                                                 expected: list) -> None:
    driver = DRIVERS.get(connector)
    assert isinstance(driver, RestDriver)
    assert driver.requests(action, payload) == expected


@pytest.mark.parametrize(("action", "payload", "message"), [
    ("servicenow.change.read", {}, "payload.sys_id is required"),
    ("servicenow.change.read", {"sys_id": ".."}, "payload.sys_id must not be empty or hold '.' or '..' segments"),
    ("servicenow.change.read", {"sys_id": True}, "payload.sys_id must be a string or an integer"),
    ("servicenow.change.close", {"change_ids": "chg-1"}, "payload.change_ids must be a non-empty list"),
    ("servicenow.change.close", {"change_ids": [{"id": 1}]}, "payload.change_ids must hold strings or integers"),
    ("servicenow.change.close", {"change_ids": list(range(101))}, "payload.change_ids has 101 items; at most 100"),
    ("servicenow.table.read", {"table": "incident", "q": {"a": 1}},
     "payload.q must be a scalar or a list of scalars here"),
])
def test_payloads_a_request_cannot_carry_are_refused(action: str, payload: dict, message: str) -> None:
    driver = DRIVERS.get("servicenow")
    assert isinstance(driver, RestDriver)
    with pytest.raises(DriverError) as refused:
        driver.requests(action, payload)
    assert (refused.value.status, refused.value.code, refused.value.message) == (400, "bad-payload", message)


def test_github_paths_keep_slashes_but_never_climb() -> None:
    driver = DRIVERS.get("github")
    assert isinstance(driver, RestDriver)
    with pytest.raises(DriverError) as refused:
        driver.requests("github.contents.read", {"owner": "bank", "repo": "infra", "path": "ci/../../../orgs"})
    assert refused.value.message == "payload.path must not be empty or hold '.' or '..' segments"


def test_auth_headers_per_scheme_and_unusable_credentials() -> None:
    sn, slack, pd = DRIVERS.get("servicenow"), DRIVERS.get("slack"), DRIVERS.get("pagerduty")
    assert sn._auth_header(b"svc:pw\n") == ("Authorization", "Basic " + base64.b64encode(b"svc:pw").decode())
    assert slack._auth_header(b"xoxb-1") == ("Authorization", "Bearer xoxb-1")
    assert pd._auth_header(b"u+key") == ("Authorization", "Token token=u+key")
    for secret, message in ((b"no-colon", "the servicenow credential must be user:password for basic auth"),
                            (b"a:b\r\nX-Evil: 1", "the servicenow credential holds a line break"),
                            (b"\xff\xfe", "the servicenow credential is not UTF-8 text")):
        with pytest.raises(DriverError) as refused:
            sn._auth_header(secret)
        assert (refused.value.code, refused.value.message) == ("credential-unusable", message)


def test_current_state_is_cut_to_what_the_call_writes() -> None:
    record = {"sys_id": "chg-1", "state": "-1", "close_code": "", "assignment_group": {"name": "ops", "id": "7"}}
    assert project(record, {"close_code": "Dup", "assignment_group": {"name": "secops"}, "new": 1}) == {
        "close_code": "", "assignment_group": {"name": "ops"}}
    assert _combine([{"state": "-1", "close_code": ""}, {"state": "2", "close_code": ""}]) == {
        "state": ["-1", "2"], "close_code": ""}
    assert redact_values("channel C0NOPE: channel_not_found", {"channel": "C0NOPE"}) == (
        "channel ***: channel_not_found")


@pytest.mark.parametrize(("text", "rendered"), [
    ("connectors:\n  servicnow: {base_url: 'https://x.service-now.com'}\n",
     "gateway.yaml:2:3: ARX103 $.connectors.servicnow: no driver for connector 'servicnow' (did you mean "
     "'servicenow'?); known: aws, github, jira, llm, pagerduty, servicenow, slack"),
    ("connectors:\n  servicenow: {base_url: 'http://sn.bank.example'}\n",
     "gateway.yaml:2:26: ARX103 $.connectors.servicenow.base_url: plain http to a non-loopback host would send "
     "the credential in clear text; use https (or set insecure_http: true)"),
    ("connectors:\n  jira: {base_url: 'https://bot:pw@bank.atlassian.net'}\n",
     "gateway.yaml:2:20: ARX103 $.connectors.jira.base_url: must not carry credentials; store them with "
     "`arxctl credentials set`"),
    ("connectors:\n  pagerduty:\n    headers: {Authorization: 'Token token=abc'}\n",
     "gateway.yaml:3:15: ARX103 $.connectors.pagerduty.headers.Authorization: credentials never go in the config; "
     "the driver sends the stored credential"),
    ("connectors:\n  slack: {timeouts: {read: 30}}\n",
     "gateway.yaml:2:28: ARX103 $.connectors.slack.timeouts.read: expected string"),
    ("connectors:\n  slack: {base_ur: 'https://slack.com/api'}\n",
     "gateway.yaml:2:11: ARX101 $.connectors.slack.base_ur: unknown field 'base_ur' (did you mean 'base_url'?); "
     "allowed: auth, base_url, endpoint_url, headers, insecure_http, region, router, timeouts"),
    ("connectors:\n  aws: {base_url: 'https://s3.amazonaws.com'}\n",
     "gateway.yaml:2:9: ARX101 $.connectors.aws.base_url: 'base_url' does not apply to the boto3 driver of 'aws'"),
])
def test_config_mistakes_name_file_line_and_column(text: str, rendered: str) -> None:
    with pytest.raises(ValidationFailed) as failed:
        parse_config(text, "gateway.yaml")
    assert [d.render() for d in failed.value.diagnostics] == [rendered]


def test_extra_rest_driver_files_are_checked_like_the_builtin_ones(tmp_path: Path) -> None:
    good = tmp_path / "acme.yaml"
    good.write_text("connector: acme-ticketing\nbase_url: https://tickets.acme.example\nauth: {scheme: bearer}\n"
                    "actions:\n  ticket.close: {method: PATCH, path: '/tickets/{item}', foreach: ids}\n")
    config = tmp_path / "gateway.yaml"
    config.write_text("drivers: [acme.yaml]\n")
    drivers = build_drivers(parse_config(config.read_text(), str(config), tmp_path))
    acme = drivers.get("acme-ticketing")
    assert isinstance(acme, RestDriver)
    assert acme.requests("acme-ticketing.ticket.close", {"ids": [7], "note": "done"}) == [
        ("PATCH", "https://tickets.acme.example/tickets/7", [], orjson.dumps({"note": "done"}))]
    bad = tmp_path / "bad.yaml"
    bad.write_text("connector: acme-ticketing\nactions:\n  ticket.close: {method: PATCH, path: '/t/{id}', "
                   "foreach: ids}\n  ticket.read: {method: FETCH, path: '/t'}\n")
    with pytest.raises(ValidationFailed) as failed:
        read_driver(bad)
    assert [d.render() for d in failed.value.diagnostics] == [
        f"{bad}:4:25: ARX103 $.actions['ticket.read'].method: must be one of: GET, POST, PUT, PATCH, DELETE"]
    bad.write_text("connector: acme-ticketing\nactions:\n  ticket.close: {method: PATCH, path: '/t/{id}', "
                   "foreach: ids}\n")
    with pytest.raises(ValidationFailed) as failed:
        read_driver(bad)
    assert [d.render() for d in failed.value.diagnostics] == [
        f"{bad}:3:39: ARX103 $.actions['ticket.close'].path: a foreach action's path must use {{item}}"]
