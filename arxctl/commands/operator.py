"""`arxctl operator`: run the Kubernetes operator that reconciles Agents, Policies and Grants."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from arxctl.commands._common import ActorOpt, actor

app = typer.Typer(help="Run the Kubernetes operator (Agents, Policies, Grants -> enforcement bundles).",
                  no_args_is_help=True)


@app.command()
def run(
    namespace: Annotated[list[str] | None, typer.Option(
        "--namespace", "-n", help="Namespace to watch (repeatable; globs and !exclusions allowed).")] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")] = False,
    state: Annotated[Path, typer.Option("--state", envvar="ARX_OPERATOR_STATE",
                                        help="The operator's store (a PersistentVolume in a cluster).")] = Path(
        "/var/lib/arx"),
    witness: Annotated[str | None, typer.Option(
        "--witness", help="Publish signed checkpoints here: file:///dir or s3://bucket/prefix.")] = None,
    publish_every: Annotated[str, typer.Option("--publish-every", help="Checkpoint publishing interval.")] = "5m",
    kms_key_id: Annotated[str | None, typer.Option(
        "--kms-key-id", help="Sign checkpoints with this AWS KMS ECC_NIST_P256 key (default: a key file per "
                             "namespace store, made on first publish).")] = None,
    retention_class: Annotated[str, typer.Option(
        "--retention-class", help="Retention class for sealed agent records (per agent: annotation "
                                  "arx.dev/retention-class).")] = "standard-1yr",
    resync: Annotated[str, typer.Option("--resync", help="Reconcile every known namespace this often.")] = "5m",
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Default: $KUBECONFIG, ~/.kube/config, "
                                                                         "else in-cluster.")] = None,
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context.")] = None,
    liveness: Annotated[str | None, typer.Option(
        "--liveness", help="Serve a liveness probe, e.g. http://0.0.0.0:8080/healthz.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every reconcile.")] = False,
    as_: ActorOpt = None,
) -> None:
    """Reconcile Agents, Policies, ConnectorCatalogs and Grants into one enforcement bundle per namespace.

    Expires grants at their TTL, decommissions deleted agents through a finalizer, records every action in the
    store's audit chain and, with --witness, publishes signed checkpoints. Stops on SIGTERM.

    Example: arxctl operator run --all-namespaces --state /var/lib/arx --witness s3://bank-grc/arx-witness/
    """
    from arxctl.durations import parse_duration
    from arxctl.errors import InputError
    from arxctl.operator.controller import Controller, Settings
    from arxctl.operator.handlers import run as run_operator
    from arxctl.operator.k8s import Kube

    if all_namespaces == bool(namespace):
        raise InputError("pass --namespace N (one or more) or --all-namespaces")
    try:
        every, period = parse_duration(publish_every), parse_duration(resync)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("arxctl.operator").setLevel(logging.INFO)
    kube = Kube.connect(kubeconfig, context)
    settings = Settings(state=state, actor=actor(as_ or "arx-operator"), retention_class=retention_class,
                        resync_s=period.total_seconds(), witness=witness, publish_every_s=every.total_seconds(),
                        kms_key_id=kms_key_id)
    run_operator(Controller(kube, settings), namespaces=namespace or [], clusterwide=all_namespaces,
                 liveness=liveness)
