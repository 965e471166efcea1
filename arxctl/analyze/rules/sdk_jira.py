"""Jira through the `jira` package (pycontribs): the JIRA client and Issue objects."""

from __future__ import annotations

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Obj, obj

RULE_ID = "ARXA105"
DESCRIPTION = "Jira call through the jira package: method maps to jira.<resource>.<verb>"
FAMILIES = ("jira",)
MODULES = ("jira",)
ENTRY = ("jira.JIRA", "jira.client.JIRA")

_CLIENT: dict[str, tuple[str, str | None]] = {
    "issue": ("issue.read", "issue"),
    "create_issue": ("issue.create", "issue"),
    "create_issues": ("issue.create", None),
    "add_comment": ("issue.comment", None),
    "comments": ("issue.read", None),
    "transition_issue": ("issue.transition", None),
    "transitions": ("issue.read", None),
    "assign_issue": ("issue.assign", None),
    "search_issues": ("search.query", "issues"),
    "enhanced_search_issues": ("search.query", "issues"),
    "add_attachment": ("attachment.add", None),
    "delete_attachment": ("attachment.delete", None),
    "create_issue_link": ("issue.link", None),
    "add_worklog": ("worklog.add", None),
    "project": ("project.read", None),
    "projects": ("project.read", None),
    "create_project": ("project.create", None),
    "delete_project": ("project.delete", None),
    "user": ("user.read", None),
    "search_users": ("user.read", None),
    "myself": ("user.read", None),
    "sprint": ("sprint.read", None),
    "sprints": ("sprint.read", None),
    "update_sprint": ("sprint.update", None),
    "add_issues_to_sprint": ("sprint.update", None),
}
_ISSUE = {"update": "issue.update", "delete": "issue.delete", "add_field_value": "issue.update"}


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    return obj("jira", "client"), []


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    if o.kind == "client" and name in _CLIENT:
        action, returns = _CLIENT[name]
        return (obj("jira", returns) if returns else None), [
            hit(RULE_ID, call, "jira", f"jira.{action}", f"jira JIRA.{name} ({action})")
        ]
    if o.kind == "issue" and name in _ISSUE:
        action = _ISSUE[name]
        return None, [hit(RULE_ID, call, "jira", f"jira.{action}", f"jira Issue.{name} ({action})")]
    return None


def iterate(o: Obj) -> Obj | None:
    return obj("jira", "issue") if o.kind == "issues" else None


def subscript(o: Obj) -> Obj | None:
    return iterate(o)
