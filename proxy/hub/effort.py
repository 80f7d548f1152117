"""A ceiling on the reasoning effort a request may ask for (a team member capped at ``high`` who asks
for ``xhigh`` is sent at ``high``): the neutral request and the client's own body (which same-format
upstreams forward) are both lowered, so every door and route sends the capped effort."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.hub.checks import REASONING_EFFORTS

_RANK = {effort: rank for rank, effort in enumerate((*REASONING_EFFORTS, "max"))}


def above(effort: Any, ceiling: str) -> bool:
    """Whether ``effort`` asks for more than ``ceiling`` (an unknown effort counts as above)."""
    return isinstance(effort, str) and _RANK.get(effort, len(_RANK)) > _RANK.get(ceiling, len(_RANK))


def cap_effort(request: Any, ceiling: str) -> str | None:
    """Lower ``request``'s reasoning effort to ``ceiling``; the effort it asked for when lowered, else None."""
    asked = getattr(request, "reasoning_effort", None)
    if not above(asked, ceiling):
        return None
    request.reasoning_effort = ceiling
    inbound = getattr(request, "inbound", None)
    body = getattr(inbound, "body", None)
    if isinstance(body, dict):
        changed = False
        if above(body.get("reasoning_effort"), ceiling):
            body["reasoning_effort"] = ceiling
            changed = True
        for holder in ("reasoning", "output_config"):  # Chat/Responses reasoning.effort, Messages output_config
            part = body.get(holder)
            if isinstance(part, dict) and above(part.get("effort"), ceiling):
                body[holder] = {**part, "effort": ceiling}
                changed = True
        if changed:
            inbound.raw = orjson.dumps(body)
    return asked


def lower_effort(request: Any, effort: str) -> bool:
    """Ask for at most ``effort``: capped when the request asks for more, set when it asks for none (the
    model's default may be higher). True when the request changed."""
    if cap_effort(request, effort) is not None:
        return True
    if getattr(request, "reasoning_effort", None) is not None:
        return False
    request.reasoning_effort = effort
    inbound = getattr(request, "inbound", None)
    body = getattr(inbound, "body", None)
    if isinstance(body, dict) and getattr(inbound, "format", "") in ("responses", "chat"):
        if inbound.format == "chat":
            body["reasoning_effort"] = effort
        else:
            reasoning = body.get("reasoning")
            body["reasoning"] = {**(reasoning if isinstance(reasoning, dict) else {}), "effort": effort}
        inbound.raw = orjson.dumps(body)
    return True
