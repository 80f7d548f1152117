"""Reading (never verifying) the claims of a JWT: the upstream verifies, we only need ``exp``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson


def jwt_claims(token: str | None) -> dict[str, Any]:
    """The payload of ``token`` as a dict, or ``{}`` when it is not a readable JWT."""
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = orjson.loads(decoded)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str | None) -> float | None:
    """The ``exp`` claim (epoch seconds) of ``token``, or None when it has none."""
    exp = jwt_claims(token).get("exp")
    return float(exp) if isinstance(exp, (int, float)) else None
