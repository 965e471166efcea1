"""A state with an agent, policies, credentials and handles, and gateway replicas run as real processes."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from arxctl.chain import store as chain
from arxctl.policy.catalog import builtin
from arxctl.registry import credentials, handles
from arxctl.store.sqlite import Store
from tests.lifecycle.helpers import register

ROOT = Path(__file__).resolve().parents[2]
AGENT = "triage-cs-01"
OTHER = "pr-reviewer"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0
CONFIG = """\
groups:
  secops-leads: [alice, bob]
admins: [carol]
approvals: {default_group: secops-leads, default_timeout: 30m}
"""
AWS_SECRET = orjson.dumps({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
LLM_SECRET = orjson.dumps({"ANTHROPIC_API_KEY": "sk-ant-gateway-0001", "OPENAI_API_KEY": "sk-gateway-0002"})


def manifest(name: str = AGENT) -> dict[str, Any]:
    """The test agent: ServiceNow (prod, confidential), Slack (prod) and AWS (dev)."""
    return {
        "apiVersion": "arx.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "labels": {"env": "prod", "team": "secops"}},
        "spec": {
            "owner": {"name": "Dana Reyes", "email": "dana@bank.example", "team": "secops"},
            "purpose": "Triage change tickets",
            "connectors": [
                {"name": "servicenow", "dataClass": "confidential", "target": {"system": "servicenow-prod",
                                                                               "env": "prod"},
                 "actions": ["servicenow.change.read", "servicenow.change.close", "servicenow.change.update",
                             "servicenow.incident.read"]},
                {"name": "slack", "dataClass": "internal", "target": {"system": "slack", "env": "prod"},
                 "actions": ["slack.chat.post"]},
                {"name": "aws", "dataClass": "confidential", "target": {"system": "aws-dev", "env": "dev"},
                 "actions": ["aws.s3.get_object", "aws.s3.put_object"]},
                {"name": "llm", "dataClass": "internal", "target": {"system": "llm", "env": "prod"},
                 "actions": ["llm.chat.create"]},
            ],
        },
    }


def change_policy(update_timeout: str = "2s") -> dict[str, Any]:
    """Closing more than one change needs secops-leads (10 minutes); any change update needs them within
    `update_timeout` (the timeout test)."""
    def gate(name: str, when: str, cond: str | None, timeout: str) -> dict[str, Any]:
        rule: dict[str, Any] = {"name": name, "when": when, "then": {"approvalRequired": {
            "severity": "high", "approvers": {"group": "secops-leads"}, "timeout": timeout,
            "diffShownToApprover": True}}}
        if cond:
            rule["if"] = cond
        return rule

    return {"apiVersion": "arx.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "change-control"},
            "spec": {"selector": {"env": "prod"}, "rules": [
                gate("change-close-over-one", "servicenow.change.close", "size(payload.change_ids) > 1", "10m"),
                gate("change-update", "servicenow.change.update", None, update_timeout)]}}


@dataclass
class World:
    """A registered agent with credentials for ServiceNow, Slack and AWS and a live handle for each."""

    state: Path
    config: Path
    tokens: dict[str, str]
    handle_ids: dict[str, str]


def gateway_yaml(path: Path, *, servicenow: str, slack: str, aws: str | None = None,
                 router: Path | None = None) -> Path:
    lines = ["connectors:", f"  servicenow: {{base_url: \"{servicenow}\"}}", f"  slack: {{base_url: \"{slack}\"}}"]
    if aws is not None:
        lines.append(f"  aws: {{endpoint_url: \"{aws}\", region: us-east-1}}")
    if router is not None:
        lines.append(f"  llm: {{router: \"{router.name}\"}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def build_world(directory: Path, *, servicenow: str, slack: str, aws: str | None = None,
                router: Path | None = None, update_timeout: str = "2s") -> World:
    store = Store(directory)
    try:
        register(store, manifest(), manifest(OTHER), change_policy(update_timeout))
        (directory / "config.yaml").write_text(CONFIG)
        catalog = builtin()
        for connector, secret in (("servicenow", b"svc-arx:sn-pass-0001"), ("slack", b"xoxb-test-0001"),
                                  ("aws", AWS_SECRET), ("llm", LLM_SECRET)):
            credentials.set_credential(store, connector, secret, actor="tester", reason="test setup",
                                       catalog=catalog)
        tokens, ids = {}, {}
        for connector in ("servicenow", "slack", "aws", "llm"):
            info, token = handles.issue(store, agent=AGENT, connector=connector, actor="tester", reason="test",
                                        ttl="1h")
            tokens[connector], ids[connector] = token, info.id
    finally:
        store.close()
    config = gateway_yaml(directory.parent / "gateway.yaml", servicenow=servicenow, slack=slack, aws=aws,
                          router=router)
    return World(directory, config, tokens, ids)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(url: str, method: str, path: str, *, body: Any = None, token: str | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request (a fresh connection); returns status, lower-cased headers and the body."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=orjson.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass
class GatewayProcess:
    """`arxctl gateway serve` in a subprocess on a free loopback port."""

    state: Path
    replica: str
    args: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        self.port = free_port()
        self.log_path = self.state.parent / f"gateway-{self.replica}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("ARX_NOW", "ARX_HOME")}
        env.update(self.env)
        command = [sys.executable, "-m", "arxctl", "gateway", "serve", "--state", str(self.state),
                   "--listen", f"127.0.0.1:{self.port}", "--replica-id", self.replica, *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.wait_ready()
        return self

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def wait_ready(self, deadline_s: float = START_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway {self.replica} exited {self.proc.returncode}:\n{self.output()}")
            try:
                status, _, _ = request(self.url, "GET", "/readyz", timeout=1.0)
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"gateway {self.replica} not ready within {deadline_s}s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit (a last checkpoint is published on the way out)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_DEADLINE_S)
            raise AssertionError(f"gateway {self.replica} did not stop on SIGTERM:\n{self.output()}") from None


def replica_records(state: Path, replica: str, record_type: str | None = None) -> list[dict[str, Any]]:
    """The records in a replica's own chain (optionally of one type)."""
    with Store(state / "gateway" / replica) as store:
        lines = [orjson.loads(line) for line in chain.iter_lines(store.conn)]
    return [r for r in lines if record_type is None or r["type"] == record_type]


def main_records(state: Path, record_type: str) -> list[dict[str, Any]]:
    with Store(state) as store:
        return [r for r in (orjson.loads(line) for line in chain.iter_lines(store.conn)) if r["type"] == record_type]


def until(predicate: Any, deadline_s: float, what: str, step_s: float = 0.02) -> float:
    """Wait until `predicate()` is true; returns the seconds it took; fails past the deadline."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > deadline_s:
            raise AssertionError(f"{what}: not within {deadline_s}s")
        time.sleep(step_s)


class Mount:
    """A directory laid out like a mounted ConfigMap: `bundle.json -> ..data/bundle.json`, `..data -> ..N`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True)
        self.n = 0

    def publish(self, data: bytes) -> None:
        self.n += 1
        version = self.directory / f"..{self.n:04d}"
        version.mkdir()
        (version / "bundle.json").write_bytes(data)
        temp = self.directory / "..data_tmp"
        temp.symlink_to(version.name)
        os.replace(temp, self.directory / "..data")
        link = self.directory / "bundle.json"
        if not link.is_symlink():
            link.symlink_to("..data/bundle.json")


def secrets_dir(world: World) -> Path:
    """The mounted Secret: the platform key (handles) and each credential in plain text, mode 0400."""
    target = world.state.parent / "secrets"
    target.mkdir()
    shutil.copy(credentials.key_path(world.state), target / "platform.key")
    with Store(world.state) as store:
        for connector in ("servicenow", "slack"):
            (target / connector).write_bytes(credentials.secret_for(store, connector, AGENT))
    for path in target.iterdir():
        path.chmod(0o400)
    return target
