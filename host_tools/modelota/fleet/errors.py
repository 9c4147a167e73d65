"""Refusals of the fleet server and the checks of what a request names.

Shared by the database layer (db.py, rollout_store.py) and the server: an id
or a number is checked once, with the same message, wherever it comes in.
"""

from __future__ import annotations

import re
from typing import Any

ID_RE = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,63}")
U32_MAX = 0xFFFFFFFF


class FleetError(Exception):
    """A refused request: HTTP status, short name and one-line message
    (``retry_after``: seconds, for a 429 or 503; ``headers``: extra response
    headers, such as WWW-Authenticate)."""

    def __init__(
        self, http: int, name: str, message: str, retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.http = http
        self.name = name
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        return {"error": self.name, "message": self.message}


def check_id(kind: str, value: str) -> str:
    """Ids go into SQL parameters and file names: refuse anything else than
    the documented alphabet (no '/', no leading '.', no NUL...)."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise FleetError(400, "BadId", f"{kind} id must match [A-Za-z0-9._:-]{{1,64}}")
    return value


def check_text(name: str, value: Any, limit: int) -> str | None:
    """A free-text field as stored: None, or a string of valid UTF-8 (no lone
    surrogate) without NUL, cut to ``limit`` characters; else 400."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise FleetError(400, "BadRequest", f"{name} must be a string")
    if "\x00" in value:
        raise FleetError(400, "BadText", f"{name} must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FleetError(400, "BadText", f"{name} is not valid Unicode (lone surrogate)") from None
    return value[:limit]


def parse_u32(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise FleetError(400, "BadRequest", f"{name} must be an integer 0..{U32_MAX}")
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 10:
            raise FleetError(400, "BadRequest", f"{name} must be an integer 0..{U32_MAX}")
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise FleetError(400, "BadRequest", f"{name} must be an integer 0..{U32_MAX}")
    return value
