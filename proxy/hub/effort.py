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
