"""Every call, answered or not, lands in the audit chain as one `llm.chat` record without the prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from arxctl.chain import store as chain
from arxctl.chain.verify import verify_lines
from arxctl.router import LLMRefusal, Router
from arxctl.store.sqlite import Store
from tests.router import fakes
from tests.router.conftest import make_config
from tests.router.fakes import FakeProvider

SECRET_PROMPT = "Customer SSN is 078-05-1120; close CHG0031"


def test_calls_are_appended_to_the_chain_and_it_still_verifies(
    tmp_path: Path, anthropic: FakeProvider, openai: FakeProvider, keys: dict
) -> None:
    anthropic.then(fakes.error(529, "overloaded_error", "Overloaded"), fakes.refusal())
    messages = [{"role": "user", "content": SECRET_PROMPT}]
    with Store(tmp_path / "state") as store:
        with Router.from_config(make_config(anthropic, openai), store=store) as router:
            assert router.chat(messages, agent="triage-cs-01", session="s-9").provider == "openai"
            with pytest.raises(LLMRefusal):
                router.chat(messages, agent="triage-cs-01", actor="dana")
        records = chain.tail(store.conn, 10)
        lines = list(chain.iter_lines(store.conn))
    assert [(r.seq, r.type, r.agent, r.actor) for r in records] == [
        (1, "llm.chat", "triage-cs-01", "triage-cs-01"), (2, "llm.chat", "triage-cs-01", "dana")]
    assert [(r.body["outcome"], r.body["provider_used"], r.body["failover_hops"]) for r in records] == [
        ("ok", "openai", 1), ("refused", None, 0)]
    assert records[0].body["session"] == "s-9"
    assert verify_lines(lines).problems == []
    assert all(SECRET_PROMPT not in line and "078-05-1120" not in line for line in lines)
    assert records[0].body["prompt_digest"] == records[1].body["prompt_digest"]
