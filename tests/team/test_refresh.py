"""A person's login refreshed once however requests race, and a rotated token never lost to a store
blip (the old refresh token is spent the moment the exchange succeeds)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from proxy.state.team import StoreError
from proxy.team.context import open_team
from proxy.team.logins import UserLogin, seal_login
from proxy.team.users import add_user


class FlakyStore:
    """The real store, whose next ``failures`` login saves fail as if the network dropped."""

    def __init__(self, store, failures: int) -> None:
        self._store = store
        self.failures = failures
        self.remote = store.remote

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def put_login(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise StoreError("connection reset by peer")
        return await self._store.put_login(*args, **kwargs)


@pytest.fixture
async def team_with_expired_login(tmp_path, mock_codex):
    team = open_team({"SUBRELAY_STATE_DIR": str(tmp_path / "state")}, create=True)
    await add_user(team.store, "rae")
    auth = mock_codex.state.auth_file(expires_in=-600)  # the access token expired ten minutes ago
    assert await team.store.put_login("rae", seal_login(team, "rae", auth, 1), expected_version=None)
    yield team
    await team.store.close()


async def test_a_storm_of_requests_on_an_expired_login_refreshes_once(team_with_expired_login, mock_codex):
    team = team_with_expired_login
    mock_codex.state.refresh_delay = 0.2
    async with httpx.AsyncClient() as http:
        logins = [UserLogin(team, "rae", f"{mock_codex.url}/oauth/token", http, "log in again") for _ in range(3)]
        before = mock_codex.state.refresh_calls
        tokens = await asyncio.gather(*(logins[n % 3].current() for n in range(30)))  # three "workers", 30 requests
    assert mock_codex.state.refresh_calls - before == 1
    assert len({credential.access_token for credential in tokens}) == 1


async def test_a_store_blip_while_saving_a_refresh_is_ridden_out_not_refreshed_twice(team_with_expired_login,
                                                                                   mock_codex):
    team = team_with_expired_login
    team.store = FlakyStore(team.store, failures=3)
    async with httpx.AsyncClient() as http:
        login = UserLogin(team, "rae", f"{mock_codex.url}/oauth/token", http, "log in again")
        before = mock_codex.state.refresh_calls
        credential = await login.current()
        again = await UserLogin(team, "rae", f"{mock_codex.url}/oauth/token", http, "log in again").current()
    assert mock_codex.state.refresh_calls - before == 1  # the spent refresh token was never used again
    stored = await team.store.get_login("rae")
    assert stored.version == 2 and stored.needs_login is None
    assert again.access_token == credential.access_token  # another replica reads the saved rotation
