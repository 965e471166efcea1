"""Commit and blob pinning for files in a git work tree (gitpython)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


def blob_id(data: bytes) -> str:
    """The git blob id of content (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class GitTree:
    """A work tree: its root, HEAD commit, and the blob ids HEAD holds for paths."""

    root: Path
    commit: str | None
    _repo: object

    def head_blob(self, relpath: str) -> str | None:
        if self.commit is None:
            return None
        try:
            return (self._repo.head.commit.tree / relpath).hexsha  # type: ignore[attr-defined]
        except (KeyError, ValueError):
            return None

    def blob_at(self, commit: str, relpath: str) -> str | None:
        """The blob id of a path at a commit; None when the commit or path is unknown."""
        try:
            return (self._repo.commit(commit).tree / relpath).hexsha  # type: ignore[attr-defined]
        except Exception:  # gitpython raises several unrelated types for unknown revisions
            return None


def open_tree(path: Path) -> GitTree | None:
    """The git work tree containing `path`, or None (no repository, or gitpython not installed)."""
    try:
        import git
    except ImportError:
        return None
    try:
        repo = git.Repo(path if path.is_dir() else path.parent, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    if repo.bare or repo.working_tree_dir is None:
        return None
    try:
        commit = repo.head.commit.hexsha
    except ValueError:
        commit = None
    return GitTree(Path(repo.working_tree_dir).resolve(), commit, repo)
