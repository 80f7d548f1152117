#!/bin/bash
# Instructions per request of the whole `subrelay serve` process (uvicorn, the sockets, the event loop and
# everything the in-process harness leaves out), counted by callgrind: the server runs under valgrind, a
# warm-up of 200 requests, then callgrind's counters are zeroed, N requests are driven (benchmarks/load.py,
# another process) and the counters dumped. Exactly repeatable for the same tree and driver settings.
# Usage: bash benchmarks/probes/server_instructions.sh            (N=1000 C=1; STREAM=1 for 50-delta streams)
cd "$(dirname "$0")/../.." && ROOT=$(pwd)
N=${N:-1000}; C=${C:-1}
free_port() { "$ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); PORT=$(free_port)
WORK=$(mktemp -d)
printf '[providers.bench]\nkind = "custom"\nbase_url = "http://127.0.0.1:%s/v1"\napi_key = "sk-bench"\n' "$MOCK_PORT" > "$WORK/cfg.toml"
"$ROOT/.venv/bin/python" -m benchmarks.mock --port "$MOCK_PORT" > /dev/null 2>&1 &
MOCK=$!
HOME="$WORK" SUBRELAY_STATE_DIR="$WORK/state" SUBRELAY_CONFIG="$WORK/cfg.toml" CODEX_AUTH_PATH=/nonexistent/auth.json \
  SUBRELAY_LOG_LEVEL=warning SUBRELAY_CODEX_CATALOG_SECONDS=100000 \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$ROOT/.venv/bin/python" -m proxy serve --port "$PORT" \
  > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" "$MOCK" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do  # valgrind starts the server slowly (at most ~60 s)
  "$ROOT/.venv/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
  sleep 0.1
done
MODEL=bench/bench-d1; [ -n "$STREAM" ] && MODEL=bench/bench-d50
BODY="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}]${STREAM:+,\"stream\":true}}"
drive() { "$ROOT/.venv/bin/python" -m benchmarks.load --url "http://127.0.0.1:$PORT/v1/chat/completions" --body "$BODY" \
  -c "$C" -n "$1" | "$ROOT/.venv/bin/python" -c 'import json, sys; r = json.load(sys.stdin); print(r["statuses"])'; }
drive 200 > /dev/null
callgrind_control -z "$SERVER" > /dev/null 2>&1
statuses=$(drive "$N")
callgrind_control -d "$SERVER" > /dev/null 2>&1
total=$(grep -h '^summary:' "$WORK"/cg.out* | awk '{s += $2} END {print s}')
echo "server instructions_per_request=$(( total / N )) (N=$N C=$C${STREAM:+ stream}; statuses $statuses)"
