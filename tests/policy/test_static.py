"""ARX152: rules that can never change an outcome, reported by `validate` as warnings."""

from __future__ import annotations

from arxctl.resources.validation import check_text

HEADER = """apiVersion: arx.dev/v1alpha1
kind: Policy
metadata: {name: p}
spec:
"""


def _arx152(body: str) -> list[str]:
    report = check_text(HEADER + body, "p.yaml")
    return [d.render() for d in report.diagnostics if d.rule == "ARX152"]


def test_always_false_if() -> None:
    assert _arx152("""  rules:
    - name: never
      when: slack.chat.post
      if: 1 > 2
      then: {deny: {reason: x}}
""") == ["p.yaml:8:11: ARX152 [warning] $.spec.rules[0].if: the `if` is always false, so the rule never fires"]


def test_actions_already_denied_by_score() -> None:
    assert _arx152("""  thresholds: {review: 20, deny: 30}
  rules:
    - name: ask-deletes
      when: aws.s3.delete_*
      then:
        approvalRequired: {approvers: {group: g}}
    - name: ask-reads
      when: aws.s3.get_object
      then:
        approvalRequired: {approvers: {group: g}}
""") == [
        "p.yaml:8:13: ARX152 [warning] $.spec.rules[0].when: every action 'aws.s3.delete_*' matches scores at least "
        "30, already at the deny threshold 30: the rule can never change the verdict"
    ]


def test_approval_shadowed_by_unconditional_deny() -> None:
    assert _arx152("""  rules:
    - name: no-iam
      when: aws.iam.*
      then: {deny: {reason: identity team only}}
    - name: key-minting
      when: aws.iam.create_access_key
      then:
        approvalRequired: {approvers: {group: g}}
    - name: conditional-deny
      when: aws.s3.*
      if: payload.x == 1
      then: {deny: {reason: x}}
    - name: not-shadowed
      when: aws.s3.put_bucket_acl
      then:
        approvalRequired: {approvers: {group: g}}
""") == [
        "p.yaml:12:9: ARX152 [warning] $.spec.rules[1].then: rule 'no-iam' denies every action this rule matches, "
        "unconditionally: the approval is never asked for"
    ]


def test_examples_have_no_arx152() -> None:
    from pathlib import Path

    from arxctl.resources.validation import check_paths

    root = Path(__file__).resolve().parents[2] / "examples" / "policies"
    assert [d.render() for d in check_paths([root]).diagnostics] == []
