"""HTTP clients (requests, httpx, urllib.request, urllib3, aiohttp): method and host decide the connector."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit, method_operation
from arxctl.analyze.rules.slack import web_api_action
from arxctl.analyze.values import UNKNOWN_LABEL, DictV, Obj, Str, Url, known_text, obj, parse_url, text

RULE_ID = "ARXA102"
DESCRIPTION = "HTTP call: the URL's host picks the connector (catalog hosts), method and path pick the action"
FAMILIES = ("http",)
MODULES = ("requests", "httpx", "urllib", "urllib3", "aiohttp")
ENTRY = ("requests", "httpx", "urllib.request", "urllib3", "aiohttp")

NEEDLES = {"urllib": rb"urllib\.request|\burlopen\b|\bRequest\b|\bbuild_opener\b"}
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")

Payload = dict[str, str]


def _closes(p: Payload) -> bool:
    state = p.get("state", "").lower()
    return "close_code" in p or state in {"3", "4", "6", "7", "closed", "resolved", "canceled", "cancelled"}


def _status(value: str) -> Callable[[Payload], bool]:
    return lambda p: p.get("status", "").lower() == value


def _key(key: str, *values: str) -> Callable[[Payload], bool]:
    return lambda p: p.get(key, "").lower() in values


@dataclass(frozen=True, slots=True)
class Route:
    """One REST route of a connector: methods, a path pattern, the action, and an optional payload test."""

    connector: str
    methods: frozenset[str]
    path: re.Pattern[str]
    action: str | None
    when: Callable[[Payload], bool] | None = None


def _routes(connector: str, prefix: str, table: list[tuple[Any, ...]]) -> list[Route]:
    out = []
    for row in table:
        methods, path, action = row[0], row[1], row[2]
        when = row[3] if len(row) > 3 else None
        seg = path.replace("{}", r"[^/]+")
        out.append(Route(connector, frozenset(methods.split("|")), re.compile(f"^{prefix}{seg}/?$"), action, when))
    return out


_SN = r"/api/now(?:/v\d+)?"
_JIRA = r"/rest/api/(?:2|3|latest)"
_SF = r"/services/data/v[0-9.*]+"
_GH_REPO = r"/repos/{}/{}"
ROUTES: list[Route] = [
    *_routes("servicenow", _SN, [
        ("PATCH|PUT", "/table/change_request/{}", "change.close", _closes),
        ("PATCH|PUT", "/table/change_request/{}", "change.update"),
        ("GET", "/table/change_request(?:/[^/]+)?", "change.read"),
        ("POST", "/table/change_request", "change.create"),
        ("DELETE", "/table/change_request/{}", "change.delete"),
        ("PATCH|PUT", "/table/incident/{}", "incident.resolve", _closes),
        ("PATCH|PUT", "/table/incident/{}", "incident.update"),
        ("GET", "/table/incident(?:/[^/]+)?", "incident.read"),
        ("POST", "/table/incident", "incident.create"),
        ("DELETE", "/table/incident/{}", "incident.delete"),
        ("GET", "/table/change_task(?:/[^/]+)?", "change_task.read"),
        ("POST", "/table/change_task", "change_task.create"),
        ("PATCH|PUT", "/table/change_task/{}", "change_task.update"),
        ("GET", "/table/problem(?:/[^/]+)?", "problem.read"),
        ("POST", "/table/problem", "problem.create"),
        ("PATCH|PUT", "/table/problem/{}", "problem.update"),
        ("GET", "/table/cmdb_ci[a-z_]*(?:/[^/]+)?", "cmdb_ci.read"),
        ("POST", "/table/cmdb_ci[a-z_]*", "cmdb_ci.create"),
        ("PATCH|PUT", "/table/cmdb_ci[a-z_]*/{}", "cmdb_ci.update"),
        ("DELETE", "/table/cmdb_ci[a-z_]*/{}", "cmdb_ci.delete"),
        ("GET", "/table/sys_user(?:/[^/]+)?", "user.read"),
        ("GET", "/table/{}(?:/[^/]+)?", "table.read"),
        ("DELETE", "/table/{}/{}", "table.delete"),
        ("POST|PATCH|PUT", "/table/{}(?:/[^/]+)?", "table.write"),
        ("GET", "/attachment(?:/.*)?", "attachment.read"),
        ("POST", "/attachment/.*", "attachment.upload"),
        ("DELETE", "/attachment/{}", "attachment.delete"),
    ]),
    *_routes("servicenow", r"/api/sn_chg_rest(?:/v\d+)?", [
        ("PATCH", "/change/{}/approvals", "change.approve"),
        ("PATCH|PUT", "/change(?:/[a-z]+)?/{}", "change.close", _closes),
        ("PATCH|PUT", "/change(?:/[a-z]+)?/{}", "change.update"),
        ("GET", "/change(?:/.*)?", "change.read"),
        ("POST", "/change(?:/[a-z]+)?", "change.create"),
        ("DELETE", "/change(?:/[a-z]+)?/{}", "change.delete"),
    ]),
    *_routes("servicenow", "", [("POST", "/oauth_token.do", None)]),
    *_routes("slack", "", [("POST", "/services/.*", "chat.post")]),
    *_routes("github", "", [
        ("PUT", _GH_REPO + "/pulls/{}/merge", "pulls.merge"),
        ("POST", _GH_REPO + "/pulls/{}/(?:reviews|comments)", "pulls.review"),
        ("GET", _GH_REPO + "/pulls(?:/.*)?", "pulls.read"),
        ("POST", _GH_REPO + "/pulls", "pulls.create"),
        ("PATCH", _GH_REPO + "/pulls/{}", "pulls.update"),
        ("POST", _GH_REPO + "/issues/{}/comments", "issues.comment"),
        ("GET", _GH_REPO + "/issues(?:/.*)?", "issues.read"),
        ("POST", _GH_REPO + "/issues", "issues.create"),
        ("PATCH", _GH_REPO + "/issues/{}", "issues.close", _key("state", "closed")),
        ("PATCH", _GH_REPO + "/issues/{}", "issues.update"),
        ("GET", _GH_REPO + "/contents(?:/.*)?", "contents.read"),
        ("PUT", _GH_REPO + "/contents/.*", "contents.write"),
        ("DELETE", _GH_REPO + "/contents/.*", "contents.delete"),
        ("PUT|POST", _GH_REPO + "/branches/{}/protection", "branches.protect"),
        ("DELETE", _GH_REPO + "/branches/{}/protection", "branches.unprotect"),
        ("GET", _GH_REPO + "/branches(?:/.*)?", "branches.read"),
        ("DELETE", _GH_REPO + "/git/refs/heads/.*", "branches.delete"),
        ("PUT", _GH_REPO + "/collaborators/{}", "collaborators.add"),
        ("DELETE", _GH_REPO + "/collaborators/{}", "collaborators.remove"),
        ("GET", _GH_REPO + "/releases(?:/.*)?", "releases.read"),
        ("POST", _GH_REPO + "/releases(?:/.*)?", "releases.create"),
        ("PUT", _GH_REPO + "/actions/secrets/{}", "secrets.write"),
        ("POST", _GH_REPO + "/actions/workflows/{}/dispatches", "actions.dispatch"),
        ("POST", _GH_REPO + "/actions/runs/{}/cancel", "actions.cancel"),
        ("GET", _GH_REPO + "/actions(?:/.*)?", "actions.read"),
        ("GET", _GH_REPO, "repos.get"),
        ("PATCH", _GH_REPO, "repos.update"),
        ("DELETE", _GH_REPO, "repos.delete"),
        ("POST", "/(?:user|orgs/{})/repos", "repos.create"),
        ("GET", "/(?:user|orgs/{}|users/{})/repos", "repos.list"),
    ]),
    *_routes("jira", _JIRA, [
        ("POST", "/issue/{}/comment", "issue.comment"),
        ("GET", "/issue/{}/(?:comment|transitions|changelog)(?:/.*)?", "issue.read"),
        ("POST", "/issue/{}/transitions", "issue.transition"),
        ("PUT", "/issue/{}/assignee", "issue.assign"),
        ("POST", "/issue/{}/attachments", "attachment.add"),
        ("POST", "/issue/{}/worklog", "worklog.add"),
        ("POST", "/issueLink", "issue.link"),
        ("POST", "/issue(?:/bulk)?", "issue.create"),
        ("GET", "/issue/{}", "issue.read"),
        ("PUT", "/issue/{}", "issue.update"),
        ("DELETE", "/issue/{}", "issue.delete"),
        ("DELETE", "/attachment/{}", "attachment.delete"),
        ("GET|POST", "/search(?:/jql)?", "search.query"),
        ("GET", "/project(?:/.*)?", "project.read"),
        ("POST", "/project", "project.create"),
        ("DELETE", "/project/{}", "project.delete"),
        ("GET", "/(?:user|myself|users)(?:/.*)?", "user.read"),
    ]),
    *_routes("jira", "/rest/agile/1.0", [
        ("GET", "/(?:board/{}/)?sprint(?:/.*)?", "sprint.read"),
        ("POST|PUT", "/sprint/{}(?:/issue)?", "sprint.update"),
    ]),
    *_routes("pagerduty", "", [
        ("PUT", "/incidents(?:/[^/]+)?", "incident.acknowledge", _status("acknowledged")),
        ("PUT", "/incidents(?:/[^/]+)?", "incident.resolve", _status("resolved")),
        ("POST", "/incidents/{}/notes", "incident.note"),
        ("PUT", "/incidents/{}/merge", "incident.merge"),
        ("POST", "/incidents/{}/snooze", "incident.snooze"),
        ("PUT", "/incidents(?:/[^/]+)?", "incident.update"),
        ("GET", "/incidents(?:/.*)?", "incident.read"),
        ("POST", "/incidents", "incident.create"),
        ("GET", "/services(?:/.*)?", "service.read"),
        ("PUT", "/services/{}", "service.update"),
        ("GET", "/oncalls", "oncall.read"),
        ("GET", "/schedules(?:/.*)?", "schedule.read"),
        ("GET", "/users(?:/.*)?", "user.read"),
        ("GET", "/escalation_policies(?:/.*)?", "escalation_policy.read"),
        ("POST", "/maintenance_windows", "maintenance_window.create"),
        ("POST", "/v2/enqueue", "event.acknowledge", _key("event_action", "acknowledge")),
        ("POST", "/v2/enqueue", "event.resolve", _key("event_action", "resolve")),
        ("POST", "/v2/enqueue", "event.trigger"),
    ]),
    *_routes("okta", "/api/v1", [
        ("DELETE", "/users/{}/sessions", "session.clear"),
        ("POST", "/users/{}/lifecycle/suspend", "user.suspend"),
        ("POST", "/users/{}/lifecycle/unsuspend", "user.unsuspend"),
        ("POST", "/users/{}/lifecycle/(?:re)?activate", "user.activate"),
        ("POST", "/users/{}/lifecycle/deactivate", "user.deactivate"),
        ("POST", "/users/{}/lifecycle/unlock", "user.unlock"),
        ("POST", "/users/{}/lifecycle/(?:reset_password|expire_password)", "user.reset_password"),
        ("POST", "/users/{}/lifecycle/reset_factors", "factor.reset"),
        ("GET", "/users/{}/factors(?:/.*)?", "factor.read"),
        ("DELETE", "/users/{}/factors/{}", "factor.reset"),
        ("GET", "/users", "user.list"),
        ("GET", "/users/{}(?:/.*)?", "user.read"),
        ("POST", "/users", "user.create"),
        ("POST|PUT", "/users/{}", "user.update"),
        ("DELETE", "/users/{}", "user.delete"),
        ("PUT", "/groups/{}/users/{}", "group.add_member"),
        ("DELETE", "/groups/{}/users/{}", "group.remove_member"),
        ("GET", "/groups(?:/.*)?", "group.read"),
        ("PUT|POST", "/apps/{}/users(?:/[^/]+)?", "app.assign"),
        ("DELETE", "/apps/{}/users/{}", "app.unassign"),
        ("GET", "/apps(?:/.*)?", "app.read"),
        ("GET", "/logs", "log.read"),
    ]),
    *_routes("crowdstrike", "", [
        ("POST", "/oauth2/token", None),
        ("POST", "/devices/entities/devices-actions/v2", "host.contain", _key("action_name", "contain")),
        ("POST", "/devices/entities/devices-actions/v2", "host.lift_containment",
         _key("action_name", "lift_containment")),
        ("POST", "/devices/entities/devices-actions/v2", "host.hide", _key("action_name", "hide_host")),
        ("POST", "/devices/entities/devices-actions/v2", "host.unhide", _key("action_name", "unhide_host")),
        ("GET", "/devices/(?:queries|entities)/.*", "host.read"),
        ("POST", "/devices/entities/devices/v2", "host.read"),
        ("GET", "/(?:detects|alerts)/(?:queries|entities)/.*", "detection.read"),
        ("POST", "/(?:detects/entities/summaries/GET/v1|alerts/entities/alerts/v2)", "detection.read"),
        ("PATCH", "/(?:detects/entities/detects/v2|alerts/entities/alerts/v3)", "detection.update"),
        ("POST", "/incidents/entities/incident-actions/v1", "incident.update"),
        ("GET|POST", "/incidents/(?:queries|entities)/.*", "incident.read"),
        ("GET", "/iocs/(?:queries|entities)/.*", "ioc.read"),
        ("POST", "/iocs/entities/indicators/v1", "ioc.create"),
        ("PATCH", "/iocs/entities/indicators/v1", "ioc.update"),
        ("DELETE", "/iocs/entities/indicators/v1", "ioc.delete"),
        ("POST", "/real-time-response/entities/sessions/v1", "rtr.session_init"),
        ("POST", "/real-time-response/entities/command/v1", "rtr.run_readonly_command"),
        ("POST", "/real-time-response/entities/(?:active-responder|admin)-command/v1", "rtr.run_command"),
        ("GET", "/real-time-response/entities/(?:file-contents|extracted-file-contents)/v\\d", "rtr.get_file"),
        ("POST", "/real-time-response/entities/put-files/v\\d", "rtr.put_file"),
        ("GET", "/policy/(?:queries|entities)/prevention.*", "prevention_policy.read"),
        ("PATCH", "/policy/entities/prevention/v\\d", "prevention_policy.update"),
    ]),
    *_routes("salesforce", "", [("POST", "/services/oauth2/token", None)]),
    *_routes("salesforce", _SF, [
        ("GET", "/query(?:All)?(?:/.*)?", "query.soql"),
        ("GET", "/(?:search|parameterizedSearch)(?:/.*)?", "search.sosl"),
        ("GET", "/sobjects/{}/describe", "sobject.describe"),
        ("POST", "/sobjects/{}", "record.create"),
        ("GET", "/sobjects/{}/{}", "record.read"),
        ("PATCH", "/sobjects/{}/{}/{}", "record.upsert"),
        ("PATCH", "/sobjects/{}/{}", "record.update"),
        ("DELETE", "/sobjects/{}/{}", "record.delete"),
        ("POST", "/jobs/ingest", "bulk.delete", _key("operation", "delete", "harddelete")),
        ("POST", "/jobs/ingest", "bulk.update", _key("operation", "update")),
        ("POST", "/jobs/ingest", "bulk.upsert", _key("operation", "upsert")),
        ("POST", "/jobs/ingest", "bulk.insert"),
        ("GET|POST", "/jobs/query(?:/.*)?", "bulk.export"),
        ("GET", "/tooling/executeAnonymous", "apex.execute_anonymous"),
        ("GET|POST", "/analytics/reports/{}", "report.run"),
    ]),
    *_routes("anthropic", "/v1", [
        ("POST", "/messages", "messages.create"),
        ("POST", "/messages/count_tokens", "messages.count_tokens"),
        ("POST", "/messages/batches", "batches.create"),
        ("POST", "/messages/batches/{}/cancel", "batches.cancel"),
        ("GET", "/messages/batches/{}/results", "batches.results"),
        ("GET", "/messages/batches(?:/[^/]+)?", "batches.read"),
        ("DELETE", "/messages/batches/{}", "batches.delete"),
        ("GET", "/models", "models.list"),
        ("GET", "/models/{}", "models.read"),
        ("POST", "/files", "files.upload"),
        ("GET", "/files", "files.list"),
        ("GET", "/files/{}/content", "files.download"),
        ("DELETE", "/files/{}", "files.delete"),
    ]),
    *_routes("openai", "/v1", [
        ("POST", "/chat/completions", "chat.create"),
        ("POST", "/responses", "responses.create"),
        ("POST", "/completions", "completions.create"),
        ("POST", "/embeddings", "embeddings.create"),
        ("POST", "/moderations", "moderations.create"),
        ("POST", "/images/generations", "images.generate"),
        ("POST", "/audio/transcriptions", "audio.transcribe"),
        ("POST", "/audio/speech", "audio.synthesize"),
        ("GET", "/models", "models.list"),
        ("DELETE", "/models/{}", "models.delete"),
        ("POST", "/files", "files.upload"),
        ("GET", "/files(?:/.*)?", "files.read"),
        ("DELETE", "/files/{}", "files.delete"),
        ("POST", "/batches", "batches.create"),
        ("POST", "/batches/{}/cancel", "batches.cancel"),
        ("GET", "/batches(?:/[^/]+)?", "batches.read"),
        ("POST", "/fine_tuning/jobs", "fine_tuning.create"),
        ("POST", "/fine_tuning/jobs/{}/cancel", "fine_tuning.cancel"),
        ("GET", "/fine_tuning/jobs(?:/.*)?", "fine_tuning.read"),
        ("POST", "/vector_stores", "vector_stores.create"),
        ("POST", "/vector_stores/{}/search", "vector_stores.search"),
        ("DELETE", "/vector_stores/{}", "vector_stores.delete"),
    ]),
]
_SKIP = "skip"


def connector_for_host(host: str | None, catalog: Any) -> str:
    """The catalog connector whose `hosts` globs match; `http` when none does."""
    if host:
        for name in sorted(catalog.connectors):
            for pattern in catalog.connectors[name].hosts:
                if fnmatch.fnmatchcase(host, pattern.lower()):
                    return name
    return "http"


def route_action(connector: str, method: str, url: Url, payload: Payload) -> str | None:
    """The catalog action for a call, `skip` for authentication endpoints, else None (no route matched)."""
    path = url.path
    if connector == "slack" and path.startswith("/api/"):
        api_method = path[len("/api/"):].strip("/")
        return _SKIP if web_api_action(api_method) is None else web_api_action(api_method)
    for r in ROUTES:
        if r.connector == connector and method in r.methods and r.path.match(path):
            if r.when is not None and not r.when(payload):
                continue
            return _SKIP if r.action is None else f"{connector}.{r.action}"
    return None


def _flatten(value: Any, out: Payload, depth: int = 0) -> None:
    if isinstance(value, DictV) and depth < 4:
        for k, v in value.items:
            if isinstance(v, DictV):
                _flatten(v, out, depth + 1)
            else:
                t = known_text(v)
                if t is not None:
                    out.setdefault(k, t)
                elif v is None or isinstance(v, Str):
                    out.setdefault(k, "")


def _payload(call: cst.Call | None, ctx: Ctx, url: Str | None, extra: Any = None) -> Payload:
    out: Payload = {}
    if call is not None:
        for kw in ("json", "data", "params", "body", "content", "fields"):
            _flatten(ctx.arg_value(call, keyword=kw), out)
    _flatten(extra, out)
    known = url.known if url is not None else None
    if known and "?" in known:
        for k, v in parse_qsl(known.split("?", 1)[1]):
            out.setdefault(k, v)
    return out


def request(node: cst.CSTNode, method: str | None, url: Str | None, ctx: Ctx, lib: str,
            call: cst.Call | None = None, base: Str | None = None, extra_payload: Any = None) -> Outcome:
    """Attribute one HTTP request to a connector and action."""
    full = _join(base, url)
    parsed = parse_url(full)
    connector = connector_for_host(parsed.host, ctx.catalog)
    m = (method or "UNRESOLVED").upper()
    payload = _payload(call, ctx, full, extra_payload)
    action = route_action(connector, m, parsed, payload) if connector != "http" else None
    if action == _SKIP:
        return None, []
    verb = m.lower() if m.lower() in METHODS else "unresolved"
    if action is None:
        action = f"{connector}.request.{verb}"
    host = (parsed.host or UNKNOWN_LABEL).replace(UNKNOWN_LABEL, "*")
    message = f"{lib} {m} to {host}{parsed.path if parsed.host else ''}"
    fallback = method_operation(m) if verb != "unresolved" else "destructive"
    return None, [hit(RULE_ID, node, connector, action, message, fallback, method=m, host=host,
                      path=parsed.path or None, library=lib)]


def _join(base: Str | None, url: Str | None) -> Str | None:
    if base is None:
        return url
    if url is None:
        return base + Str((None,))
    if "://" in url.glob():
        return url
    b, r = base.known or "", url.prefix()
    if b.endswith("/") and r.startswith("/"):
        base = text(b.rstrip("/"))
    sep = "" if b.endswith("/") or r.startswith("/") else "/"
    return base + text(sep) + url


def _method_arg(call: cst.Call, ctx: Ctx, index: int = 0) -> str | None:
    m = ctx.arg_string(call, index, "method")
    return m.known if m is not None else None


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    parts = qname.split(".")
    lib = parts[0]
    last = parts[-1]
    if lib == "urllib" and qname.startswith("urllib.request."):
        lib = "urllib"
        if call is None:
            return None
        if last == "urlopen":
            target = ctx.arg_value(call, 0, "url")
            if isinstance(target, Obj) and target.kind == "request":
                return request(call, target.get("method"), target.get("url"), ctx, "urllib", None,
                               extra_payload=target.get("data"))
            has_data = ctx.has_arg(call, 1, "data")
            url = target if isinstance(target, Str) else None
            return request(call, "POST" if has_data else "GET", url, ctx, "urllib", call)
        if last == "Request":
            url = ctx.arg_string(call, 0, "url")
            data = ctx.arg(call, 1, "data")
            method = _method_arg(call, ctx, 99) or ("POST" if data is not None else "GET")
            return obj("http", "request", url=url, method=method, data=ctx.value(data)), []
        if last == "build_opener":
            return obj("http", "opener", lib="urllib"), []
        return None
    if call is None:
        if last in ("Client", "AsyncClient", "Session", "ClientSession", "PoolManager"):
            return obj("http", "session", lib=lib), []
        return None
    if lib in ("requests", "httpx") and last in METHODS:
        return request(call, last, ctx.arg_string(call, 0, "url"), ctx, lib, call)
    if lib in ("requests", "httpx", "urllib3", "aiohttp") and last in ("request", "stream"):
        return request(call, _method_arg(call, ctx), ctx.arg_string(call, 1, "url"), ctx, lib, call)
    if last in ("Session", "session", "Client", "AsyncClient", "ClientSession", "PoolManager", "ProxyManager"):
        base = ctx.arg_string(call, None, "base_url")
        return obj("http", "session", lib=lib, base=base), []
    if last in ("HTTPSConnectionPool", "HTTPConnectionPool", "connection_from_url"):
        host = ctx.arg_string(call, 0, "host")
        scheme = "https://" if "HTTPS" in last else "http://"
        if last == "connection_from_url":
            return obj("http", "session", lib=lib, base=host), []
        return obj("http", "session", lib=lib, base=text(scheme) + host if host else None), []
    return None


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    lib = o.get("lib", "http")
    if o.kind == "session":
        base = o.get("base")
        if name in METHODS:
            return request(call, name, ctx.arg_string(call, 0, "url"), ctx, lib, call, base)
        if name in ("request", "stream", "urlopen"):
            return request(call, _method_arg(call, ctx), ctx.arg_string(call, 1, "url"), ctx, lib, call, base)
        return None
    if o.kind == "opener" and name == "open":
        target = ctx.arg_value(call, 0, "fullurl")
        if isinstance(target, Obj) and target.kind == "request":
            return request(call, target.get("method"), target.get("url"), ctx, lib, None,
                           extra_payload=target.get("data"))
        has_data = ctx.has_arg(call, 1, "data")
        return request(call, "POST" if has_data else "GET", target if isinstance(target, Str) else None,
                       ctx, lib, call)
    return None

