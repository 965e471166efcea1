"""Witness and signing against a moto server on loopback: Object Lock, object versions, KMS P-256."""

from __future__ import annotations

from pathlib import Path

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError

from arxctl.chain import checkpoints as cps
from arxctl.chain import keys, verify_chain
from arxctl.chain import store as chain
from arxctl.chain.export import export
from arxctl.chain.witness import open_witness
from arxctl.store.sqlite import Store
from tests.chain.conftest import entries


def locked_bucket(name: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
    })


def kms_key() -> str:
    kms = boto3.client("kms")
    return kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]


@pytest.fixture
def s3_book(moto_endpoint: str, tmp_path: Path, request: pytest.FixtureRequest):
    bucket = "arx-" + request.node.name.replace("_", "-")[:40].lower()
    locked_bucket(bucket)
    store = Store(tmp_path / "state")
    arn = kms_key()
    signer = keys.signer(store.conn, store.directory, kms_key_id=arn)
    witness = open_witness(f"s3://{bucket}/arx-witness/")
    for start in (1, 101):
        with store.transaction() as conn:
            chain.append_many(conn, entries(start, 100))
        cps.publish(store, witness, signer)
    keyring = tmp_path / "keys.json"
    keyring.write_bytes(orjson.dumps(keys.export_public(store.conn)))
    path = tmp_path / "audit.ndjson.gz"
    export(store, path, signer)
    yield bucket, witness, path, keyring
    store.close()


def test_kms_signed_checkpoints_in_s3_verify_offline(s3_book) -> None:
    bucket, _, path, keyring = s3_book
    result = verify_chain(witness=f"s3://{bucket}/arx-witness/", export=path, public_keys=keyring)
    assert result.to_dict()["problems"] == []
    assert (result.ok, result.tip_matches_witness, result.signatures_valid, result.checkpoints) == (True, True, True, 2)
    key = orjson.loads(keyring.read_bytes())["keys"][0]
    assert key["algorithm"] == "ecdsa-p256-sha256"
    assert key["key_id"].startswith("ecdsa-p256:")


def test_object_lock_refuses_deleting_a_checkpoint_version(s3_book) -> None:
    bucket, _, _, _ = s3_book
    s3 = boto3.client("s3")
    versions = s3.list_object_versions(Bucket=bucket, Prefix="arx-witness/checkpoints/")["Versions"]
    assert len(versions) == 2
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=versions[0]["Key"], VersionId=versions[0]["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_publishing_never_overwrites_and_verify_catches_new_versions(s3_book) -> None:
    bucket, witness, path, keyring = s3_book
    s3 = boto3.client("s3")
    key = s3.list_objects_v2(Bucket=bucket, Prefix="arx-witness/checkpoints/")["Contents"][0]["Key"]
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert witness.put(key.removeprefix("arx-witness/"), original) is False
    with pytest.raises(Exception, match="already exists with other content"):
        witness.put(key.removeprefix("arx-witness/"), original + b" ")
    s3.put_object(Bucket=bucket, Key=key, Body=original.replace(b'"n":1', b'"n":1 '))
    result = verify_chain(witness=f"s3://{bucket}/arx-witness/", export=path, public_keys=keyring)
    assert [(p.seq, p.kind) for p in result.problems] == [(None, "witness_overwritten")]
    assert result.problems[0].detail == f"{key.removeprefix('arx-witness/')}: 2 versions under one key"
    s3.delete_object(Bucket=bucket, Key=key)
    result = verify_chain(witness=f"s3://{bucket}/arx-witness/", export=path, public_keys=keyring)
    assert [(p.seq, p.kind) for p in result.problems] == [(None, "witness_deleted"), (None, "witness_overwritten")]
