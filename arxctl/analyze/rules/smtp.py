"""Outbound e-mail through smtplib and aiosmtplib."""

from __future__ import annotations

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Obj, known_text, obj

RULE_ID = "ARXA112"
DESCRIPTION = "SMTP call: login, sendmail/send_message and verify map to smtp.*"
FAMILIES = ("smtp",)
MODULES = ("smtplib", "aiosmtplib")
ENTRY = ("smtplib.SMTP", "smtplib.SMTP_SSL", "smtplib.LMTP", "aiosmtplib.SMTP", "aiosmtplib.send")
_METHODS = {"login": "connection.login", "sendmail": "mail.send", "send_message": "mail.send",
            "verify": "mail.verify"}


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    if qname == "aiosmtplib.send":
        if call is None:
            return None
        return None, [hit(RULE_ID, call, "smtp", "smtp.mail.send", "aiosmtplib.send sends mail")]
    host = known_text(ctx.arg_value(call, 0, "host")) if call is not None else None
    return obj("smtp", "conn", host=host), []


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    action = _METHODS.get(name)
    if action is None:
        return None
    return None, [hit(RULE_ID, call, "smtp", f"smtp.{action}", f"smtplib {name}", host=o.get("host"))]
