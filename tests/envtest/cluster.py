"""A real etcd + kube-apiserver on loopback for end-to-end tests (the envtest convention, from Go modules)."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BUILD_DEADLINE_S = 3600.0
ETCD_DEADLINE_S = 30.0
READY_DEADLINE_S = 90.0
STOP_DEADLINE_S = 15.0
POLL_INTERVAL_S = 0.1
ADMIN_USER = "arx-admin"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"


class ToolchainMissing(RuntimeError):
    """Neither KUBEBUILDER_ASSETS with kube-apiserver and etcd, nor Go to build them, is available."""


class ClusterFailed(RuntimeError):
    """etcd or kube-apiserver did not start (or stop) within its deadline; carries the log tail."""


def in_ci() -> bool:
    """True when running in CI, where a missing toolchain is a failure rather than a skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _has_binaries(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in ("kube-apiserver", "etcd"))


def locate_assets(script: Path = BUILD_SCRIPT, deadline_s: float = BUILD_DEADLINE_S) -> Path:
    """The folder holding kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else the cached build from build.sh."""
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env and _has_binaries(Path(env)):
        return Path(env)
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=deadline_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClusterFailed(f"{script} did not finish within {deadline_s:g} s") from exc
    if done.returncode == 2:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "Go is not installed"
        raise ToolchainMissing(f"{reason} (set KUBEBUILDER_ASSETS, or install Go and run {script})")
    if done.returncode != 0:
        raise ClusterFailed(f"{script} failed (exit {done.returncode}):\n{_tail(done.stderr)}")
    lines = done.stdout.strip().splitlines()
    folder = Path(lines[-1]) if lines else None
    if folder is None or not _has_binaries(folder):
        raise ClusterFailed(f"{script} reported {folder}, which lacks kube-apiserver or etcd")
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


@dataclass(frozen=True, slots=True)
class _Authority:
    """A throwaway certificate authority for the serving and client certificates of one cluster."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str) -> _Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, common_name: str, *, organizations: Sequence[str] = (), server: bool = False,
              ) -> tuple[bytes, bytes]:
        """A certificate and key (PEM) for a server on loopback or for a client user and its groups."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes)).issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]), critical=False).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _kubeconfig(server: str, ca_pem: bytes, user: str, cert_pem: bytes, key_pem: bytes) -> str:
    """A kubeconfig (JSON is valid YAML) with everything embedded."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": f"{user}@envtest", "context": {"cluster": "envtest", "user": user,
                                                            "namespace": "default"}}],
        "current-context": f"{user}@envtest",
    }, indent=2)


def _die_with_parent() -> None:
    """In the child before exec: receive SIGKILL when the test process dies, so no server outlives it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(slots=True)
class _Process:
    """One server process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        try:
            return _tail(self.log.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise ClusterFailed(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Terminate, then kill once the deadline has passed."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=deadline_s)


def _spawn(name: str, argv: list[str], log: Path) -> _Process:
    with log.open("wb") as handle:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                 preexec_fn=_die_with_parent)
    return _Process(name, popen, log)


def _wait(what: str, probe: Callable[[], bool], processes: Sequence[_Process], deadline_s: float) -> None:
    """Poll `probe()` until it returns True; fail when a process exits or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last = ""
    while True:
        for process in processes:
            process.check_alive()
        try:
            if probe():
                return
        except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            logs = "\n".join(f"--- {p.name} log ---\n{p.log_tail()}" for p in processes)
            reason = last or "probe returned false"
            raise ClusterFailed(f"{what} not ready within {deadline_s:g} s ({reason})\n{logs}")
        time.sleep(POLL_INTERVAL_S)


def _start_listening(name: str, argv: Callable[[], tuple[list[str], str]], ready: Callable[[str], bool],
                     log: Path, processes: list[_Process], deadline_s: float, attempts: int = 3) -> str:
    """Start a server on fresh free ports and wait until `ready(url)`; retry when a port was taken meanwhile."""
    attempt = 1
    while True:
        command, url = argv()
        process = _spawn(name, command, log)
        processes.append(process)
        try:
            _wait(name, lambda url=url: ready(url), processes, deadline_s)
            return url
        except ClusterFailed:
            process.stop()
            processes.remove(process)
            if attempt >= attempts or "address already in use" not in process.log_tail():
                raise
            attempt += 1


@dataclass(slots=True)
class Cluster:
    """A running etcd + kube-apiserver: where it listens and how to talk to it as admin or as anyone."""

    server: str
    kubeconfig: Path
    ca_file: Path
    assets: Path
    workdir: Path
    _authority: _Authority
    _processes: list[_Process]

    @property
    def kubectl(self) -> Path | None:
        """kubectl from the assets folder, else from PATH, else None."""
        bundled = self.assets / "kubectl"
        if os.access(bundled, os.X_OK):
            return bundled
        found = shutil.which("kubectl")
        return Path(found) if found else None

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for an arbitrary user and groups (client certificate), to test RBAC as that user."""
        cert, key = self._authority.issue(user, organizations=groups)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        path = self.workdir / f"kubeconfig-{safe}"
        _write(path, _kubeconfig(self.server, self._authority.pem, user, cert, key).encode())
        return path

    def get_json(self, path: str, accept: str = "application/json", timeout_s: float = 30.0) -> Any:
        """GET an API path as the admin and decode the JSON answer (e.g. the Table form of a list)."""
        pki = self.workdir / "pki"
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        request = urllib.request.Request(f"{self.server}{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            return json.loads(response.read())

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name} log ---\n{p.log_tail()}" for p in self._processes)


@contextlib.contextmanager
def start_cluster(assets: Path, workdir: Path) -> Iterator[Cluster]:
    """Start etcd then kube-apiserver (RBAC, admin in system:masters), wait for /readyz, stop both after."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    pki.mkdir(mode=0o700, exist_ok=True)
    authority = _Authority.create("arxctl-envtest-ca")
    ca_file = _write(pki / "ca.crt", authority.pem, 0o644)
    serving_cert, serving_key = authority.issue("kube-apiserver", server=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_public = sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    files = {
        "serving.crt": serving_cert, "serving.key": serving_key,
        "sa.key": _pem_key(sa_key), "sa.pub": sa_public,
    }
    paths = {name: _write(pki / name, data) for name, data in files.items()}
    admin_cert, admin_key = authority.issue(ADMIN_USER, organizations=["system:masters"])
    admin_cert_file = _write(pki / "admin.crt", admin_cert)
    admin_key_file = _write(pki / "admin.key", admin_key)

    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(admin_cert_file), str(admin_key_file))
    processes: list[_Process] = []
    try:
        def etcd_argv() -> tuple[list[str], str]:
            shutil.rmtree(workdir / "etcd-data", ignore_errors=True)
            client_url, peer_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
            return [
                str(assets / "etcd"),
                f"--data-dir={workdir / 'etcd-data'}",
                f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync", "--log-level=warn",
            ], client_url

        def etcd_healthy(url: str) -> bool:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")

        etcd_url = _start_listening("etcd", etcd_argv, etcd_healthy, workdir / "etcd.log", processes,
                                    ETCD_DEADLINE_S)

        def apiserver_argv() -> tuple[list[str], str]:
            port = free_port()
            return [
                str(assets / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
                f"--cert-dir={workdir / 'certs'}",
                f"--tls-cert-file={paths['serving.crt']}", f"--tls-private-key-file={paths['serving.key']}",
                f"--client-ca-file={ca_file}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={paths['sa.pub']}",
                f"--service-account-signing-key-file={paths['sa.key']}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=false",
                "--v=1",
            ], f"https://127.0.0.1:{port}"

        def apiserver_ready(url: str) -> bool:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5, context=context) as response:
                    return response.status == 200 and response.read() == b"ok"
            except urllib.error.HTTPError:
                return False

        server = _start_listening("kube-apiserver", apiserver_argv, apiserver_ready,
                                  workdir / "kube-apiserver.log", processes, READY_DEADLINE_S)
        kubeconfig = _write(workdir / "kubeconfig",
                            _kubeconfig(server, authority.pem, ADMIN_USER, admin_cert, admin_key).encode())
        yield Cluster(server, kubeconfig, ca_file, assets, workdir, authority, processes)
    finally:
        for process in reversed(processes):
            process.stop()
