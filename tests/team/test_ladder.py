"""The degradation ladder end to end with openai-python (issue 28 item 4), and the signed webhooks that
say each step (item 5): as a member's own plan fills, the effort is lowered, then a cheaper model is
used on the same login, then (opted in) the team key; it all comes back when the window resets.
A receiver in the suite checks delivery, the HMAC signature and the retry after a failed delivery."""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import replace

import httpx
import orjson
import pytest
from openai import OpenAI

from proxy.config.file import parse_config
from proxy.server.app import create_app
from proxy.team.alerts import Alerts, Hook, signature, verify
from proxy.team.ladder import Step, forecast, pressure, rung
from tests.mock_upstream import ServerThread
from tests.mock_upstream.asgi import read_body
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState
from tests.team.test_request_path import device_login, make_user, team_env  # noqa: F401 (a fixture)

SECRET = "whsec-" + "k9" * 16
LADDER = '''
fallback_at_percent = 95
[ladder]
steps = [{{at = 70, effort = "low"}}, {{at = 85, model = "gpt-5.4-mini"}}]
[webhooks]
url = "{hook}/hook"
secret_env = "ALERT_SECRET"
[providers.team]
kind = "custom"
base_url = "{key}/v1"
api_key_env = "TEAM_KEY"
models = ["gpt-5.4"]
[prices."team/gpt-5.4"]
input = 1
output = 2
[fallbacks]
"codex/gpt-5.4" = ["team/gpt-5.4"]
'''


class Receiver:
    """A webhook endpoint: records every delivery; answers 500 to the first ``fail_first`` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            from tests.mock_upstream.asgi import lifespan

            await lifespan(receive, send)
            return
        body = await read_body(receive)
        status = 500 if len(self.deliveries) < self.fail_first else 204
        self.deliveries.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body, status))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def accepted(self) -> list[dict]:
        return [orjson.loads(body) for headers, body, status in self.deliveries if status == 204]


def test_pressure_is_the_fuller_window_or_its_burn_rate_forecast():
    now = 10_000.0
    # 50% used with 60% of a 5-hour window gone: heading for 83%
    half = {"primary": {"used_percent": 50, "reset_at": now + 7200, "window_minutes": 300}}
    assert forecast(half["primary"], now) == pytest.approx(83.33, abs=0.01)
    assert pressure(half, now)[0] == pytest.approx(83.33, abs=0.01)
    early = {"primary": {"used_percent": 5, "reset_at": now + 17_900, "window_minutes": 300}}
    assert forecast(early["primary"], now) is None  # too early to tell a burn rate
    reset = {"primary": {"used_percent": 99, "reset_at": now - 1}}
    assert pressure(reset, now) == (0.0, "")
    steps = (Step(70, effort="low"), Step(85, model="gpt-5.4-mini"))
    assert rung(steps, half, now)[:3] == ("low", None, 1)
    assert rung(steps, {"secondary": {"used_percent": 90}}, now)[:3] == ("low", "gpt-5.4-mini", 2)


def test_a_webhook_is_signed_and_retried_with_backoff_until_delivered():
    receiver = Receiver(fail_first=2)
    with ServerThread(receiver) as hook:
        async def run() -> Alerts:
            alerts = Alerts([Hook(f"{hook.url}/hook", SECRET.encode(), attempts=4)], first_backoff=0.05)
            alerts.send("budget.threshold", {"budget": "month", "percent": 80})
            await alerts.drain()
            await alerts.close()
            return alerts

        alerts = asyncio.run(run())
    assert [status for _, _, status in receiver.deliveries] == [500, 500, 204]
    headers, body, _ = receiver.deliveries[-1]
    assert headers["x-subrelay-delivery-attempt"] == "3" and headers["x-subrelay-event"] == "budget.threshold"
    assert verify(SECRET.encode(), headers["x-subrelay-signature"], body)
    assert not verify(b"another-secret", headers["x-subrelay-signature"], body)
    assert not verify(SECRET.encode(), headers["x-subrelay-signature"], body + b" ")
    assert not verify(SECRET.encode(), signature(SECRET.encode(), int(time.time()) - 3600, body), body)  # too old
    assert orjson.loads(body)["data"] == {"budget": "month", "percent": 80} and alerts.delivered == 1


def test_a_webhook_that_never_answers_never_blocks_and_is_dropped_after_its_attempts():
    receiver = Receiver(fail_first=99)
    with ServerThread(receiver) as hook:
        async def run() -> tuple[float, Alerts]:
            alerts = Alerts([Hook(f"{hook.url}/hook", SECRET.encode(), attempts=2)], first_backoff=0.05)
            started = time.perf_counter()
            for n in range(3):
                alerts.send("ladder.step", {"n": n})
            queued_in = time.perf_counter() - started
            await alerts.drain()
            await alerts.close()
            return queued_in, alerts

        queued_in, alerts = asyncio.run(run())
    assert queued_in < 0.5  # sending only queues
    assert len(receiver.deliveries) == 6 and alerts.failed == 3 and alerts.delivered == 0


def test_the_ladder_steps_down_and_back_up_and_each_step_is_said_and_signed(
        proxy_settings, mock_codex, team_env):
    receiver = Receiver(fail_first=1)  # the first alert is delivered on its retry
    key_app = MockOpenAIServer()
    key_app.state = OpenAIMockState()
    with ServerThread(receiver) as hook, ServerThread(key_app) as team_key:
        config = parse_config(tomllib.loads(LADDER.format(hook=hook.url, key=team_key.url)))
        settings = replace(proxy_settings, auth_base_url=mock_codex.url, file=config,
                           env={**team_env, "TEAM_KEY": key_app.state.api_key, "ALERT_SECRET": SECRET})
        ida = make_user(team_env, "ida", fallback=True)
        with ServerThread(create_app(settings)) as proxy:
            device_login(proxy.url, ida, mock_codex, "ida@example.com")
            client = OpenAI(base_url=f"{proxy.url}/v1", api_key=ida, max_retries=0)

            def turn(used: str, reset_after: str = "3600") -> tuple[str, str, str | None]:
                """One request; its answer (if the plan's) reports ``used`` %, which the next request sees."""
                mock_codex.state.requests.clear()
                mock_codex.state.window_headers = {"x-codex-primary-used-percent": used,
                                                   "x-codex-primary-reset-after-seconds": reset_after}
                answer = client.chat.completions.with_raw_response.create(
                    model="codex/gpt-5.4", messages=[{"role": "user", "content": "hi"}])
                sent = mock_codex.state.requests[-1]["body"] if mock_codex.state.requests else {}
                return (answer.headers["x-subrelay-route"], answer.headers.get("x-subrelay-ladder", ""),
                        (sent.get("reasoning") or {}).get("effort"))

            assert turn("72") == ("codex/gpt-5.4", "", None)
            assert turn("88") == ("codex/gpt-5.4", "effort low (primary window 72% used)", "low")
            assert turn("96", reset_after="2") == (
                "codex/gpt-5.4-mini", "effort low; model gpt-5.4-mini instead of gpt-5.4 (primary window 88% used)",
                "low")
            assert turn("96")[:2] == ("team/gpt-5.4", "")  # the last rung: the team key (ida opted in)
            from proxy.account.api import PREFIX

            page = httpx.get(f"{proxy.url}{PREFIX}/status", headers={"authorization": f"Bearer {ida}"}).json()
            assert page["team"]["ladder"] | {"why": ""} == {"step": 2, "of": 2, "effort": "low",
                                                            "model": "gpt-5.4-mini", "why": ""}
            time.sleep(2.2)  # the window resets: back up, all the way
            assert turn("3") == ("codex/gpt-5.4", "", None)
        deadline = time.monotonic() + 10
        while len(receiver.accepted()) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    events = receiver.accepted()
    steps = [(event["data"]["from"], event["data"]["to"], event["data"]["step"]) for event in events
             if event["event"] == "ladder.step"]
    assert steps == [(0, 1, "effort low"), (1, 2, "model gpt-5.4-mini"), (2, 3, "the team key"),
                     (3, 0, "back to the model and effort asked for")]
    plan = [(e["data"]["window"], e["data"]["threshold"]) for e in events if e["event"] == "plan.threshold"]
    assert plan == [("primary", 80), ("primary", 95)]  # the soft threshold, then the fallback's
    assert receiver.deliveries[0][2] == 500 and receiver.deliveries[1][0]["x-subrelay-delivery-attempt"] == "2"
    for headers, body, _ in receiver.deliveries:
        assert verify(SECRET.encode(), headers["x-subrelay-signature"], body)


async def test_a_login_marked_for_renewal_sends_a_login_needs_login_alert(tmp_path):
    from proxy.state.local.team import SqliteTeamStore
    from proxy.state.team import StoredLogin, User
    from proxy.team.context import Team
    from proxy.team.logins import UserLogin
    from proxy.team.secretbox import SecretBox, new_secret, parse_secret

    class Recorded:
        def __init__(self) -> None:
            self.sent: list[tuple[str, dict]] = []

        def send(self, event: str, data: dict) -> None:
            self.sent.append((event, data))

    store = SqliteTeamStore(str(tmp_path / "team.sqlite3"))
    alerts = Recorded()
    team = Team(store=store, box=SecretBox([parse_secret(new_secret())]), alerts=alerts)
    await store.add_user(User("jan", "a" * 64, "a" * 12))
    login = StoredLogin("sealed", 1, "acc-jan", "jan@example.com", "plus")
    assert await store.put_login("jan", login, expected_version=None)
    await UserLogin(team, "jan", "http://127.0.0.1:9/oauth/token", None, "")._mark_dead(login, "refresh_token_reused")
    assert alerts.sent == [("login.needs_login", {"user": "jan", "reason": "refresh_token_reused"})]
    assert (await store.get_login("jan")).needs_login == "refresh_token_reused"
    await store.close()
