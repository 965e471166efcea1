"""Slack through slack_sdk (WebClient, AsyncWebClient, WebhookClient) and slack_bolt apps."""

from __future__ import annotations

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit, snake
from arxctl.analyze.values import Obj, obj

RULE_ID = "ARXA103"
DESCRIPTION = "Slack call through slack_sdk: Web API method maps to slack.<resource>.<verb>"
FAMILIES = ("slack",)
MODULES = ("slack_sdk", "slack", "slack_bolt")
ENTRY = (
    "slack_sdk.WebClient", "slack_sdk.web.WebClient", "slack_sdk.web.client.WebClient",
    "slack_sdk.web.async_client.AsyncWebClient", "slack_sdk.web.AsyncWebClient", "slack_sdk.AsyncWebClient",
    "slack_sdk.webhook.WebhookClient", "slack_sdk.webhook.client.WebhookClient",
    "slack_sdk.webhook.async_client.AsyncWebhookClient", "slack.WebClient", "slack_bolt.App",
    "slack_bolt.async_app.AsyncApp", "slack_bolt.AsyncApp",
)

# Slack Web API method -> catalog action (resource.verb); None for calls that act on nothing.
WEB_API: dict[str, str | None] = {
    "chat.postMessage": "chat.post", "chat.meMessage": "chat.post", "chat.postEphemeral": "chat.post_ephemeral",
    "chat.update": "chat.update", "chat.delete": "chat.delete", "chat.scheduleMessage": "chat.schedule",
    "conversations.history": "conversations.history", "conversations.replies": "conversations.replies",
    "conversations.info": "conversations.read", "conversations.list": "conversations.read",
    "conversations.members": "conversations.read", "conversations.create": "conversations.create",
    "conversations.open": "conversations.create", "conversations.archive": "conversations.archive",
    "conversations.invite": "conversations.invite", "conversations.kick": "conversations.kick",
    "files.upload": "files.upload", "files.uploadV2": "files.upload", "files.getUploadURLExternal": "files.upload",
    "files.completeUploadExternal": "files.upload", "files.delete": "files.delete", "files.info": "files.read",
    "files.list": "files.read", "pins.add": "pins.add", "reactions.add": "reactions.add",
    "reactions.remove": "reactions.remove", "search.messages": "search.messages", "users.info": "users.read",
    "users.list": "users.read", "users.lookupByEmail": "users.lookup", "auth.test": None,
}


def web_api_action(api_method: str) -> str | None:
    """`chat.postMessage` -> `slack.chat.post`; unknown methods keep their own name (`slack.admin.users_remove`)."""
    if api_method in WEB_API:
        mapped = WEB_API[api_method]
        return None if mapped is None else f"slack.{mapped}"
    group, _, rest = api_method.partition(".")
    return f"slack.{group}.{snake(rest).replace('.', '_')}" if rest else f"slack.{group}.call"


def _sdk_to_api(name: str) -> str:
    return name.replace("_v2", "V2").replace("_", ".")


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    last = qname.rsplit(".", 1)[-1]
    if last in ("WebClient", "AsyncWebClient"):
        return obj("slack", "client"), []
    if last in ("WebhookClient", "AsyncWebhookClient"):
        return obj("slack", "webhook"), []
    if last in ("App", "AsyncApp"):
        return obj("slack", "app"), []
    return None


def _slack(node: cst.CSTNode, api_method: str) -> Outcome:
    action = web_api_action(api_method)
    if action is None:
        return None, []
    return None, [hit(RULE_ID, node, "slack", action, f"slack_sdk calls Slack {api_method}", method=api_method)]


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    if o.kind == "client":
        if name == "api_call":
            m = ctx.arg_string(call, 0, "api_method")
            return _slack(call, m.known if m is not None and m.known else "unresolved.call")
        if name.startswith("_") or name in ("close", "headers", "token"):
            return None
        return _slack(call, _sdk_to_api(name))
    if o.kind == "webhook" and name in ("send", "send_dict"):
        return None, [hit(RULE_ID, call, "slack", "slack.chat.post", "slack_sdk webhook posts a message",
                          method="incoming-webhook")]
    return None


def attribute(o: Obj, name: str, ctx: Ctx) -> Obj | None:
    if o.kind == "app" and name == "client":
        return obj("slack", "client")
    return None
