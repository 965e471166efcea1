"""LLM providers through the anthropic and openai SDKs: resource paths like chat.completions.create."""

from __future__ import annotations

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Obj, obj

RULE_ID = "ARXA108"
DESCRIPTION = "LLM call through the anthropic or openai SDK: resource path maps to <provider>.<resource>.<verb>"
FAMILIES = ("llm",)
MODULES = ("anthropic", "openai")
ENTRY = (
    "anthropic.Anthropic", "anthropic.AsyncAnthropic", "anthropic.AnthropicBedrock", "anthropic.AnthropicVertex",
    "anthropic.AsyncAnthropicBedrock", "anthropic.AsyncAnthropicVertex", "openai",
)
_CLIENT_CLASSES = frozenset({
    "Anthropic", "AsyncAnthropic", "AnthropicBedrock", "AnthropicVertex", "AsyncAnthropicBedrock",
    "AsyncAnthropicVertex", "OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI",
})
_PASS_THROUGH = frozenset({"beta", "with_raw_response", "with_streaming_response"})

_ACTIONS: dict[str, dict[tuple[str, ...], str]] = {
    "anthropic": {
        ("messages", "create"): "messages.create", ("messages", "stream"): "messages.create",
        ("messages", "count_tokens"): "messages.count_tokens",
        ("messages", "batches", "create"): "batches.create", ("messages", "batches", "cancel"): "batches.cancel",
        ("messages", "batches", "retrieve"): "batches.read", ("messages", "batches", "list"): "batches.read",
        ("messages", "batches", "results"): "batches.results", ("messages", "batches", "delete"): "batches.delete",
        ("models", "list"): "models.list", ("models", "retrieve"): "models.read",
        ("files", "upload"): "files.upload", ("files", "list"): "files.list", ("files", "delete"): "files.delete",
        ("files", "download"): "files.download", ("files", "retrieve_metadata"): "files.list",
    },
    "openai": {
        ("chat", "completions", "create"): "chat.create", ("chat", "completions", "parse"): "chat.create",
        ("chat", "completions", "stream"): "chat.create", ("responses", "create"): "responses.create",
        ("responses", "stream"): "responses.create", ("responses", "parse"): "responses.create",
        ("completions", "create"): "completions.create", ("embeddings", "create"): "embeddings.create",
        ("moderations", "create"): "moderations.create", ("images", "generate"): "images.generate",
        ("images", "edit"): "images.generate", ("images", "create_variation"): "images.generate",
        ("audio", "transcriptions", "create"): "audio.transcribe",
        ("audio", "translations", "create"): "audio.transcribe", ("audio", "speech", "create"): "audio.synthesize",
        ("files", "create"): "files.upload", ("files", "delete"): "files.delete", ("files", "list"): "files.list",
        ("files", "retrieve"): "files.read", ("files", "content"): "files.read",
        ("batches", "create"): "batches.create", ("batches", "cancel"): "batches.cancel",
        ("batches", "retrieve"): "batches.read", ("batches", "list"): "batches.read",
        ("fine_tuning", "jobs", "create"): "fine_tuning.create",
        ("fine_tuning", "jobs", "cancel"): "fine_tuning.cancel",
        ("fine_tuning", "jobs", "retrieve"): "fine_tuning.read", ("fine_tuning", "jobs", "list"): "fine_tuning.read",
        ("models", "list"): "models.list", ("models", "retrieve"): "models.list", ("models", "delete"): "models.delete",
        ("vector_stores", "create"): "vector_stores.create", ("vector_stores", "delete"): "vector_stores.delete",
        ("vector_stores", "search"): "vector_stores.search",
        ("ChatCompletion", "create"): "chat.create", ("Completion", "create"): "completions.create",
        ("Embedding", "create"): "embeddings.create", ("Moderation", "create"): "moderations.create",
    },
}


def _call(node: cst.CSTNode, provider: str, path: tuple[str, ...]) -> Outcome:
    action = _ACTIONS[provider].get(path)
    full = f"{provider}.{action}" if action else f"{provider}.{path[0]}.{path[-1]}"
    return None, [hit(RULE_ID, node, provider, full, f"{provider} SDK {'.'.join(path)}")]


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    parts = qname.split(".")
    provider = parts[0]
    if parts[-1] in _CLIENT_CLASSES:
        return obj("llm", "client", provider=provider, path=()), []
    path = tuple(p for p in parts[1:] if p not in _PASS_THROUGH)
    if provider == "openai" and call is not None and path and path[-1] in ("create", "parse", "stream", "list",
                                                                           "retrieve", "delete", "generate",
                                                                           "cancel", "search", "content"):
        if path[0] in ("types", "lib", "resources", "_client"):
            return None
        return _call(call, provider, path)
    return None


def attribute(o: Obj, name: str, ctx: Ctx) -> Obj | None:
    if o.kind != "client" or name.startswith("_") or name in ("api_key", "base_url", "timeout", "max_retries"):
        return None
    if name in _PASS_THROUGH:
        return o
    return o.with_(path=(*o.get("path", ()), name))


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    if o.kind != "client":
        return None
    if name in ("with_options", "copy"):
        return o, []
    path = (*o.get("path", ()), name)
    if len(path) < 2 or name in ("close",):
        return None
    return _call(call, o.get("provider"), path)
