"""Salesforce through simple_salesforce: SOQL/SOSL, sObject records, Bulk API, Tooling and Metadata APIs."""

from __future__ import annotations

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Obj, known_text, obj

RULE_ID = "ARXA106"
DESCRIPTION = "Salesforce call through simple_salesforce: method maps to salesforce.<resource>.<verb>"
FAMILIES = ("salesforce",)
MODULES = ("simple_salesforce",)
ENTRY = ("simple_salesforce.Salesforce", "simple_salesforce.api.Salesforce")

_CLIENT = {
    "query": "query.soql", "query_all": "query.soql", "query_more": "query.soql", "query_all_iter": "query.soql",
    "search": "search.sosl", "quick_search": "search.sosl", "describe": "sobject.describe",
}
_SOBJECT = {
    "create": "record.create", "get": "record.read", "get_by_custom_id": "record.read",
    "update": "record.update", "upsert": "record.upsert", "delete": "record.delete",
    "describe": "sobject.describe", "metadata": "sobject.describe", "deleted": "record.read", "updated": "record.read",
}
_BULK = {
    "insert": "bulk.insert", "update": "bulk.update", "upsert": "bulk.upsert", "delete": "bulk.delete",
    "hard_delete": "bulk.delete", "query": "bulk.export", "query_all": "bulk.export",
}
_NOT_SOBJECTS = frozenset({"bulk", "bulk2", "mdapi", "session_id", "base_url", "headers", "session", "sf_instance"})


def _sf(node: cst.CSTNode, action: str, what: str) -> Outcome:
    return None, [hit(RULE_ID, node, "salesforce", f"salesforce.{action}", f"simple_salesforce {what} ({action})")]


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    return obj("salesforce", "client"), []


def attribute(o: Obj, name: str, ctx: Ctx) -> Obj | None:
    if o.kind == "client":
        if name in ("bulk", "bulk2"):
            return obj("salesforce", "bulk")
        if name == "mdapi":
            return obj("salesforce", "mdapi")
        if name[:1].isupper() and name not in _NOT_SOBJECTS:
            return obj("salesforce", "sobject", name=name)
    if o.kind == "bulk" and name[:1].isupper():
        return obj("salesforce", "bulk_sobject", name=name)
    return None


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    if o.kind == "client":
        if name in _CLIENT:
            return _sf(call, _CLIENT[name], f"Salesforce.{name}")
        if name == "toolingexecute":
            path = known_text(ctx.arg_value(call, 0, "action")) or ""
            if "executeAnonymous" in path:
                return _sf(call, "apex.execute_anonymous", "Tooling executeAnonymous")
            return _sf(call, "metadata.read", "Tooling API call")
        if name == "restful":
            verb = (known_text(ctx.arg_value(call, 1, "method")) or "GET").upper()
            return _sf(call, "record.read" if verb == "GET" else "record.update", f"REST {verb}")
        return None
    if o.kind == "sobject" and name in _SOBJECT:
        return _sf(call, _SOBJECT[name], f"{o.get('name')}.{name}")
    if o.kind == "bulk_sobject" and name in _BULK:
        return _sf(call, _BULK[name], f"bulk.{o.get('name')}.{name}")
    if o.kind == "mdapi" and name == "deploy":
        return _sf(call, "metadata.deploy", "mdapi.deploy")
    return None
