"""``subrelay login --device`` with no way to the login server names the address it tried (issue 27)."""

from __future__ import annotations

from proxy.account.login_command import login
from proxy.config.settings import Settings
from tests.redis_server import free_port


def test_an_unreachable_login_server_is_named(tmp_path):
    import io

    where = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(auth_base_url=where, codex_auth_path=str(tmp_path / "auth.json"), env={})
    out = io.StringIO()
    assert login(settings, device=True, no_browser=True, paste=False, out=out) == 1
    said = out.getvalue()
    assert f"Could not reach the ChatGPT login server at {where}" in said
