"""The agent registry: immutable versions, lifecycle, lineage, grants, approvals and drift."""
