"""GitHub through PyGithub: the client, repositories, pull requests, issues, branches and refs."""

from __future__ import annotations

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Obj, known_text, obj

RULE_ID = "ARXA104"
DESCRIPTION = "GitHub call through PyGithub: object type and method map to github.<resource>.<verb>"
FAMILIES = ("github",)
MODULES = ("github",)
ENTRY = ("github.Github", "github.MainClass.Github", "github.PullRequest", "github.Repository", "github.Issue",
         "github.Branch")
_TYPES = {"Github": "client", "PullRequest": "pull", "Repository": "repo", "Issue": "issue", "Branch": "branch"}

# (object kind, method) -> (action or None, kind of the returned object or None)
_METHODS: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("client", "get_repo"): ("repos.get", "repo"),
    ("client", "get_user"): (None, "user"),
    ("client", "get_organization"): (None, "org"),
    ("client", "search_repositories"): ("repos.list", "repos"),
    ("client", "search_issues"): ("issues.read", "issues"),
    ("user", "get_repos"): ("repos.list", "repos"),
    ("user", "create_repo"): ("repos.create", "repo"),
    ("org", "get_repos"): ("repos.list", "repos"),
    ("org", "get_repo"): ("repos.get", "repo"),
    ("org", "create_repo"): ("repos.create", "repo"),
    ("repo", "get_pull"): ("pulls.read", "pull"),
    ("repo", "get_pulls"): ("pulls.read", "pulls"),
    ("repo", "create_pull"): ("pulls.create", "pull"),
    ("repo", "get_issue"): ("issues.read", "issue"),
    ("repo", "get_issues"): ("issues.read", "issues"),
    ("repo", "create_issue"): ("issues.create", "issue"),
    ("repo", "get_contents"): ("contents.read", None),
    ("repo", "get_readme"): ("contents.read", None),
    ("repo", "create_file"): ("contents.write", None),
    ("repo", "update_file"): ("contents.write", None),
    ("repo", "delete_file"): ("contents.delete", None),
    ("repo", "get_branch"): ("branches.read", "branch"),
    ("repo", "get_branches"): ("branches.read", "branches"),
    ("repo", "get_git_ref"): ("branches.read", "ref"),
    ("repo", "add_to_collaborators"): ("collaborators.add", None),
    ("repo", "remove_from_collaborators"): ("collaborators.remove", None),
    ("repo", "create_git_release"): ("releases.create", None),
    ("repo", "get_releases"): ("releases.read", None),
    ("repo", "get_latest_release"): ("releases.read", None),
    ("repo", "create_secret"): ("secrets.write", None),
    ("repo", "get_workflow"): ("actions.read", "workflow"),
    ("repo", "get_workflow_runs"): ("actions.read", None),
    ("repo", "edit"): ("repos.update", None),
    ("repo", "delete"): ("repos.delete", None),
    ("workflow", "create_dispatch"): ("actions.dispatch", None),
    ("pull", "create_review"): ("pulls.review", None),
    ("pull", "create_review_comment"): ("pulls.review", None),
    ("pull", "create_comment"): ("pulls.review", None),
    ("pull", "create_issue_comment"): ("issues.comment", None),
    ("pull", "merge"): ("pulls.merge", None),
    ("pull", "edit"): ("pulls.update", None),
    ("pull", "get_files"): ("pulls.read", None),
    ("pull", "get_commits"): ("pulls.read", None),
    ("pull", "get_reviews"): ("pulls.read", None),
    ("pull", "get_comments"): ("pulls.read", None),
    ("pull", "get_review_comments"): ("pulls.read", None),
    ("pull", "is_merged"): ("pulls.read", None),
    ("issue", "create_comment"): ("issues.comment", None),
    ("issue", "get_comments"): ("issues.read", None),
    ("issue", "add_to_labels"): ("issues.update", None),
    ("branch", "edit_protection"): ("branches.protect", None),
    ("branch", "remove_protection"): ("branches.unprotect", None),
    ("branch", "get_protection"): ("branches.read", None),
    ("ref", "delete"): ("branches.delete", None),
    ("ref", "edit"): ("contents.write", None),
}
_ITEMS = {"repos": "repo", "pulls": "pull", "issues": "issue", "branches": "branch"}


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    kind = _TYPES.get(qname.rsplit(".", 1)[-1])
    if kind is None or (kind != "client" and call is not None):
        return None
    return obj("github", kind), []


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    if o.kind == "issue" and name == "edit":
        state = known_text(ctx.arg_value(call, None, "state"))
        action = "issues.close" if state == "closed" else "issues.update"
        return None, [hit(RULE_ID, call, "github", f"github.{action}", f"PyGithub Issue.edit ({action})")]
    entry = _METHODS.get((o.kind, name))
    if entry is None:
        return None
    action, returns = entry
    lazy = ctx.arg(call, None, "lazy")
    if isinstance(lazy, cst.Name) and lazy.value == "True":
        action = None
    result = obj("github", returns) if returns else None
    if action is None:
        return result, []
    return result, [hit(RULE_ID, call, "github", f"github.{action}", f"PyGithub {o.kind}.{name} ({action})")]


def iterate(o: Obj) -> Obj | None:
    item = _ITEMS.get(o.kind)
    return obj("github", item) if item else None


def subscript(o: Obj) -> Obj | None:
    return iterate(o)
