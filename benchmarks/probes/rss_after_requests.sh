#!/bin/bash
# RSS of one `subrelay serve` worker at start and after 10k and 20k non-stream requests (c=10, key provider,
# the benchmark mock). Usage: bash benchmarks/probes/rss_after_requests.sh [requests per step, default 10000]
# Stops the mock and the server it started by their PIDs.
cd "$(dirname "$0")/../.." && ROOT=$(pwd)
STEP=${1:-10000}
free() { "$ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free); PORT=$(free); WORK=$(mktemp -d)
printf '[providers.bench]\nkind = "custom"\nbase_url = "http://127.0.0.1:%s/v1"\napi_key = "sk-bench"\n' "$MOCK_PORT" > "$WORK/subrelay.toml"
"$ROOT/.venv/bin/python" -m benchmarks.mock --port "$MOCK_PORT" > /dev/null 2>&1 & MOCK=$!
SUBRELAY_CONFIG="$WORK/subrelay.toml" CODEX_AUTH_PATH=/nonexistent/auth.json SUBRELAY_LOG_LEVEL=warning HOME="$WORK" \
  SUBRELAY_STATE_DIR="$WORK/state" "$ROOT/.venv/bin/python" -m proxy serve --port "$PORT" > "$WORK/serve.log" 2>&1 & SERVER=$!
trap 'kill $SERVER $MOCK 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status"; }
echo "start: $(rss) MB"
BODY='{"model":"bench/bench-d1","messages":[{"role":"user","content":"hi"}]}'
for n in 1 2; do
  "$ROOT/.venv/bin/python" -m benchmarks.load --url "http://127.0.0.1:$PORT/v1/chat/completions" --body "$BODY" -c 10 -n "$STEP" > /dev/null
  echo "after $((n * STEP)) requests: $(rss) MB"
done
