"""Provider wire formats: Anthropic Messages, OpenAI Chat Completions and OpenAI-compatible endpoints."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from arxctl.router.config import ProviderSpec
from arxctl.router.providers.anthropic import AnthropicProvider
from arxctl.router.providers.base import Params, Provider, StreamItem
from arxctl.router.providers.openai import OpenAICompatibleProvider, OpenAIProvider

KINDS: dict[str, type[Provider]] = {
    "anthropic": AnthropicProvider,
    "openai": OpenAIProvider,
    "openai-compatible": OpenAICompatibleProvider,
}


def make_provider(
    spec: ProviderSpec, *, env: Mapping[str, str] | None = None, transport: httpx.BaseTransport | None = None
) -> Provider:
    """The provider implementation for a spec's kind."""
    return KINDS[spec.kind](spec, env=env, transport=transport)


__all__ = ["KINDS", "Params", "Provider", "StreamItem", "make_provider"]
