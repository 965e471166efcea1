"""Evidence bundles: exact file set, manifest hashes, signing with the chain key, verify catching every change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from arxctl.chain import keys
from arxctl.store.sqlite import open_store

BUNDLE_FILES = ["controls.json", "controls.md", "findings.json", "findings.sarif", "graph.dot", "graph.mmd",
                "human-owned.md", "index.md", "manifest.json", "statement-of-applicability.md"]
ARGS = ["evidence", "agents/triage", "-m", "manifests/triage-cs-01.yaml", "--out", "bundle"]


def test_bundle_contents_and_verify(workspace: Path, cli) -> None:
    result = cli(*ARGS)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "wrote 10 files to bundle"
    assert result.stdout.splitlines()[-1] == "unsigned: no arxctl state store with a signing key"
    bundle = workspace / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == BUNDLE_FILES
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["agent"] == "triage-cs-01"
    assert manifest["files"] == {name: hashlib.sha256((bundle / name).read_bytes()).hexdigest()
                                 for name in BUNDLE_FILES if name != "manifest.json"}
    index = (bundle / "index.md").read_text().splitlines()
    assert "- 13 of 61 SOC 2 criteria evidenced automatically from this agent; 41 human-owned; 7 without evidence" \
        in index
    mermaid = (bundle / "graph.mmd").read_text().splitlines()
    assert mermaid[:3] == ["flowchart LR", '  n_agent(["triage-cs-01"])',
                           '  n_agent --> n_servicenow["servicenow<br/>confidential"]']
    assert (bundle / "graph.dot").read_text().startswith("digraph connectors {\n  rankdir=LR;\n")
    soa = (bundle / "statement-of-applicability.md").read_text().splitlines()
    assert len([row for row in soa if row.startswith("| A.")]) == 38
    assert ("| A.7.2 | Data for development and enhancement managed | no | Not applicable to this agent: no model "
            "training or fine-tuning call was found in its code; the owner confirms. | none |") in soa
    human = (bundle / "human-owned.md").read_text()
    assert "## SOC 2 Trust Services Criteria (2017) (41)" in human
    verified = cli("evidence", "verify", "bundle")
    assert verified.exit_code == 0
    assert verified.stdout == "ok: 9 file(s), 4 span(s) checked; signature unsigned\n"


def test_verify_catches_changed_source_and_tampered_bundle(workspace: Path, cli) -> None:
    assert cli(*ARGS).exit_code == 0
    source = workspace / "agents/triage/triage.py"
    source.write_text(source.read_text().replace("json=body, timeout=30", "json=body, timeout=90"))
    (workspace / "bundle/controls.md").write_text("# all good\n")
    (workspace / "bundle/notes.txt").write_text("added later\n")
    result = cli("evidence", "verify", "bundle", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert (doc["ok"], doc["files_checked"], doc["spans_checked"], doc["signature"]) == (False, 9, 4, "unsigned")
    assert doc["problems"] == [
        {"kind": "modified-file", "path": "controls.md", "line": None, "detail": "sha256 differs from manifest.json"},
        {"kind": "extra-file", "path": "notes.txt", "line": None, "detail": "not listed in manifest.json"},
        {"kind": "span-changed", "path": "agents/triage/triage.py", "line": 41,
         "detail": "ARXA102 span 41:20-41:81 no longer matches its sha256"},
    ]


def test_verify_against_another_checkout(workspace: Path, cli, tmp_path_factory) -> None:
    assert cli(*ARGS).exit_code == 0
    elsewhere = tmp_path_factory.mktemp("checkout")
    (elsewhere / "agents/triage").mkdir(parents=True)
    result = cli("evidence", "verify", "bundle", "--source", str(elsewhere))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (f"agents/triage/triage.py:30: missing-source: cannot read "
                                             f"{elsewhere}/agents/triage/triage.py")


def test_signed_with_the_chain_key(workspace: Path, cli, state_dir: Path) -> None:
    with open_store(state_dir) as store, store.transaction() as conn:
        key = keys.generate(conn, state_dir)
    result = cli(*ARGS)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == f"signed manifest.json with {key.key_id}"
    sig = json.loads((workspace / "bundle/manifest.sig.json").read_text())
    assert (sig["key_id"], sig["signed"]) == (key.key_id, "manifest.json")
    ok = cli("evidence", "verify", "bundle")
    assert ok.stdout.splitlines()[-1] == f"ok: 9 file(s), 4 span(s) checked; signature valid ({key.key_id})"
    exported = workspace / "public.json"
    exported.write_text(json.dumps({"keys": [key.to_dict()]}))
    offline = cli("evidence", "verify", "bundle", "--keys", str(exported), "--state", str(workspace / "none"))
    assert offline.exit_code == 0
    manifest = workspace / "bundle/manifest.json"
    manifest.write_text(manifest.read_text().replace('"triage-cs-01"', '"someone-else"'))
    bad = cli("evidence", "verify", "bundle", "--json")
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)
    assert doc["signature"] == "invalid"
    assert doc["problems"] == [
        {"kind": "bad-signature", "path": "manifest.sig.json", "line": None,
         "detail": f"signature by {key.key_id} does not verify"},
        {"kind": "manifest-mismatch", "path": "manifest.json", "line": None,
         "detail": "'agent' differs from findings.json"},
    ]


def test_signed_bundle_without_public_keys_is_not_ok(workspace: Path, cli, state_dir: Path) -> None:
    with open_store(state_dir) as store, store.transaction() as conn:
        key = keys.generate(conn, state_dir)
    assert cli(*ARGS).exit_code == 0
    result = cli("evidence", "verify", "bundle", "--state", str(workspace / "none"))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        f"manifest.sig.json: no-keyring: signed by {key.key_id}, but no public keys to check it (pass --keys FILE "
        "from `arxctl keys export-public`)")


def test_refuses_a_non_empty_out_and_needs_a_manifest(workspace: Path, cli) -> None:
    (workspace / "bundle").mkdir()
    (workspace / "bundle/keep.txt").write_text("x")
    result = cli(*ARGS)
    assert result.exit_code == 2
    assert sorted(p.name for p in (workspace / "bundle").iterdir()) == ["keep.txt"]
    assert cli("evidence", "agents/triage", "--out", "b2").exit_code == 2
    assert not (workspace / "b2").exists()
    assert cli("evidence", "verify", "agents").exit_code == 2


def test_build_subcommand_is_the_default(workspace: Path, cli) -> None:
    assert cli("evidence", "build", "agents/pr-reviewer", "-m", "manifests/pr-reviewer.yaml", "-o", "b").exit_code == 0
    assert (workspace / "b/manifest.json").is_file()
