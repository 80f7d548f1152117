#!/bin/bash
# CPU seconds per 1k non-stream requests (c=10) of `subrelay serve` at several commits, same mock.
# Usage: bash benchmarks/probes/cpu_per_request_ab.sh f9c6778 HEAD f9c6778 HEAD   (loopback only)
cd "$(dirname "$0")/../.." && ROOT=$(pwd)
CFG=$(mktemp --suffix=.toml)
printf '[providers.bench]\nkind = "custom"\nbase_url = "http://127.0.0.1:8911/v1"\napi_key = "sk-bench"\n' > "$CFG"
(.venv/bin/python -m benchmarks.mock --port 8911 > /dev/null 2>&1 &)
sleep 1
for c in "$@"; do
  rm -rf /tmp/bis; git worktree add -q -f /tmp/bis $c 2>/dev/null
  (cd /tmp/bis && SUBRELAY_CONFIG="$CFG" CODEX_AUTH_PATH=/nonexistent/auth.json SUBRELAY_LOG_LEVEL=warning SUBRELAY_CODEX_CATALOG_SECONDS=100000 "$ROOT/.venv/bin/python" -m proxy serve --port 8916 > /tmp/bis.log 2>&1 &)
  sleep 3
  pid=$(pgrep -f "proxy serve --port 8916" | head -1)
  .venv/bin/python -m benchmarks.load --url http://127.0.0.1:8916/v1/chat/completions --body '{"model":"bench/bench-d1","messages":[{"role":"user","content":"hi"}]}' -c 10 -n 1000 -H "Authorization: Bearer sk-bench" > /dev/null
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  .venv/bin/python -m benchmarks.load --url http://127.0.0.1:8916/v1/chat/completions --body '{"model":"bench/bench-d1","messages":[{"role":"user","content":"hi"}]}' -c 10 -n 6000 -H "Authorization: Bearer sk-bench" > /dev/null
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  echo "$c cpu_s_per_1k=$(python3 -c "print(round(($t1-$t0)/100/6, 3))")"
  kill $pid; sleep 1
  git worktree remove --force /tmp/bis
done
pkill -f "benchmarks.mock --port 8911"
