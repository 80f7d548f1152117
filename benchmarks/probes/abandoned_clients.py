"""25 non-streaming clients abandon slow Codex answers; does the proxy cancel the upstream calls?"""
import sys, tempfile, time, threading
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import httpx
from proxy.server.app import create_app
from proxy.config.settings import Settings
from tests.conftest import write_auth_file
from tests.mock_upstream import MockCodexServer, ServerThread
mock = MockCodexServer()
with ServerThread(mock) as up:
    auth = tempfile.mktemp(suffix="-auth.json")
    write_auth_file(auth, mock.state.auth_file())
    s = Settings(codex_base_url=f"{up.url}/backend-api/codex", codex_token_url=f"{up.url}/oauth/token",
                 codex_auth_path=auth, max_connections=20)
    with ServerThread(create_app(s)) as proxy:
        body = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "x [[deltas:150]] [[slow]]"}]}  # 30 s each
        def abandon():
            try: httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
            except httpx.ReadTimeout: pass
        ts = [threading.Thread(target=abandon) for _ in range(25)]
        [t.start() for t in ts]; [t.join() for t in ts]
        time.sleep(1.0)
        print("upstream streams cancelled:", mock.state.cancelled_streams, "finished:", mock.state.finished_streams)
        t0 = time.monotonic()
        r = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        print("next request:", r.status_code, "in %.3f s" % (time.monotonic() - t0))
