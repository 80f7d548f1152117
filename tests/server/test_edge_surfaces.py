"""The account surface, /metrics and the admin API as a hostile web page or a keyless local process meets
them (issue 17, findings 1, 2, 3 and 10's Host parsing)."""

from __future__ import annotations

import base64
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.account.api import PREFIX
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

CLIENT_KEY = "client-" + "k3Y" * 6
ADMIN_KEY = "admin-" + "Adm" * 6
ACCOUNT_GETS = (f"{PREFIX}/status", f"{PREFIX}/usage", f"{PREFIX}/models", "/api/llm/providers", "/account",
                "/metrics", "/backend-api/wham/usage")


@pytest.fixture
def serve(proxy_settings, mock_codex):
    threads = []

    def start(**changes) -> str:
        settings = replace(proxy_settings, auth_base_url=mock_codex.url, **changes)
        thread = ServerThread(create_app(settings)).start()
        threads.append(thread)
        return thread.url
    yield start
    for thread in threads:
        thread.stop()


def post(url: str, body: dict | None = None, **headers) -> httpx.Response:
    return httpx.post(url, content=orjson.dumps(body or {}), headers={"content-type": "application/json", **headers})


def test_an_allow_all_origin_list_does_not_open_the_account_surface_to_other_sites(serve, mock_codex, auth_path):
    url = serve(allowed_origins=("*",))
    evil = {"origin": "https://evil.example"}
    for path in ACCOUNT_GETS:
        response = httpx.get(f"{url}{path}", headers=evil)
        assert response.status_code == 403, path
        assert "access-control-allow-origin" not in response.headers
    for path in ("device/start", "logout"):
        assert post(f"{url}{PREFIX}/{path}", **evil).status_code == 403
    preflight = httpx.options(f"{url}{PREFIX}/device/poll", headers={**evil, "access-control-request-method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert mock_codex.state.auth.devices == {}  # no login was started for the page
    assert httpx.get(f"{url}{PREFIX}/status").json()["connected"] is True  # and the login is still there
    # The page subrelay serves itself still works, and the model API keeps the list's CORS.
    assert httpx.get(f"{url}{PREFIX}/status", headers={"origin": url}).status_code == 200
    models = httpx.get(f"{url}/v1/models", headers=evil)
    assert models.status_code == 200 and models.headers["access-control-allow-origin"] == "https://evil.example"


def test_client_keys_guard_the_account_surface_on_loopback_too(serve, auth_path):
    url = serve(api_keys=(CLIENT_KEY,))
    for path in ACCOUNT_GETS:
        response = httpx.get(f"{url}{path}")
        assert response.status_code == 401, path
        assert response.json()["error"]["type"] == "authentication_error"
    assert post(f"{url}{PREFIX}/logout").status_code == 401
    assert post(f"{url}{PREFIX}/device/start").status_code == 401
    assert httpx.get(f"{url}{PREFIX}/status").status_code == 401
    # The login survived the keyless logout, and a client key opens the surface of its login.
    bearer = {"authorization": f"Bearer {CLIENT_KEY}"}
    assert httpx.get(f"{url}{PREFIX}/status", headers=bearer).json()["connected"] is True
    assert httpx.get(f"{url}/metrics", headers=bearer).status_code == 200
    # A browser opening /account is asked for the key, and sends it with the page's own calls.
    assert httpx.get(f"{url}/account").headers["www-authenticate"].startswith("Basic")
    basic = {"authorization": "Basic " + base64.b64encode(f"me:{CLIENT_KEY}".encode()).decode()}
    assert httpx.get(f"{url}/account", headers=basic).status_code == 200
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_with_an_admin_key_the_account_surface_needs_it(serve, auth_path):
    url = serve(api_keys=(CLIENT_KEY,), admin_key=ADMIN_KEY)
    assert httpx.get(f"{url}{PREFIX}/status").status_code == 401
    client = httpx.get(f"{url}{PREFIX}/status", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert client.status_code == 403 and client.json()["error"]["code"] == "admin_key_required"
    assert httpx.get(f"{url}{PREFIX}/status", headers={"x-admin-key": ADMIN_KEY}).status_code == 200
    assert httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    # The admin key is not a client key for the model API.
    assert httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 401


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_cross_site_fetches_without_an_origin_never_reach_the_account_surface(serve, mock_codex, auth_path, site):
    url = serve()
    for path in ACCOUNT_GETS:  # what an <img src> on another site sends
        response = httpx.get(f"{url}{path}", headers={"sec-fetch-site": site, "sec-fetch-mode": "no-cors"})
        assert response.status_code == 403, path
    assert mock_codex.state.auth.usage_calls == 0  # nobody's page made subrelay poll the vendor
    assert httpx.get(f"{url}{PREFIX}/status", headers={"sec-fetch-site": "same-origin"}).status_code == 200
    assert httpx.get(f"{url}/account", headers={"sec-fetch-site": "none"}).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1:80@evil.example", "[::1]evil.example", "localhost:8787/x",
                                  "127.0.0.1:80:81", "[::1]:80@evil.example"])
def test_host_headers_are_parsed_strictly(serve, host):
    url = serve()
    response = httpx.get(f"{url}/v1/models", headers={"host": host})
    # Not host[:port] at all: a 400 before any other check (issue 25 #9), not a foreign name's 403.
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_host"
    for good in ("127.0.0.1:8787", "localhost", "[::1]:8787", "LOCALHOST:1"):
        assert httpx.get(f"{url}/v1/models", headers={"host": good}).status_code == 200, good
