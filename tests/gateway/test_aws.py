"""AWS through boto3 against a moto server: the gateway holds the AWS credential, the agent only a handle."""

from __future__ import annotations

import base64
from pathlib import Path

import boto3
import pytest

from arxctl.sdk import Connector
from tests.gateway import upstreams
from tests.gateway.helpers import GatewayProcess, World, build_world, replica_records


@pytest.fixture
def aws_world(state_dir: Path, servicenow: upstreams.Upstream, slack: upstreams.Upstream,
              moto_endpoint: str) -> World:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="triage-reports")
    return build_world(state_dir, servicenow=servicenow.url, slack=slack.url, aws=moto_endpoint)


def test_s3_calls_go_through_boto3_with_the_platform_credential(
        aws_world: World, gateways: list[GatewayProcess], moto_endpoint: str) -> None:
    gateway = GatewayProcess(aws_world.state, "gw-aws", ["--config", str(aws_world.config)]).start()
    gateways.append(gateway)
    aws = Connector("aws", gateway=gateway.url, handle=aws_world.tokens["aws"], session="s-aws")
    put = aws.call("s3.put_object", {"Bucket": "triage-reports", "Key": "2026/04/14.txt", "Body": "3 closed"})
    assert put.status == 200
    assert put.json()["ETag"] == '"' + __import__("hashlib").md5(b"3 closed").hexdigest() + '"'
    got = aws.call("s3.get_object", {"Bucket": "triage-reports", "Key": "2026/04/14.txt"})
    assert (got.status, base64.b64decode(got.json()["Body"]["base64"]), got.json()["ContentLength"]) == (
        200, b"3 closed", 8)
    missing = aws.call("s3.get_object", {"Bucket": "triage-reports", "Key": "nope.txt"})
    assert (missing.status, missing.json()) == (404, {"Error": {"Code": "NoSuchKey",
                                                                "Message": "The specified key does not exist."}})
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    assert s3.get_object(Bucket="triage-reports", Key="2026/04/14.txt")["Body"].read() == b"3 closed"
    assert [(r["body"]["action"], r["body"]["gateway"]["downstream"]) for r in
            replica_records(aws_world.state, "gw-aws")] == [
        ("aws.s3.put_object", {"error": None, "ok": True, "requests": 1, "status": 200}),
        ("aws.s3.get_object", {"error": None, "ok": True, "requests": 1, "status": 200}),
        ("aws.s3.get_object", {"error": "NoSuchKey", "ok": False, "requests": 1, "status": 404}),
    ]
