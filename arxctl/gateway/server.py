"""Launching a gateway replica: its state source, drivers, audit log and approval desk, served by uvicorn."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from arxctl.errors import InputError

DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Everything `arxctl gateway serve` takes."""

    state: Path
    bundle: Path | None = None
    secrets: Path | None = None
    listen: str = DEFAULT_LISTEN
    replica: str | None = None
    config: Path | None = None
    approvers: Path | None = None
    witness: str | None = None
    key_id: str | None = None
    kms_key_id: str | None = None
    publish_every: timedelta = timedelta(minutes=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:8080` for IPv6)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {text!r}: use HOST:PORT, e.g. 0.0.0.0:8080")
    return host, int(port)


def _fast(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def serve(options: ServeOptions, *, say: Callable[[str], None] | None = None) -> None:
    """Run one replica until SIGINT or SIGTERM; on the way out, publish a last checkpoint and release the replica."""
    try:
        import uvicorn
    except ImportError as exc:
        raise InputError("the gateway needs its extra: pip install 'arxctl[gateway]'") from exc
    from arxctl.gateway.app import build_app
    from arxctl.gateway.approvals import ApprovalDesk
    from arxctl.gateway.audit import ReplicaLog, signer_for
    from arxctl.gateway.calls import Gateway
    from arxctl.gateway.config import load_config
    from arxctl.gateway.drivers import build_drivers
    from arxctl.gateway.enforcement import Enforcer, open_source, process_id
    from arxctl.registry import config as project
    from arxctl.store.sqlite import Store

    def default_say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    say = say or default_say
    if (options.tls_cert is None) != (options.tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    if options.bundle is not None and options.secrets is None:
        raise InputError("--bundle needs --secrets DIR (the mounted Secret holding platform.key and credentials)")
    host, port = parse_listen(options.listen)
    replica = options.replica or process_id()
    config = load_config(options.config)
    drivers = build_drivers(config)
    settings = project.load(options.state, options.approvers)
    if config.cluster is not None and options.bundle is None:
        raise InputError(f"{config.source}: the `cluster` section applies with --bundle (with --state, live drift "
                         "holds go into the registry)")
    cluster = None
    if config.cluster is not None:
        from arxctl.gateway.cluster import StatusWriter

        cluster = StatusWriter.connect(config.cluster, replica)
    source = open_source(state=options.state, bundle=options.bundle, secrets=options.secrets)
    main = Store(options.state)
    log = ReplicaLog(options.state, replica, main=main)
    desk = ApprovalDesk(options.state, actor=f"gateway/{replica}", config=options.approvers)
    enforcer = Enforcer(source)
    gateway = Gateway(enforcer=enforcer, drivers=drivers, log=log, desk=desk, replica=replica,
                      state=desk.store if options.bundle is None else None, webhook=settings.webhook, warn=say,
                      cluster=cluster)
    enforcer.start()
    signer = None
    witness = None
    if options.witness is not None:
        from arxctl.chain.witness import open_witness

        witness = open_witness(options.witness)
        signer = signer_for(log, key_id=options.key_id, kms_key_id=options.kms_key_id)
    log.start(witness=witness, signer=signer, publish_every=options.publish_every, on_error=say)

    async def on_start() -> None:
        await drivers.start()

    async def on_stop() -> None:
        await drivers.close()

    app = build_app(gateway, on_start=on_start, on_stop=on_stop)
    scheme = "https" if options.tls_cert else "http"
    snapshot = enforcer.snapshot
    say(f"arxctl gateway {replica} listening on {scheme}://{host}:{port}")
    say(f"  enforcing: {source.name} {snapshot.revision}" + (f" (NOT READY: {snapshot.error})" if snapshot.error
                                                             else ""))
    say(f"  audit log: {log.directory} (log id {log.log_id})"
        + (f", checkpoints to {options.witness} every {options.publish_every}" if witness is not None
           else "; no --witness: publish with `arxctl chain publish --state " + str(log.directory) + "`"))
    if cluster is not None:
        say(f"  agent status: holds and health (every {cluster.every_s:g}s) written through "
            f"{cluster.kube.configuration.host}")
    for line in drivers.describe():
        say(f"  connector {line}")
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, loop="uvloop" if _fast("uvloop") else "asyncio",
        http="httptools" if _fast("httptools") else "h11", lifespan="on", log_level="warning", access_log=False,
        timeout_graceful_shutdown=10, timeout_keep_alive=75, server_header=False,
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
    ))
    stopping: list[int] = []
    # uvicorn re-raises the signal it shut down on; taking it here lets the replica close its log and exit 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, frame: stopping.append(number))
    try:
        server.run()
    finally:
        enforcer.stop()
        gateway.close()
        records = log.size()
        log.close()
        desk.close()
        main.close()
        say(f"arxctl gateway {replica} stopped; its audit log holds {records} records")
