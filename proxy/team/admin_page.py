"""The admin page (``/admin``): static HTML, one script and one style sheet, all served from here.

The page holds nothing: it asks for the admin key (kept in the tab's sessionStorage) and reads
everything from the admin API, so it may be served to anyone who reaches the port. The CSP allows
this origin's own script and styles only (no inline script, nothing from elsewhere), and the page
cannot be framed.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PAGE = "/admin"
ASSETS = {"/admin/admin.js": ("admin.js", "text/javascript"), "/admin/ledger.js": ("ledger.js", "text/javascript"),
          "/admin/admin.css": ("admin.css", "text/css")}
PATHS = (PAGE, *ASSETS)  # what the edge lets through without a key: files that hold no data
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_HEADERS = {"content-security-policy": _CSP, "x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "no-referrer", "cache-control": "no-store"}


@lru_cache(maxsize=4)
def _file(name: str) -> bytes:
    return resources.files("proxy.team").joinpath(f"static/{name}").read_bytes()


async def admin_page(request: Request) -> Response:
    return Response(_file("admin.html"), media_type="text/html", headers=_HEADERS)


async def admin_asset(request: Request) -> Response:
    name, media = ASSETS[request.url.path]
    return Response(_file(name), media_type=media, headers=_HEADERS)


def routes() -> list[Route]:
    return [Route(PAGE, admin_page, methods=["GET"]),
            *(Route(path, admin_asset, methods=["GET"]) for path in ASSETS)]
