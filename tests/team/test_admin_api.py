"""The admin API as an operator's script uses it: over HTTP against a running proxy."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.server.app import create_app
from proxy.state.team import StoredLogin, UsageRow
from proxy.team.secretbox import SecretBox, load_keys
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY, in_store

HEADERS = {"x-admin-key": ADMIN_KEY}


def client(proxy, headers=HEADERS) -> httpx.Client:
    return httpx.Client(base_url=proxy.url, headers=headers, timeout=10)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def add(api: httpx.Client, name: str, **fields) -> dict:
    response = api.post("/api/admin/users", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


ENDPOINTS = [("GET", "/api/admin/users"), ("POST", "/api/admin/users"), ("GET", "/api/admin/users/alice"),
             ("PATCH", "/api/admin/users/alice"), ("DELETE", "/api/admin/users/alice"),
             ("POST", "/api/admin/users/alice/rotate-key"), ("GET", "/api/admin/usage")]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_without_an_admin_key_set_the_admin_api_is_off_even_on_loopback(proxy_settings, state_dir, method, path):
    settings = replace(proxy_settings, admin_key=None, env={"SUBRELAY_STATE_DIR": str(state_dir)})
    with ServerThread(create_app(settings)) as proxy, client(proxy, {"x-admin-key": "anything"}) as api:
        response = api.request(method, path, json={"name": "alice"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "admin_key_required"
    assert not state_dir.exists()  # nothing was created


@pytest.mark.parametrize("headers", [{}, {"x-admin-key": "wrong"}, {"authorization": "Bearer wrong"},
                                     {"authorization": f"Basic {ADMIN_KEY}"}, {"x-admin-key": ADMIN_KEY[:-1]}])
def test_a_missing_or_wrong_admin_key_is_refused(admin_proxy, headers):
    with client(admin_proxy, headers) as api:
        for method, path in ENDPOINTS:
            response = api.request(method, path, json={"name": "alice"})
            assert response.status_code == 401, (method, path, response.text)
            assert error_of(response)["code"] == "invalid_admin_key"


def test_the_admin_key_works_as_a_bearer_token_too(admin_proxy):
    with client(admin_proxy, {"authorization": f"Bearer {ADMIN_KEY}"}) as api:
        assert api.get("/api/admin/users").json() == {"object": "list", "data": []}


def test_adding_a_user_creates_the_store_and_shows_the_key_once(admin_proxy, state_dir):
    assert not (state_dir / "team.sqlite3").exists()
    with client(admin_proxy) as api:
        made = add(api, "alice", models=["gpt-5*"], rpm=10, tpm=20000, daily_tokens=10**6, fallback=True)
        assert made["key"].startswith("srk_") and len(made["key"]) > 40
        assert made["key_id"] == hashlib.sha256(made["key"].encode()).hexdigest()[:12]
        assert (made["name"], made["models"], made["rpm"], made["tpm"], made["daily_tokens"], made["fallback"],
                made["disabled"], made["login"]) == ("alice", ["gpt-5*"], 10, 20000, 10**6, True, False, None)
        listed = api.get("/api/admin/users")
        shown = api.get("/api/admin/users/alice")
    assert [user["name"] for user in listed.json()["data"]] == ["alice"]
    for answer in (listed, shown):
        assert made["key"] not in answer.text and "key_hash" not in answer.text and '"key"' not in answer.text
    assert shown.json()["key_id"] == made["key_id"]
    assert (state_dir / "team.sqlite3").stat().st_mode & 0o777 == 0o600


def test_disable_enable_change_limits_rotate_and_remove(admin_proxy):
    with client(admin_proxy) as api:
        made = add(api, "bob")
        disabled = api.patch("/api/admin/users/bob", json={"disabled": True})
        assert disabled.status_code == 200 and disabled.json()["disabled"] is True
        assert api.get("/api/admin/users/bob").json()["disabled"] is True
        changed = api.patch("/api/admin/users/bob", json={"disabled": False, "rpm": 5, "models": ["claude-*"]}).json()
        assert (changed["disabled"], changed["rpm"], changed["models"]) == (False, 5, ["claude-*"])
        assert api.patch("/api/admin/users/bob", json={"rpm": None}).json()["rpm"] is None
        rotated = api.post("/api/admin/users/bob/rotate-key", json={})  # POSTs are JSON (the edge)
        assert rotated.status_code == 200
        assert rotated.json()["key"] != made["key"] and rotated.json()["key_id"] != made["key_id"]
        assert api.get("/api/admin/users/bob").json()["key_id"] == rotated.json()["key_id"]
        removed = api.delete("/api/admin/users/bob")
        assert removed.status_code == 200 and removed.json()["deleted"] is True
        assert api.get("/api/admin/users/bob").status_code == 404
        gone = api.delete("/api/admin/users/bob")
        assert gone.status_code == 404 and error_of(gone)["code"] == "user_not_found"


@pytest.mark.parametrize("body,param,code", [
    ({"name": "Alice"}, "name", "invalid_name"),
    ({"name": ""}, "name", "invalid_name"),
    ({"name": "a/b"}, "name", "invalid_name"),
    ({"name": "x" * 64}, "name", "invalid_name"),
    ({}, "name", "invalid_name"),
    ({"name": 7}, "name", "invalid_name"),
    ({"name": "carol", "rpm": 0}, "rpm", "invalid_limit"),
    ({"name": "carol", "rpm": -1}, "rpm", "invalid_limit"),
    ({"name": "carol", "tpm": "100"}, "tpm", "invalid_limit"),
    ({"name": "carol", "daily_tokens": 1.5}, "daily_tokens", "invalid_limit"),
    ({"name": "carol", "rpm": True}, "rpm", "invalid_limit"),
    ({"name": "carol", "fallback": "yes"}, "fallback", "invalid_type"),
    ({"name": "carol", "models": "gpt 5"}, "models", "invalid_models"),
    ({"name": "carol", "models": [1]}, "models", "invalid_models"),
    ({"name": "carol", "key": "srk_mine"}, "key", "unknown_parameter"),
])
def test_bad_new_users_are_refused_naming_the_field(admin_proxy, state_dir, body, param, code):
    with client(admin_proxy) as api:
        response = api.post("/api/admin/users", json=body)
        assert response.status_code == 400, response.text
        assert (error_of(response)["param"], error_of(response)["code"]) == (param, code)
        assert api.get("/api/admin/users").json()["data"] == []


def test_a_duplicate_user_is_refused(admin_proxy):
    with client(admin_proxy) as api:
        add(api, "alice")
        again = api.post("/api/admin/users", json={"name": "alice"})
    assert again.status_code == 400
    assert (error_of(again)["param"], error_of(again)["code"]) == ("name", "user_exists")


@pytest.mark.parametrize("body,param,code", [
    ({"rpm": 0}, "rpm", "invalid_limit"),
    ({"disabled": "true"}, "disabled", "invalid_type"),
    ({"name": "other"}, "name", "unknown_parameter"),
    ({"key_hash": "0" * 64}, "key_hash", "unknown_parameter"),
])
def test_bad_changes_are_refused_and_change_nothing(admin_proxy, body, param, code):
    with client(admin_proxy) as api:
        before = add(api, "alice", rpm=3)
        response = api.patch("/api/admin/users/alice", json=body)
        assert response.status_code == 400, response.text
        assert (error_of(response)["param"], error_of(response)["code"]) == (param, code)
        after = api.get("/api/admin/users/alice").json()
    assert (after["rpm"], after["disabled"], after["key_id"]) == (3, False, before["key_id"])


@pytest.mark.parametrize("method,path", [("PATCH", "/api/admin/users/alice"), ("POST", "/api/admin/users")])
def test_malformed_wrong_typed_oversized_or_non_json_bodies_are_4xx(admin_proxy, method, path):
    with client(admin_proxy) as api:
        if method == "PATCH":
            add(api, "alice")
        json_type = {"content-type": "application/json"}
        for raw, status, code in [(b"{", 400, "invalid_json"), (b"[1]", 400, "invalid_json"),
                                  (b"\xff\xfe", 400, "invalid_json"), (b"", 400, "invalid_json"),
                                  (b'{"name": "' + b"a" * 70000 + b'"}', 413, "request_too_large")]:
            response = api.request(method, path, content=raw, headers=json_type)
            assert (response.status_code, error_of(response)["code"]) == (status, code), raw[:20]
        form = api.request(method, path, content=b"name=alice", headers={"content-type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415


@pytest.mark.parametrize("path", ["/api/admin/users/nobody", "/api/admin/users/Nobody%0A",
                                  "/api/admin/users/..%2F..", "/api/admin/users/" + "a" * 300])
def test_unknown_users_are_404_for_every_action(admin_proxy, path):
    with client(admin_proxy) as api:
        add(api, "alice")
        for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate-key")]:
            response = api.request(method, path + suffix, json={"disabled": True})
            assert response.status_code == 404, (method, path, response.text)
            assert error_of(response)["code"] in ("user_not_found", "not_found")


def test_before_any_user_exists_reads_answer_empty_and_create_nothing(admin_proxy, state_dir):
    with client(admin_proxy) as api:
        assert api.get("/api/admin/users").json()["data"] == []
        assert api.get("/api/admin/usage").json()["data"] == []
        assert api.get("/api/admin/users/alice").status_code == 404
        assert api.patch("/api/admin/users/alice", json={"disabled": True}).status_code == 404
    assert not (state_dir / "team.sqlite3").exists()


def test_a_user_shows_their_login_and_plan_windows_but_never_a_token(admin_proxy, state_dir):
    token = "eyJ-access-" + "T0k" * 20
    refresh = "rt_" + "R3f" * 20
    with client(admin_proxy) as api:
        made = add(api, "alice")
        add(api, "bob")

        async def log_alice_in(store):
            box = SecretBox(load_keys({}, str(state_dir)))
            sealed = box.seal(orjson.dumps({"tokens": {"access_token": token, "refresh_token": refresh}}),
                              context="alice")
            await store.put_login("alice", StoredLogin(sealed, 1, account_id="acc-1", email="alice@example.com",
                                                       plan_type="pro"), expected_version=None)
            await store.put_plan_windows("account:acc-1", {"primary_used_percent": 42.0, "primary_reset_at": 1.9e9,
                                                           "secondary_used_percent": 96.5})
            return sealed

        sealed = in_store(state_dir, log_alice_in)
        alice = api.get("/api/admin/users/alice")
        listed = api.get("/api/admin/users")
    login = alice.json()["login"]
    assert (login["account_id"], login["email"], login["plan_type"], login["needs_login"]) == (
        "acc-1", "alice@example.com", "pro", None)
    assert [(w["name"], w["used_percent"]) for w in alice.json()["plan_windows"]] == [("primary", 42.0),
                                                                                       ("secondary", 96.5)]
    assert {u["name"]: u["login"] is None for u in listed.json()["data"]} == {"alice": False, "bob": True}
    for answer in (alice.text, listed.text):
        assert token not in answer and refresh not in answer and sealed not in answer
    # At rest: neither the client key nor a token is in any file of the store (WAL included).
    stored = b"".join(path.read_bytes() for path in state_dir.iterdir() if path.name.startswith("team.sqlite3"))
    assert b"alice@example.com" in stored  # the grep would find plain text: the file was read
    for secret in (made["key"], token, refresh):
        assert secret.encode() not in stored


def test_usage_is_reported_grouped_and_filtered(admin_proxy, state_dir):
    with client(admin_proxy) as api:
        add(api, "alice")
        add(api, "bob")

        async def record(store):  # usage is kept under each person's key (the name and when it was made)
            alice, bob = (await store.get_user("alice")).person, (await store.get_user("bob")).person
            await store.add_usage([
                UsageRow(alice, "2026-11-30", "gpt-5.5", "codex", requests=2, input_tokens=100, output_tokens=10),
                UsageRow(alice, "2026-12-01", "gpt-5.5", "codex", requests=1, errors=1, input_tokens=50,
                         cached_tokens=20, output_tokens=5, reasoning_tokens=3),
                UsageRow(alice, "2026-12-01", "claude-sonnet-4-5", "anthropic", requests=1, input_tokens=7),
                UsageRow(bob, "2026-12-01", "gpt-5.5", "codex", requests=4, input_tokens=400, output_tokens=40),
            ])

        in_store(state_dir, record)
        full = api.get("/api/admin/usage").json()
        by_user = api.get("/api/admin/usage", params={"group_by": "user"}).json()
        alice_days = api.get("/api/admin/usage", params={"user": "alice", "group_by": "day,user"}).json()
        one_day = api.get("/api/admin/usage", params={"since": "2026-12-01", "until": "2026-12-01",
                                                      "group_by": "provider"}).json()
    assert len(full["data"]) == 4 and full["totals"]["requests"] == 8
    assert by_user["data"] == [
        {"user": "alice", "requests": 4, "errors": 1, "input_tokens": 157, "cached_tokens": 20, "output_tokens": 15,
         "reasoning_tokens": 3, "cost_micros": 0, "unpriced": 0, "cost_usd": "0.00"},
        {"user": "bob", "requests": 4, "errors": 0, "input_tokens": 400, "cached_tokens": 0, "output_tokens": 40,
         "reasoning_tokens": 0, "cost_micros": 0, "unpriced": 0, "cost_usd": "0.00"}]
    assert alice_days["group_by"] == ["user", "day"]
    assert [(row["day"], row["input_tokens"]) for row in alice_days["data"]] == [("2026-11-30", 100),
                                                                                ("2026-12-01", 57)]
    assert [(row["provider"], row["requests"]) for row in one_day["data"]] == [("anthropic", 1), ("codex", 5)]


@pytest.mark.parametrize("query,param", [
    ({"group_by": "user,colour"}, "group_by"), ({"group_by": "user,user"}, "group_by"), ({"group_by": ","}, "group_by"),
    ({"since": "2026-13-01"}, "since"), ({"until": "yesterday"}, "until"), ({"since": "2026-12-01T00:00"}, "since"),
    ({"since": "2026-12-02", "until": "2026-12-01"}, "since"), ({"user": "Not A Name"}, "user"),
])
def test_bad_usage_queries_are_400_naming_the_parameter(admin_proxy, query, param):
    with client(admin_proxy) as api:
        response = api.get("/api/admin/usage", params=query)
    assert response.status_code == 400
    assert error_of(response)["param"] == param


@pytest.mark.parametrize("headers", [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"},
                                     {"origin": "null"}])
def test_cross_origin_browsers_are_refused_before_the_admin_api(admin_proxy, state_dir, headers):
    with client(admin_proxy, {**HEADERS, **headers}) as api:
        for method, path in ENDPOINTS:
            response = api.request(method, path, json={"name": "mallory"})
            assert response.status_code == 403, (method, path)
            assert error_of(response)["code"] == "origin_not_allowed"
    assert not state_dir.exists()


def test_with_client_keys_set_the_admin_key_still_reaches_the_admin_api_and_a_client_key_does_not(admin_settings):
    owner = "owner-" + "k" * 20
    settings = replace(admin_settings, api_keys=(owner,))
    with ServerThread(create_app(settings)) as proxy:
        with client(proxy) as api:
            assert add(api, "alice")["name"] == "alice"
        with client(proxy, {"authorization": f"Bearer {owner}"}) as api:
            response = api.get("/api/admin/users")
        assert response.status_code == 401 and error_of(response)["code"] == "invalid_admin_key"
        with client(proxy, {}) as api:
            assert api.get("/api/admin/users").status_code == 401


def test_the_admin_page_is_served_with_a_strict_policy(admin_proxy):
    with client(admin_proxy, {}) as api:
        page = api.get("/admin")
        script = api.get("/admin/admin.js")
        style = api.get("/admin/admin.css")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and "http" not in page.text.replace('http-equiv', '')  # nothing from elsewhere
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text and "http" not in script.text
    assert style.status_code == 200 and "text/css" in style.headers["content-type"]


def test_a_users_own_key_is_not_an_admin_key(admin_proxy):
    with client(admin_proxy) as api:
        key = add(api, "alice")["key"]
    for headers in ({"authorization": f"Bearer {key}"}, {"x-admin-key": key}):
        with client(admin_proxy, headers) as api:
            response = api.get("/api/admin/users")
            assert response.status_code == 401, response.text
            assert api.post("/api/admin/users", json={"name": "mallory"}).status_code == 401
    with client(admin_proxy) as api:
        assert [user["name"] for user in api.get("/api/admin/users").json()["data"]] == ["alice"]


def test_a_user_added_through_the_api_is_known_to_the_running_server_at_once(admin_proxy):
    with httpx.Client(base_url=admin_proxy.url, timeout=10) as anyone:
        assert anyone.get("/v1/models").status_code == 200  # no users yet: no key needed
        with client(admin_proxy) as api:
            key = add(api, "alice")["key"]
            assert anyone.get("/v1/models").status_code == 401  # team mode is on: a key is needed
            assert anyone.get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
            assert api.patch("/api/admin/users/alice", json={"disabled": True}).status_code == 200
            assert anyone.get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 401
