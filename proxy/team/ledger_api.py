"""Reading the request ledger and the audit log over HTTP.

- ``GET /api/admin/requests`` and ``GET /api/admin/audit`` (the admin key): a page, newest first, with
  filters and a cursor (``next_cursor``), or with ``format=csv`` / ``format=jsonl`` every matching entry as
  a download that ``subrelay ledger verify`` checks.
- ``GET /api/llm/requests``: the caller's *own* requests (a team member's key; the person filter is theirs,
  whatever the query says, so nobody reads another's), for the account page.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.errors import PermissionDenied, ServiceUnavailable
from proxy.hub.caller import CALLER
from proxy.hub.json_response import json_response
from proxy.state.ledger import LedgerStore
from proxy.state.team import StoreError
from proxy.team.admin_api import PREFIX, admin, team_of
from proxy.team.ledger_query import export, parse_query, parse_time

OWN_REQUESTS = "/api/llm/requests"
_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


async def _ledger(request: Request) -> LedgerStore | None:
    team = await team_of(request)
    if team is not None:
        return team.ledger
    gate = getattr(request.app.state.subrelay, "gate", None)
    return getattr(gate, "_ledger_store", None)  # SUBRELAY_LEDGER=on without team mode


async def _answer(request: Request, log: str, params: dict[str, str]) -> Response:
    query, form = parse_query(log, params)
    store = await _ledger(request)
    if store is None:
        return json_response({"object": "list", "data": [], "next_cursor": None})
    gate = getattr(request.app.state.subrelay, "gate", None)
    if log == "requests" and getattr(gate, "ledger", None) is not None:
        await gate.ledger.flush()  # what this process answered a moment ago is in the answer too
    if form != "json":
        name = f"subrelay-{log}.{form}"
        return StreamingResponse(_guarded(export(store, log, query, form)), media_type=_MEDIA[form],
                                 headers={"content-disposition": f'attachment; filename="{name}"',
                                          "cache-control": "no-store"})
    page = await store.page(log, query)
    return json_response({"object": "list", "data": page.entries, "next_cursor": page.next_cursor})


async def _guarded(chunks):
    try:
        async for chunk in chunks:
            yield chunk
    except StoreError:  # the download ends short; the verifier will say the export is incomplete
        return


@admin
async def requests(request: Request) -> Response:
    return await _answer(request, "requests", dict(request.query_params))


@admin
async def audit(request: Request) -> Response:
    return await _answer(request, "audit", dict(request.query_params))


async def own_requests(request: Request) -> Response:
    """A member's own requests: the person filter is the caller's, never a parameter."""
    caller = CALLER.get()
    if caller.kind != "user":
        state = request.app.state.subrelay
        state.admin.check(request)
    params = dict(request.query_params)
    if "person" in params and params["person"] != caller.person:
        raise PermissionDenied("You can see your own requests only.", code="not_your_requests")
    params["person"] = caller.person
    if caller.kind == "user" and caller.since:  # never an earlier person's of the same name
        asked = parse_time("since", params.get("since"))
        params["since"] = repr(max(asked or 0.0, caller.since))
    try:
        return await _answer(request, "requests", params)
    except StoreError as exc:
        raise ServiceUnavailable(f"subrelay's ledger is not answering ({exc}); try again shortly.",
                                 code="state_store_unavailable") from None


def routes() -> list[Route]:
    return [Route(f"{PREFIX}/requests", requests, methods=["GET"]),
            Route(f"{PREFIX}/audit", audit, methods=["GET"]),
            Route(OWN_REQUESTS, own_requests, methods=["GET"])]
