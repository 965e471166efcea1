"""Compiling policies: the action index, glob matching, revisions and narrowing of CEL variables."""

from __future__ import annotations

import cel
from hypothesis import given, settings
from hypothesis import strategies as st

from arxctl.canonical import digest
from arxctl.policy.compiler import accessed_keys, compile_policies, merge_fields, revision
from arxctl.policy.risk import RiskModel
from tests.policy.helpers import approve, deny, policy

DOCS = [
    policy("b", deny("exact", "aws.s3.delete_object"), approve("glob", "aws.s3.*", "payload.n > 1"),
           thresholds={"review": 50, "deny": 70}),
    policy("a", deny("everything", "*"), approve("other", "slack.chat.post"), selector={"env": "prod"}),
]


def test_rules_are_indexed_by_action_and_glob() -> None:
    compiled = compile_policies(DOCS)
    assert [r.ref for r in compiled.rules_for("aws.s3.delete_object")] == ["a/everything", "b/exact", "b/glob"]
    assert [r.ref for r in compiled.rules_for("aws.s3.get_object")] == ["a/everything", "b/glob"]
    assert [r.ref for r in compiled.rules_for("slack.chat.post")] == ["a/everything", "a/other"]
    assert sorted(compiled.exact) == ["aws.s3.delete_object", "slack.chat.post"]
    assert [rule.ref for _, rule in compiled.globs] == ["a/everything", "b/glob"]
    assert compiled.rule_count() == 4


def test_candidates_respect_selectors() -> None:
    compiled = compile_policies(DOCS)
    prod = compiled.candidates("aws.s3.get_object", (("env", "prod"),))
    dev = compiled.candidates("aws.s3.get_object", (("env", "dev"),))
    assert [r.ref for r in prod.rules] == ["a/everything", "b/glob"]
    assert [r.ref for r in dev.rules] == ["b/glob"]
    assert (dev.fields, dev.dynamic) == ((("payload", frozenset({"n"})),), 1)
    assert compiled.applicable((("env", "prod"),)) == (frozenset({"a", "b"}), 50, 70)
    assert compiled.applicable(()) == (frozenset({"b"}), 50, 70)


def test_revision_ignores_order_but_not_content() -> None:
    base = compile_policies(DOCS).revision
    reordered = [DOCS[1], {**DOCS[0], "spec": {**DOCS[0]["spec"], "rules": DOCS[0]["spec"]["rules"][::-1]}}]
    assert compile_policies(reordered).revision == base
    changed = [DOCS[0], policy("a", deny("everything", "*"))]
    assert compile_policies(changed).revision != base
    assert compile_policies(DOCS, RiskModel.from_dict({"target": {"prod": 21}})).revision != base
    items = [["a", {**DOCS[1]["spec"], "rules": sorted(DOCS[1]["spec"]["rules"], key=lambda r: r["name"])}],
             ["b", {**DOCS[0]["spec"], "rules": sorted(DOCS[0]["spec"]["rules"], key=lambda r: r["name"])}]]
    assert base == digest({"policies": items, "risk_model": RiskModel().to_dict()})
    assert base == revision([("a", DOCS[1]["spec"]), ("b", DOCS[0]["spec"])], RiskModel())


def test_compile_errors_are_kept_not_raised() -> None:
    compiled = compile_policies([policy("p", deny("broken", "x.y.z", "payload.x +"))])
    rule = compiled.rules_for("x.y.z")[0]
    assert rule.program is None
    assert rule.compile_error is not None and rule.compile_error.startswith("CEL does not compile: ")


def test_static_rules() -> None:
    compiled = compile_policies([policy("p", deny("s", "*", 'target.env == "prod" && agent.name == "x"'),
                                        deny("d", "*", "session.count > 3"), deny("n", "*"))])
    assert {r.name: r.static for r in compiled.rules_for("a.b.c")} == {"d": False, "n": False, "s": True}


def test_accessed_keys() -> None:
    assert accessed_keys("size(payload.change_ids) > 1", "payload") == frozenset({"change_ids"})
    assert accessed_keys('has(payload.acl) && payload.acl in ["x"]', "payload") == frozenset({"acl"})
    assert accessed_keys("payload . x == 1 && payload.y.z", "payload") == frozenset({"x", "y"})
    assert accessed_keys('payload["a"] == 1', "payload") is None
    assert accessed_keys('payload.exists(k, k == "a")', "payload") is None
    assert accessed_keys("size(payload) > 0", "payload") is None
    assert accessed_keys('"payload" == action', "payload") is None
    assert accessed_keys("my.payload == 1", "payload") == frozenset()
    assert merge_fields([(("payload", frozenset({"a"})),), (("payload", frozenset({"b"})), ("now", None))]) == (
        ("now", None), ("payload", frozenset({"a", "b"})))
    assert merge_fields([(("payload", frozenset({"a"})),), (("payload", None),)]) == (("payload", None),)


EXPRESSIONS = [
    "payload.a > 1", "has(payload.a) && payload.a > 1", "payload.b.c == 1", "size(payload) > 1", '"a" in payload',
    'payload.exists(k, k == "b")', "payload.a == 1 || payload.b.c == 2", "payload.a + payload.d > 2",
    'payload["a"] == 1', "has(payload.b.c)", "payload.a in [1, 2] && !has(payload.d)",
]
VALUES = st.one_of(st.integers(-3, 3), st.booleans(), st.dictionaries(st.sampled_from(["c", "x"]), st.integers(0, 3)))


def _outcome(program, payload) -> object:
    try:
        return program.execute({"payload": payload})
    except Exception as exc:
        return type(exc).__name__


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.dictionaries(st.sampled_from(["a", "b", "d", "e"]), VALUES))
def test_narrowing_never_changes_a_result(expression: str, payload: dict) -> None:
    program = cel.compile(expression)
    keys = accessed_keys(expression, "payload")
    narrowed = payload if keys is None else {k: payload[k] for k in keys if k in payload}
    assert _outcome(program, narrowed) == _outcome(program, payload)
