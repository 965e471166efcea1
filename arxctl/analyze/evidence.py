"""Evidence bundles for vendor review: written atomically, hashed in manifest.json, signed when a chain key exists."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from arxctl.analyze import controls as ctl
from arxctl.analyze import sarif
from arxctl.analyze.git import open_tree
from arxctl.analyze.graph import dot, mermaid
from arxctl.analyze.model import span_sha256
from arxctl.analyze.report import Report
from arxctl.clock import now_ts
from arxctl.errors import InputError

BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig.json"
FILES = {
    "index.md": "Overview, coverage and how to verify this bundle",
    "findings.json": "Every finding with its pinned span (analyze --format json)",
    "findings.sarif": "The same findings as SARIF 2.1.0",
    "graph.mmd": "Derived connector graph (Mermaid)",
    "graph.dot": "Derived connector graph (Graphviz DOT)",
    "controls.md": "Control tables per framework, each control with its attestation category",
    "controls.json": "Control statuses, evidence, coverage and EU AI Act classification",
    "human-owned.md": "Controls a person must evidence, and why",
    "statement-of-applicability.md": "ISO/IEC 42001 Annex A statement of applicability for this agent",
}


def _json(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _status_word(status: str) -> str:
    return {"evidenced": "evidenced", "failing": "**failing**", "missing": "no evidence",
            "human-owned": "human-owned"}[status]


def _index(report: Report, created: str) -> str:
    m = report.manifest
    spec = m.spec if m else {}
    owner = spec.get("owner") or {}
    cats = ctl.by_category(report.controls)
    titles = {c["id"]: c["title"] for c in ctl.load("aiuc1")["categories"]}
    out = [
        f"# Evidence bundle: {report.agent}", "",
        f"- Generated: {created} by arxctl",
        f"- Owner: {owner.get('name', 'not declared')}" + (f" <{owner['email']}>" if owner.get("email") else ""),
        f"- Purpose: {spec.get('purpose', 'not declared')}",
        f"- Source: `{report.analysis.root}`" + (f" at commit `{report.analysis.commit}`" if report.analysis.commit
                                                 else " (not a git work tree)"),
        f"- Analysed: {report.analysis.files} file(s), {report.analysis.lines} line(s)",
        f"- Derived graph: {len(report.graph.edges)} action(s) over {len(report.graph.connectors)} connector(s); "
        f"{len(report.graph.undeclared)} undeclared, {len(report.graph.unused)} declared but unused",
        f"- EU AI Act: {report.eu_ai_act['title']}" + (" (provisional: spec.euAiAct not set)"
                                                        if report.eu_ai_act["provisional"] else ""),
        "", "## Coverage", "",
    ]
    out += [f"- {c.sentence}" for c in report.coverage]
    out += ["", "Figures are computed from arxctl's control data and this agent's evidence; a human-owned control "
            "needs evidence from the organisation, not from code.", "",
            "## By attestation category (AIUC-1 domains)", "",
            "| Category | Evidenced | Failing | No evidence | Human-owned |", "| --- | --- | --- | --- | --- |"]
    for cid, n in cats.items():
        out.append(f"| {titles[cid]} | {n['evidenced']} | {n['failing']} | {n['missing']} | {n['human-owned']} |")
    out += ["", "## Files", ""] + [f"- [`{name}`]({name}): {what}" for name, what in FILES.items()]
    out += ["", "## Verify", "", "```sh", "arxctl evidence verify <this directory> [--source <checkout>]", "```", "",
            "Verification re-hashes every file listed in `manifest.json`, checks the signature in "
            f"`{SIGNATURE}` (when present), and re-checks the sha256 of every pinned source span.", ""]
    return "\n".join(out)


def _controls_md(report: Report) -> str:
    out = [f"# Controls: {report.agent}", ""]
    for fw, cov in zip(ctl.FRAMEWORKS, report.coverage, strict=True):
        data = ctl.load(fw)
        out += [f"## {data['name']}", "", cov.sentence, "",
                "| Control | Title | Category | Status | Evidence for this agent |", "| --- | --- | --- | --- | --- |"]
        for r in report.controls:
            if r.framework != fw:
                continue
            if r.mode == "automated":
                what = "; ".join(f"{e.kind}: {e.status} ({e.detail})" for e in r.evidence)
            else:
                what = r.why or ""
            out.append(f"| {r.id} | {r.title} | {r.category} | {_status_word(r.status)} | {what.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


def _human_md(report: Report) -> str:
    out = [f"# Human-owned controls: {report.agent}", "",
           "These controls cannot be evidenced from an agent's code or its arxctl records; a named person in the "
           "organisation supplies the evidence. Supporting evidence arxctl found is listed where it helps.", ""]
    for fw in ctl.FRAMEWORKS:
        rows = [r for r in report.controls if r.framework == fw and r.mode == "human-owned"]
        out += [f"## {ctl.load(fw)['name']} ({len(rows)})", ""]
        for r in rows:
            line = f"- **{r.id}** {r.title}: {r.why}"
            if r.supporting:
                line += " Supporting: " + "; ".join(f"{e.kind} ({e.status}: {e.detail})" for e in r.supporting)
            out.append(line)
        out.append("")
    return "\n".join(out)


def _soa_md(report: Report) -> str:
    out = [f"# Statement of applicability: ISO/IEC 42001 Annex A, agent {report.agent}", "",
           "| Control | Title | Applicable | Justification | Implementation |", "| --- | --- | --- | --- | --- |"]
    for r in report.controls:
        if r.framework != "iso42001":
            continue
        if not r.applicable:
            out.append(f"| {r.id} | {r.title} | no | {r.applicability} | none |")
            continue
        if r.mode == "automated":
            justification = "Applies to every deployed agent; evidenced by arxctl."
            impl = f"{_status_word(r.status)}: " + ", ".join(f"{e.kind} ({e.status})" for e in r.evidence)
        else:
            justification = "Applies to the organisation operating the agent."
            impl = f"human-owned: {r.why}"
        out.append(f"| {r.id} | {r.title} | yes | {justification} | {impl.replace('|', '/')} |")
    return "\n".join(out) + "\n"


def render_files(report: Report, created: str) -> dict[str, bytes]:
    """Every bundle file's bytes, except manifest.json and the signature."""
    name = report.agent
    doc = report.to_dict()
    doc.update({"bundle_version": BUNDLE_VERSION, "source_root": str(report.analysis.root), "created": created})
    controls_doc = {
        "agent": report.manifest.name if report.manifest else None,
        "coverage": [c.to_dict() for c in report.coverage],
        "categories": ctl.by_category(report.controls),
        "eu_ai_act": report.eu_ai_act,
        "evidence_kinds": [e.to_dict() for e in report.evidence.values()],
        "controls": [c.to_dict() for c in report.controls],
    }
    return {
        "index.md": _index(report, created).encode(),
        "findings.json": _json(doc),
        "findings.sarif": _json(sarif.render(report)),
        "graph.mmd": mermaid(name, report.graph.edges).encode(),
        "graph.dot": dot(name, report.graph.edges).encode(),
        "controls.md": _controls_md(report).encode(),
        "controls.json": _json(controls_doc),
        "human-owned.md": _human_md(report).encode(),
        "statement-of-applicability.md": _soa_md(report).encode(),
    }


@dataclass(slots=True)
class Written:
    """A written bundle: where, which files, and the signing key (None when unsigned)."""

    path: Path
    files: list[str]
    key_id: str | None
    unsigned_reason: str | None = None


def _signer(state_dir: Path | None) -> tuple[Any, str | None]:
    if state_dir is None or not (state_dir / "state.db").exists():
        return None, "no arxctl state store with a signing key"
    from arxctl.chain import keys
    from arxctl.errors import StateError
    from arxctl.store.sqlite import Store

    try:
        with Store(state_dir, create=False) as store:
            if not any(k.valid_at(now_ts()) for k in keys.list_keys(store.conn)):
                return None, "no active chain signing key (arxctl keys generate)"
            return keys.signer(store.conn, state_dir), None
    except (sqlite3.DatabaseError, StateError) as exc:
        return None, f"signing key unavailable: {exc}"


def write(report: Report, out: Path, *, state_dir: Path | None = None) -> Written:
    """Write the bundle into `out` (created; must not exist or be empty) atomically; sign when a key exists."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty directory; choose a new --out")
    created = now_ts()
    files = render_files(report, created)
    manifest = {
        "bundle_version": BUNDLE_VERSION, "created": created,
        "agent": report.manifest.name if report.manifest else None, "commit": report.analysis.commit,
        "source_root": str(report.analysis.root),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    files[MANIFEST] = _json(manifest)
    signer, reason = _signer(state_dir)
    if signer is not None:
        from arxctl.chain.keys import encode_sig

        files[SIGNATURE] = _json({"key_id": signer.key_id, "ts": created,
                                  "sig": encode_sig(signer.sign(files[MANIFEST])), "signed": MANIFEST})
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Written(out, sorted(files), signer.key_id if signer else None, reason)


# ---------------------------------------------------------------- verify


@dataclass(slots=True)
class Verified:
    """The outcome of `evidence verify`."""

    ok: bool = True
    files_checked: int = 0
    spans_checked: int = 0
    signature: str = "unsigned"
    problems: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, kind: str, path: str, detail: str, line: int | None = None) -> None:
        self.ok = False
        self.problems.append({"kind": kind, "path": path, "line": line, "detail": detail})

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "files_checked": self.files_checked, "spans_checked": self.spans_checked,
                "signature": self.signature, "problems": self.problems}


def _load_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}:1:{exc.pos + 1}: not JSON: {exc.msg}") from None


def _check_signature(bundle: Path, manifest_bytes: bytes, result: Verified, keyring: Any) -> None:
    sig_path = bundle / SIGNATURE
    if not sig_path.exists():
        result.signature = "unsigned"
        return
    sig = _load_json(sig_path)
    if not isinstance(sig, Mapping) or not {"key_id", "ts", "sig"} <= set(sig):
        result.signature = "invalid"
        result.problem("bad-signature", SIGNATURE, "signature file lacks key_id, ts or sig")
        return
    if keyring is None:
        result.signature = "unchecked"
        result.problem("no-keyring", SIGNATURE, f"signed by {sig['key_id']}, but no public keys to check it "
                                                "(pass --keys FILE from `arxctl keys export-public`)")
        return
    problem = keyring.check(str(sig["key_id"]), str(sig["ts"]), manifest_bytes, str(sig["sig"]))
    if problem is None:
        result.signature = f"valid ({sig['key_id']})"
    else:
        result.signature = "invalid"
        result.problem(problem[0].replace("_", "-"), SIGNATURE, problem[1])


def _keyring(keys_file: Path | None, state_dir: Path | None) -> Any:
    from arxctl.chain import keys

    if keys_file is not None:
        return keys.load_keyring(keys_file)
    if state_dir is None or not (state_dir / "state.db").exists():
        return None
    from arxctl.store.sqlite import Store

    try:
        with Store(state_dir, create=False) as store:
            return keys.keyring_from_store(store.conn)
    except sqlite3.DatabaseError:
        return None


def verify(bundle: Path, *, source: Path | None = None, keys_file: Path | None = None,
           state_dir: Path | None = None) -> Verified:
    """Re-hash the bundle's files, check its signature, and re-check every pinned span against the source tree."""
    if not (bundle / MANIFEST).is_file():
        raise InputError(f"{bundle}: no {MANIFEST}; not an arxctl evidence bundle")
    result = Verified()
    manifest_bytes = (bundle / MANIFEST).read_bytes()
    manifest = _load_json(bundle / MANIFEST)
    listed = manifest.get("files") if isinstance(manifest, Mapping) else None
    if not isinstance(listed, Mapping):
        raise InputError(f"{bundle / MANIFEST}:1:1: no 'files' map")
    for name, digest in sorted(listed.items()):
        path = bundle / name
        result.files_checked += 1
        if Path(name).name != name or not path.is_file():
            result.problem("missing-file", name, "listed in manifest.json but not in the bundle")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            result.problem("modified-file", name, "sha256 differs from manifest.json")
    for extra in sorted(p.name for p in bundle.iterdir() if p.name not in listed and p.name not in (MANIFEST,
                                                                                                      SIGNATURE)):
        result.problem("extra-file", extra, "not listed in manifest.json")
    _check_signature(bundle, manifest_bytes, result, _keyring(keys_file, state_dir))
    if manifest_bytes != _json(manifest):
        result.problem("manifest-format", MANIFEST, "not in the canonical form arxctl writes")
    intact = "findings.json" in listed and not any(p["path"] == "findings.json" for p in result.problems)
    if intact:
        doc = _load_json(bundle / "findings.json")
        for key in ("bundle_version", "created", "agent", "commit", "source_root"):
            if manifest.get(key) != doc.get(key):
                result.problem("manifest-mismatch", MANIFEST, f"'{key}' differs from findings.json")
        root = source or Path(str(doc.get("source_root", ".")))
        _check_spans(doc.get("findings") or [], root, result)
    return result


def _check_spans(findings: list[Mapping[str, Any]], root: Path, result: Verified) -> None:
    texts: dict[str, str | None] = {}
    tree = open_tree(root) if root.exists() else None
    for f in findings:
        path, sha = f.get("path"), f.get("sha256")
        if not path or not sha or str(path).startswith("agent/"):
            continue
        if path not in texts:
            try:
                texts[path] = (root / path).read_bytes().decode("utf-8-sig")
            except (OSError, UnicodeDecodeError):
                texts[path] = None
        text = texts[path]
        result.spans_checked += 1
        line = int(f.get("start_line", 1))
        if text is None:
            result.problem("missing-source", path, f"cannot read {root / path}", line)
            continue
        actual = span_sha256(text, line, int(f.get("start_col", 1)), int(f.get("end_line", line)),
                             int(f.get("end_col", 1)))
        if actual != sha:
            result.problem("span-changed", path, f"{f.get('rule_id')} span {line}:{f.get('start_col')}-"
                           f"{f.get('end_line')}:{f.get('end_col')} no longer matches its sha256", line)
            continue
        commit, blob = f.get("commit"), f.get("blob")
        if tree is not None and commit and blob and f.get("committed"):
            at = tree.blob_at(str(commit), str(path))
            if at is None:
                result.problem("commit-unknown", path, f"commit {str(commit)[:12]} or the path is not in this "
                                                       "repository", line)
            elif at != blob:
                result.problem("blob-mismatch", path, f"blob at {str(commit)[:12]} is {at[:12]}, bundle pinned "
                                                      f"{str(blob)[:12]}", line)
