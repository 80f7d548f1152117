"""Run the mock Codex upstream and OpenAI auth server by hand: ``python -m tests.mock_upstream [--port 8900]``.

Writes an auth.json with fresh mock tokens and prints the environment to point subrelay at it
(``subrelay login`` then signs in against the mock).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import orjson
import uvicorn

from .server import MockCodexServer


def main() -> None:
    parser = argparse.ArgumentParser(description="mock Codex backend + token endpoint on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--auth-file", help="where to write a matching auth.json (default: a temp dir)")
    parser.add_argument("--deltas", type=int, help="text deltas per answer (benchmarks)")
    parser.add_argument("--delta-size", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between deltas")
    parser.add_argument("--websocket", action="store_true", help="speak the Responses WebSocket (else 426)")
    args = parser.parse_args()
    app = MockCodexServer()
    app.state.delta_count, app.state.delta_size, app.state.inter_delta_delay = args.deltas, args.delta_size, args.delay
    app.state.record = False
    app.state.websocket = args.websocket
    path = args.auth_file or os.path.join(tempfile.mkdtemp(prefix="subrelay-mock-"), "auth.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(app.state.auth_file(), option=orjson.OPT_INDENT_2))
    base = f"http://127.0.0.1:{args.port}"
    print(f"export CODEX_AUTH_PATH={path} SUBRELAY_CODEX_BASE_URL={base}/backend-api/codex "
          f"SUBRELAY_AUTH_BASE_URL={base}", flush=True)
    print(f"# sign-in page: {base}/oauth/authorize (via `subrelay login`); device codes: {base}/codex/device",
          flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
