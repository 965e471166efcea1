"""JSON given on the command line, inline or as `@file`, with errors that name the line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from arxctl.errors import InputError


def read_json_argument(text: str, option: str, what: str) -> Any:
    """Parse `text` as JSON, or the file named by `@path`; `option` and `what` word the errors."""
    source = option
    if text.startswith("@"):
        path = Path(text[1:])
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the {what}: {exc}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}:{exc.colno}: {what} is not valid JSON: {exc.msg}") from None
