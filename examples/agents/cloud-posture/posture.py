"""Pure checks on S3 ACL grants and bucket policies (no AWS calls)."""

from __future__ import annotations

PUBLIC_GRANTEES = frozenset({
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
})


def is_public_policy(policy: dict) -> bool:
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal")
        if statement.get("Effect") == "Allow" and (principal == "*" or principal == {"AWS": "*"}):
            return "Condition" not in statement
    return False
