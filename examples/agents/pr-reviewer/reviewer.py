"""Review pull requests on platform repositories with Claude and post the review; never merges."""

from __future__ import annotations

import os

import anthropic
from github import Auth, Github
from github.PullRequest import PullRequest
from github.Repository import Repository

MODEL = "claude-sonnet-4-5"
REPOS = ("bank/platform-infra", "bank/platform-charts")
MAX_PATCH_CHARS = 60_000

PROMPT = """You review pull requests for a bank's platform team. Point out security problems,
missing tests and risky infrastructure changes. Answer with a short summary, then one bullet per
issue with the file and line."""


class Reviewer:
    """Reads a pull request, asks Claude for a review, posts it as a COMMENT review."""

    def __init__(self) -> None:
        self.github = Github(auth=Auth.Token(os.environ["GITHUB_TOKEN"]))
        self.claude = anthropic.Anthropic()

    def diff_of(self, pull: PullRequest) -> str:
        chunks = []
        for f in pull.get_files():
            chunks.append(f"--- {f.filename}\n{f.patch or ''}")
        return "\n".join(chunks)[:MAX_PATCH_CHARS]

    def guidelines(self, repo: Repository) -> str:
        try:
            return repo.get_contents("REVIEWING.md").decoded_content.decode()
        except Exception:
            return ""

    def review(self, repo_name: str, number: int) -> None:
        repo = self.github.get_repo(repo_name, lazy=True)
        pull = repo.get_pull(number)
        message = self.claude.messages.create(
            model=MODEL,
            max_tokens=2000,
            system=PROMPT + "\n\n" + self.guidelines(repo),
            messages=[{"role": "user", "content": self.diff_of(pull)}],
        )
        body = "".join(block.text for block in message.content if block.type == "text")
        pull.create_review(body=body, event="COMMENT")
        if "security" in body.lower():
            pull.create_issue_comment("Flagged for a security review by pr-reviewer.")


def main() -> None:
    reviewer = Reviewer()
    for name in REPOS:
        for pull in reviewer.github.get_repo(name, lazy=True).get_pulls(state="open"):
            if not any(label.name == "reviewed-by-bot" for label in pull.labels):
                reviewer.review(name, pull.number)


if __name__ == "__main__":
    main()
