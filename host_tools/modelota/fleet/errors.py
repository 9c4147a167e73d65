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
    """A refused request: HTTP status, short name and one-line message."""

    def __init__(self, http: int, name: str, message: str) -> None:
        super().__init__(message)
        self.http = http
        self.name = name
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.name, "message": self.message}


def check_id(kind: str, value: str) -> str:
    """Ids go into SQL parameters and file names: refuse anything else than
    the documented alphabet (no '/', no leading '.', no NUL...)."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise FleetError(400, "BadId", f"{kind} id must match [A-Za-z0-9._:-]{{1,64}}")
    return value


def parse_u32(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise FleetError(400, "BadRequest", f"{name} must be an integer 0..{U32_MAX}")
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 10:
            raise FleetError(400, "BadRequest", f"{name} must be an integer 0..{U32_MAX}")
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise FleetError(400, "BadRequest", f"{name} must be an integer 0..{U32_MAX}")
    return value
