"""Control data integrity, evidence and coverage computed from data, EU AI Act classification, graph diff."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from arxctl.analyze import controls as ctl
from arxctl.analyze.session import run


def _ids(framework: str) -> list[str]:
    return [c["id"] for c in ctl.load(framework)["controls"]]


def test_control_catalogs_have_the_published_counts() -> None:
    assert len(_ids("soc2")) == 61 and len(set(_ids("soc2"))) == 61
    assert len(_ids("iso42001")) == 38 and len(set(_ids("iso42001"))) == 38
    nist = _ids("nist-ai-rmf")
    assert len(nist) == 72 and len(set(nist)) == 72
    assert Counter(i.split()[0] for i in nist) == {"GOVERN": 19, "MAP": 18, "MEASURE": 22, "MANAGE": 13}
    assert "MANAGE 3.3" not in nist and "MANAGE 4.4" not in nist
    assert Counter(i[:2] if i.startswith("CC") else i.rstrip(".0123456789") for i in _ids("soc2")) == {
        "CC": 33, "A": 3, "C": 2, "PI": 5, "P": 18}


def test_every_control_entry_is_well_formed() -> None:
    categories = {c["id"] for c in ctl.load("aiuc1")["categories"]}
    assert categories == {"data-privacy", "security", "safety", "reliability", "accountability", "society"}
    used: set[str] = set()
    for fw in ctl.FRAMEWORKS:
        for c in ctl.load(fw)["controls"]:
            assert c["category"] in categories
            ev = c["evidence"]
            if ev["mode"] == "automated":
                assert ev["kinds"] and set(ev["kinds"]) <= set(ctl.EVIDENCE_KINDS)
                used.update(ev["kinds"])
            else:
                assert ev["mode"] == "human-owned" and ev["why"].strip()
                assert set(ev.get("supporting", [])) <= set(ctl.EVIDENCE_KINDS)
    assert used == set(ctl.EVIDENCE_KINDS)
    for human in ("CC1.1", "CC1.2", "CC1.4", "CC6.4"):
        assert next(c for c in ctl.load("soc2")["controls"] if c["id"] == human)["evidence"]["mode"] == "human-owned"


def test_evidence_and_coverage_for_a_clean_agent(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("ARX_HOME", str(workspace / "no-state"))
    report = run([Path("agents/triage")], manifest_file=Path("manifests/triage-cs-01.yaml"), workers=1)
    statuses = {k: e.status for k, e in report.evidence.items()}
    absent = {"evidence.pinned", "runtime.registered", "runtime.audit-chain", "runtime.approval-gates"}
    assert statuses == {k: ("absent" if k in absent else "pass") for k in ctl.EVIDENCE_KINDS}
    expected = []
    for fw in ctl.FRAMEWORKS:
        rows = ctl.load(fw)["controls"]
        auto = [c for c in rows if c["evidence"]["mode"] == "automated"]
        ok = sum(1 for c in auto if all(statuses[k] == "pass" for k in c["evidence"]["kinds"]))
        expected.append((fw, len(rows), ok, len(rows) - len(auto)))
    assert [(c.framework, c.total, c.evidenced, c.human_owned) for c in report.coverage] == expected
    assert [c.sentence for c in report.coverage] == [
        "13 of 61 SOC 2 criteria evidenced automatically from this agent; 41 human-owned; 7 without evidence",
        "7 of 72 NIST AI RMF subcategories evidenced automatically from this agent; 59 human-owned; "
        "6 without evidence",
        "5 of 38 ISO/IEC 42001 Annex A controls evidenced automatically from this agent; 31 human-owned; "
        "2 without evidence",
    ]


def test_undeclared_connector_fails_the_controls_it_backs(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("ARX_HOME", str(workspace / "no-state"))
    report = run([Path("agents/cloud-posture")], manifest_file=Path("manifests/cloud-posture-remediation.yaml"),
                 workers=1)
    assert report.graph.undeclared == [{
        "connector": "pagerduty", "action": "pagerduty.event.trigger", "operation": "write",
        "reason": "connector 'pagerduty' is not declared in the manifest",
        "locations": [{"path": "agents/cloud-posture/remediate.py", "start_line": 72, "end_line": 76}],
    }]
    assert report.graph.unused == []
    cc61 = next(c for c in report.controls if (c.framework, c.id) == ("soc2", "CC6.1"))
    assert cc61.status == "failing"
    assert [(e.kind, e.status) for e in cc61.evidence] == [
        ("graph.declared-match", "fail"), ("runtime.manifest-enforced", "pass"), ("code.no-hardcoded-secrets", "pass")]
    assert report.evidence["container.hardened"].detail == "1 problem(s): agents/cloud-posture/Dockerfile:1"


def test_unused_declarations_point_into_the_manifest(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("ARX_HOME", str(workspace / "no-state"))
    path = workspace / "manifests/triage-cs-01.yaml"
    path.write_text(path.read_text().replace("        - slack.chat.post\n",
                                             "        - slack.chat.post\n        - slack.files.upload\n"))
    report = run([Path("agents/triage")], manifest_file=Path("manifests/triage-cs-01.yaml"), workers=1)
    (unused,) = [f for f in report.findings if f.rule_id == "ARXA201"]
    assert (unused.path, unused.start_line, unused.start_col, unused.end_line, unused.end_col, unused.severity) == (
        "manifests/triage-cs-01.yaml", 25, 11, 25, 29, "info")
    assert report.graph.unused == [{"connector": "slack", "action": "slack.files.upload"}]
    assert report.evidence["graph.least-privilege"].status == "fail"


def test_runtime_evidence_from_the_registry(workspace: Path, cli) -> None:
    result = cli("register", str(workspace / "manifests"), str(workspace / "policies"))
    assert result.exit_code == 0, result.output
    report = run([workspace / "agents/triage"], agent="triage-cs-01", workers=1)
    assert report.manifest is not None and report.manifest.version == 1
    runtime = {k: (e.status, e.detail) for k, e in report.evidence.items() if k.startswith("runtime.")}
    assert runtime == {
        "runtime.manifest-enforced": ("pass", "4 declared action(s); anything else is denied with reason "
                                              "not-in-manifest"),
        "runtime.drift-policy": ("pass", "low: alert, medium: throttle, high: suspend, critical: suspend"),
        "runtime.registered": ("pass", "version 1, active"),
        "runtime.audit-chain": ("pass", "1 chain record(s) for this agent"),
        "runtime.approval-gates": ("pass", "approval required for: servicenow.change.close"),
    }


@pytest.mark.parametrize(("agent", "manifest", "tier", "reasons"), [
    ("pr-reviewer", "pr-reviewer.yaml", "transparency",
     ["calls anthropic and reaches people through github.issues.comment, github.pulls.review"]),
    ("triage", "triage-cs-01.yaml", "minimal", ["no Annex III area declared and no Art. 50 trigger found"]),
])
def test_eu_ai_act_tier(workspace: Path, monkeypatch: pytest.MonkeyPatch, agent: str, manifest: str, tier: str,
                        reasons: list[str]) -> None:
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("ARX_HOME", str(workspace / "no-state"))
    report = run([Path("agents") / agent], manifest_file=Path("manifests") / manifest, workers=1)
    assert (report.eu_ai_act["tier"], report.eu_ai_act["derived_from"], report.eu_ai_act["provisional"]) == (
        tier, reasons, False)


def test_eu_ai_act_annex_iii_use_case_is_high_risk() -> None:
    from arxctl.analyze.graph import Manifest

    m = Manifest("hr", {"spec": {"euAiAct": {"useCase": "employment", "profilesPeople": True}}})
    result = ctl.classify_eu_ai_act(m, ["slack.chat.post"])
    assert (result["tier"], result["derived_from"]) == ("high-risk", [
        "Annex III area declared: employment (Recruitment, selection, promotion, termination, task allocation and "
        "monitoring of workers)", "profiles people, so no Art. 6(3) exemption applies"])
    assert ctl.classify_eu_ai_act(None, [])["provisional"] is True
