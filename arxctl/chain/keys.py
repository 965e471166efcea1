"""Checkpoint signing keys: Ed25519 key files, AWS KMS P-256 keys, the registry and offline keyrings."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from arxctl.clock import now_ts, parse_ts
from arxctl.errors import InputError, NotFoundError, StateError

ED25519 = "ed25519"
ECDSA_P256 = "ecdsa-p256-sha256"
KEYS_DIR = "keys"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A registered public key and the window in which its signatures count."""

    key_id: str
    algorithm: str
    public_pem: str
    valid_from: str
    valid_until: str | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id, "algorithm": self.algorithm, "public_key": self.public_pem,
            "valid_from": self.valid_from, "valid_until": self.valid_until,
        }

    def valid_at(self, ts: str) -> bool:
        moment = parse_ts(ts)
        if moment < parse_ts(self.valid_from):
            return False
        return self.valid_until is None or moment < parse_ts(self.valid_until)

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        key = serialization.load_pem_public_key(self.public_pem.encode("ascii"))
        try:
            if self.algorithm == ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
                return True
            if self.algorithm == ECDSA_P256 and isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
                return True
        except (InvalidSignature, ValueError):
            return False
        return False


class Signer(Protocol):
    """Something that signs checkpoint bytes under a registered key id."""

    key_id: str

    def sign(self, message: bytes) -> bytes: ...


def _derive_key_id(algorithm: str, public_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "ecdsa-p256:" + hashlib.sha256(der).hexdigest()[:16]


def _algorithm_of(public_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return ECDSA_P256
    raise InputError("only Ed25519 and ECDSA P-256 public keys sign checkpoints")


class FileSigner:
    """An Ed25519 private key read from a PEM file under the state directory."""

    def __init__(self, key_id: str, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        self.key_id = key_id
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read signing key {key_id} from {path}: {type(exc).__name__}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise StateError(f"signing key {key_id} at {path} is not an Ed25519 key")
        self._key = key

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class KmsSigner:
    """An AWS KMS ECC_NIST_P256 key signing with ECDSA_SHA_256 (endpoint from AWS_ENDPOINT_URL)."""

    def __init__(self, kms_key_id: str, key_id: str, client: Any = None) -> None:
        self.kms_key_id = kms_key_id
        self.key_id = key_id
        self._client = client if client is not None else kms_client()

    def sign(self, message: bytes) -> bytes:
        """Sign up to 4096 bytes (KMS's RAW limit; checkpoints and export trailers are far smaller)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if len(message) > 4096:
            raise StateError(f"KMS signs at most 4096 bytes; this message has {len(message)}")

        try:
            response = self._client.sign(
                KeyId=self.kms_key_id, Message=message, MessageType="RAW",
                SigningAlgorithm="ECDSA_SHA_256",
            )
        except (BotoCoreError, ClientError) as exc:
            raise StateError(f"KMS sign with {self.kms_key_id} failed: {exc}") from None
        return response["Signature"]


def kms_client() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise InputError("KMS signing needs boto3: pip install 'arxctl[aws]'") from exc
    return boto3.client("kms")


def encode_sig(signature: bytes) -> str:
    return base64.b64encode(signature).decode("ascii")


def decode_sig(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _row(row: tuple[Any, ...]) -> PublicKey:
    return PublicKey(row[0], row[1], row[2], row[3], row[4], row[5])


_COLUMNS = "key_id, algorithm, public_pem, valid_from, valid_until, source"


def list_keys(conn: sqlite3.Connection) -> list[PublicKey]:
    return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM chain_keys ORDER BY valid_from, key_id")]


def get_key(conn: sqlite3.Connection, key_id: str) -> PublicKey:
    row = conn.execute(f"SELECT {_COLUMNS} FROM chain_keys WHERE key_id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no signing key {key_id!r} (see `arxctl keys list`)")
    return _row(row)


def _register(conn: sqlite3.Connection, key: PublicKey) -> None:
    if conn.execute("SELECT 1 FROM chain_keys WHERE key_id = ?", (key.key_id,)).fetchone():
        raise InputError(f"key id {key.key_id!r} is already registered")
    conn.execute(
        f"INSERT INTO chain_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?)",
        (key.key_id, key.algorithm, key.public_pem, key.valid_from, key.valid_until, key.source),
    )


def _close_active(conn: sqlite3.Connection, ts: str, keep: str) -> list[str]:
    closed = [
        r[0] for r in conn.execute("SELECT key_id FROM chain_keys WHERE valid_until IS NULL AND key_id != ?", (keep,))
    ]
    conn.execute("UPDATE chain_keys SET valid_until = ? WHERE valid_until IS NULL AND key_id != ?", (ts, keep))
    return closed


def generate(conn: sqlite3.Connection, state_dir: Path, key_id: str | None = None, ts: str | None = None) -> PublicKey:
    """Create an Ed25519 key file (0600) under `<state>/keys/` and register its public key; call in a transaction."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    chosen = key_id or _derive_key_id(ED25519, public_pem)
    if not chosen or len(chosen) > 128 or any(c.isspace() for c in chosen):
        raise InputError(f"invalid key id {chosen!r}: 1-128 characters, no spaces")
    directory = state_dir / KEYS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / (_SAFE.sub("_", chosen) + ".pem")
    relative = f"file:{KEYS_DIR}/{path.name}"
    key = PublicKey(chosen, ED25519, public_pem, ts or now_ts(), None, relative)
    _register(conn, key)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"a key file already exists at {path}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def register_kms(conn: sqlite3.Connection, kms_key_id: str, client: Any = None, ts: str | None = None) -> PublicKey:
    """Register (once) the public half of a KMS ECC_NIST_P256 key; returns the registry entry."""
    existing = conn.execute(
        f"SELECT {_COLUMNS} FROM chain_keys WHERE source = ?", (f"kms:{kms_key_id}",)
    ).fetchone()
    if existing is not None:
        return _row(existing)
    from botocore.exceptions import BotoCoreError, ClientError
    from cryptography.hazmat.primitives import serialization

    client = client if client is not None else kms_client()
    try:
        response = client.get_public_key(KeyId=kms_key_id)
    except (BotoCoreError, ClientError) as exc:
        raise StateError(f"KMS get-public-key for {kms_key_id} failed: {exc}") from None
    spec = response.get("KeySpec") or response.get("CustomerMasterKeySpec")
    if spec != "ECC_NIST_P256" or "ECDSA_SHA_256" not in response.get("SigningAlgorithms", []):
        raise InputError(f"KMS key {kms_key_id} must be ECC_NIST_P256 with ECDSA_SHA_256")
    public_pem = serialization.load_der_public_key(response["PublicKey"]).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    key = PublicKey(_derive_key_id(ECDSA_P256, public_pem), ECDSA_P256, public_pem, ts or now_ts(), None,
                    f"kms:{kms_key_id}")
    _register(conn, key)
    return key


def rotate(
    conn: sqlite3.Connection, state_dir: Path, key_id: str | None = None, kms_key_id: str | None = None,
    client: Any = None,
) -> tuple[PublicKey, list[str]]:
    """Start a new key (a file key, or a KMS key) and end the validity of every other active key."""
    ts = now_ts()
    if kms_key_id is not None:
        key = register_kms(conn, kms_key_id, client=client, ts=ts)
    else:
        key = generate(conn, state_dir, key_id=key_id, ts=ts)
    return key, _close_active(conn, ts, keep=key.key_id)


def signer(
    conn: sqlite3.Connection, state_dir: Path, key_id: str | None = None, kms_key_id: str | None = None,
    client: Any = None,
) -> Signer:
    """The signer for a key id, a KMS key, or else the newest active key file; fails closed when none fits."""
    if kms_key_id is not None:
        key = register_kms(conn, kms_key_id, client=client)
        if not key.valid_at(now_ts()):
            raise StateError(f"KMS key {kms_key_id} ({key.key_id}) is outside its validity window")
        return KmsSigner(kms_key_id, key.key_id, client=client)
    if key_id is not None:
        key = get_key(conn, key_id)
    else:
        active = [k for k in list_keys(conn) if k.valid_at(now_ts())]
        if not active:
            raise StateError("no active signing key: run `arxctl keys generate` or pass --kms-key-id")
        key = active[-1]
    if not key.valid_at(now_ts()):
        raise StateError(f"signing key {key.key_id} is outside its validity window")
    if key.source.startswith("kms:"):
        return KmsSigner(key.source[4:], key.key_id, client=client)
    if not key.source.startswith("file:"):
        raise StateError(f"signing key {key.key_id} has no private key here")
    return FileSigner(key.key_id, state_dir / key.source[5:])


def export_public(conn: sqlite3.Connection) -> dict[str, Any]:
    """The keyring auditors verify with: key ids, PEM public keys and validity windows."""
    return {"keys": [k.to_dict() for k in list_keys(conn)]}


@dataclass(slots=True)
class Keyring:
    """Public keys by id, used offline to check checkpoint and export signatures."""

    keys: dict[str, PublicKey]
    source: str

    def check(self, key_id: str, ts: str, message: bytes, sig: str) -> tuple[str, str] | None:
        """None when the signature is good; else (problem kind, detail)."""
        key = self.keys.get(key_id)
        if key is None:
            return "unknown_key", f"signed by key {key_id!r}, which is not in the keyring ({self.source})"
        try:
            signature = decode_sig(sig)
        except (ValueError, TypeError):
            return "bad_signature", "the signature is not base64"
        if not key.verify(message, signature):
            return "bad_signature", f"signature by {key_id} does not verify"
        try:
            inside = key.valid_at(ts)
        except ValueError:
            return "bad_signature", f"unreadable timestamp {ts!r}"
        if not inside:
            until = key.valid_until or "open"
            return "key_not_valid", f"{key_id} signed at {ts}, outside its window {key.valid_from}..{until}"
        return None


def keyring_from_dicts(entries: Iterable[dict[str, Any]], source: str) -> Keyring:
    keys: dict[str, PublicKey] = {}
    for entry in entries:
        try:
            key = PublicKey(
                str(entry["key_id"]), str(entry["algorithm"]), str(entry["public_key"]),
                str(entry.get("valid_from") or "0001-01-01T00:00:00Z"), entry.get("valid_until"),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"{source}: a key entry lacks {exc}") from None
        keys[key.key_id] = key
    return Keyring(keys, source)


def load_keyring(path: Path) -> Keyring:
    """A keyring from `arxctl keys export-public` JSON, or from one PEM public key (no validity window)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read public keys: {exc.strerror}") from None
    if data.lstrip().startswith(b"-----BEGIN"):
        pem = data.decode("ascii", errors="replace")
        try:
            algorithm = _algorithm_of(pem)
            key_id = _derive_key_id(algorithm, pem)
        except ValueError as exc:
            raise InputError(f"{path}:1:1: not a PEM public key: {exc}") from None
        return Keyring({key_id: PublicKey(key_id, algorithm, pem, "0001-01-01T00:00:00Z")}, str(path))
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}:1:{exc.pos + 1}: not a PEM key nor a keys JSON file: {exc.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise InputError(f"{path}:1:1: expected {{\"keys\": [...]}} as written by `arxctl keys export-public`")
    return keyring_from_dicts(doc["keys"], str(path))


def keyring_from_store(conn: sqlite3.Connection) -> Keyring:
    return Keyring({k.key_id: k for k in list_keys(conn)}, "local key registry")
