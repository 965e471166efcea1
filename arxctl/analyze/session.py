"""One analyze run: load the manifest (file or registry), analyse the paths, build the report."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from arxctl.analyze import controls as ctl
from arxctl.analyze.engine import analyze_paths
from arxctl.analyze.graph import Manifest
from arxctl.analyze.report import Report, build
from arxctl.errors import InputError, ValidationFailed
from arxctl.policy.catalog import Catalog


def load_manifest(path: Path, catalog: Catalog, catalog_files: Sequence[Path] = ()) -> tuple[Manifest, Catalog]:
    """The one Agent in a manifest file, validated (bad input raises ValidationFailed with diagnostics)."""
    from arxctl.resources.validation import check_paths

    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    report = check_paths([path], catalog_files=catalog_files, base_catalog=catalog)
    if not report.ok or report.input_error:
        raise ValidationFailed([d for d in report.diagnostics if d.severity == "error"])
    agents = [r for r in report.resources if r.kind == "Agent"]
    if len(agents) != 1:
        raise InputError(f"{path}: expected exactly one Agent resource, found {len(agents)}")
    agent = agents[0]
    extended = catalog
    for r in report.resources:
        if r.kind == "ConnectorCatalog":
            extended = extended.extend(r.doc["spec"], r.name)
    for f in catalog_files:
        extra = check_paths([f], base_catalog=extended)
        for r in extra.resources:
            if r.kind == "ConnectorCatalog":
                extended = extended.extend(r.doc["spec"], r.name)
    return Manifest(agent.name, agent.doc, str(path), agent.source), extended


def run(paths: Sequence[Path], *, manifest_file: Path | None = None, agent: str | None = None,
        state: Path | None = None, catalog_files: Sequence[Path] = (), workers: int | None = None) -> Report:
    """Analyse `paths` against a manifest file or a registered agent (or neither) and map the evidence."""
    from arxctl.registry import resources as registry
    from arxctl.store.sqlite import existing_store

    if manifest_file is not None and agent is not None:
        raise InputError("pass either --manifest or --agent, not both")
    if not paths:
        raise InputError("give at least one file or folder to analyse")
    if importlib.util.find_spec("libcst") is None:
        raise InputError("arxctl analyze needs libcst and gitpython: pip install 'arxctl[analyze]'")
    store = existing_store(state)
    try:
        catalog = registry.catalog(store)
        manifest: Manifest | None = None
        if manifest_file is not None:
            manifest, catalog = load_manifest(manifest_file, catalog, catalog_files)
        elif agent is not None:
            if store is None:
                raise InputError(f"no arxctl state to look up agent '{agent}' (pass --state or --manifest)")
            version = registry.get(store, "Agent", agent)
            manifest = Manifest(agent, version.doc, None, None, version.version)
            catalog = _with_files(catalog, catalog_files)
        else:
            catalog = _with_files(catalog, catalog_files)
        analysis = analyze_paths(paths, catalog, workers)
        if manifest is not None and manifest.path is not None:
            manifest = _relative(manifest, analysis.root)
        runtime = ctl.runtime_context(store, manifest.name, manifest.doc if manifest else None) if (
            manifest is not None) else ctl.RuntimeContext(store=store is not None)
        return build(analysis, manifest, catalog, runtime)
    finally:
        if store is not None:
            store.close()


def _with_files(catalog: Catalog, files: Sequence[Path]) -> Catalog:
    if not files:
        return catalog
    from arxctl.resources.validation import check_paths

    report = check_paths(list(files), base_catalog=catalog)
    if not report.ok:
        raise ValidationFailed([d for d in report.diagnostics if d.severity == "error"])
    for r in report.resources:
        if r.kind == "ConnectorCatalog":
            catalog = catalog.extend(r.doc["spec"], r.name)
    return catalog


def _relative(manifest: Manifest, root: Path) -> Manifest:
    path = Path(manifest.path or "").resolve()
    try:
        shown = path.relative_to(root).as_posix()
    except ValueError:
        shown = str(path)
    return Manifest(manifest.name, manifest.doc, shown, manifest.source, manifest.version)
