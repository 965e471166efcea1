"""Witnesses: write-once stores of signed checkpoints (a directory, or S3 with Object Lock)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from arxctl.errors import InputError, StateError


@dataclass(frozen=True, slots=True)
class WitnessObject:
    """One stored version of a witness object; a delete marker has no data."""

    name: str
    data: bytes | None
    version: str | None = None
    latest: bool = True
    versions: int = 1
    delete_markers: int = 0


class Witness(Protocol):
    """Where checkpoints are published: every object is created once and never overwritten."""

    uri: str

    def put(self, name: str, data: bytes) -> bool:
        """Create `name`; False when it already holds exactly `data`; StateError when it holds anything else."""
        ...

    def objects(self, prefix: str) -> list[WitnessObject]:
        """Every stored version under `prefix`, including overwritten ones and delete markers."""
        ...


class FileWitness:
    """A directory witness: objects are files created with a hard link, which never replaces a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.uri = directory.resolve().as_uri()

    def put(self, name: str, data: bytes) -> bool:
        target = self.directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".tmp-{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, target)
            except FileExistsError:
                if target.read_bytes() == data:
                    return False
                raise StateError(f"witness object {target} already exists with other content") from None
        finally:
            temp.unlink(missing_ok=True)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def objects(self, prefix: str) -> list[WitnessObject]:
        base = self.directory / prefix
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                out.append(WitnessObject(path.relative_to(self.directory).as_posix(), path.read_bytes()))
        return out


class S3Witness:
    """An S3 witness; the bucket should have Object Lock in compliance mode. Publishing needs only PutObject."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}"
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError as exc:
                raise InputError("an S3 witness needs boto3: pip install 'arxctl[aws]'") from exc
            self._client = boto3.client("s3")
        return self._client

    def put(self, name: str, data: bytes) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix + name
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", ContentType="application/json",
                ChecksumAlgorithm="SHA256",
            )
            return True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise StateError(f"witness put s3://{self.bucket}/{key} failed: {code or exc}") from None
        except BotoCoreError as exc:
            raise StateError(f"witness put s3://{self.bucket}/{key} failed: {exc}") from None
        try:
            existing = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError:
            return False
        if existing != data:
            raise StateError(f"witness object s3://{self.bucket}/{key} already exists with other content")
        return False

    def objects(self, prefix: str) -> list[WitnessObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self.prefix + prefix
        versions: dict[str, list[dict[str, Any]]] = {}
        markers: dict[str, int] = {}
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=full):
                for v in page.get("Versions", []):
                    versions.setdefault(v["Key"], []).append(v)
                for m in page.get("DeleteMarkers", []):
                    markers[m["Key"]] = markers.get(m["Key"], 0) + 1
            out = []
            for key in sorted(set(versions) | set(markers)):
                stored = versions.get(key, [])
                name = key[len(self.prefix):]
                if not stored:
                    out.append(WitnessObject(name, None, None, True, 0, markers.get(key, 0)))
                for v in stored:
                    body = self.client.get_object(Bucket=self.bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
                    out.append(WitnessObject(name, body, v["VersionId"], bool(v.get("IsLatest")), len(stored),
                                             markers.get(key, 0)))
            return out
        except (BotoCoreError, ClientError) as exc:
            raise StateError(f"cannot read witness {self.uri}: {exc}") from None


def open_witness(uri: str, client: Any = None) -> Witness:
    """A witness from `file:///dir` (or a plain path) or `s3://bucket/prefix`."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InputError(f"witness {uri!r}: s3:// needs a bucket name")
        return S3Witness(parsed.netloc, parsed.path, client=client)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"witness {uri!r}: use file:///absolute/path")
        return FileWitness(Path(unquote(parsed.path)))
    if parsed.scheme == "":
        return FileWitness(Path(uri))
    raise InputError(f"witness {uri!r}: use file:///dir or s3://bucket/prefix")
