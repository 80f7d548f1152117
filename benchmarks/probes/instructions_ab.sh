#!/bin/bash
# Instructions per request at several commits, counted by callgrind (exactly repeatable, unlike CPU
# seconds on a shared machine): the in-process harness runs N1 and N2 requests and the difference
# is divided by N2 - N1, so start-up and imports cancel out.
# Usage: bash benchmarks/probes/instructions_ab.sh f9c6778 HEAD        (`.` = the working tree as it is,
# uncommitted changes included). STREAM=1 for 50-delta streams; STREAM=1 CODEX=1 for Chat -> Codex
# translation of them; TEAM=1 for a team member's request (rpm/tpm/daily limits, the ledger on, as team
# mode ships); TEAM_BUDGET=1 adds a monthly money budget, TEAM_CONCURRENT=N a concurrency cap of N;
# OTEL=1 traces every request (spans built, encoded and exported to the mock, which answers /v1/traces).
# SOCKET=websocket|http: instead, instructions per agent turn of the Codex socket loop (Chat door, whole
# history each turn; probes/inproc_socket_loop.py on the tests' mock Codex backend), N1/N2 loops (default 1/3).
# Each run starts its own mock on a free port and stops it by its PID, so runs in parallel never collide.
cd "$(dirname "$0")/../.." && ROOT=$(pwd)
if [ -n "$SOCKET" ]; then N1=${N1:-1}; N2=${N2:-3}; UNIT="turn_$SOCKET"; else N1=${N1:-200}; N2=${N2:-800}; UNIT=request; fi
PORT=${PORT:-$("$ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
AUTH=$(mktemp -d)/auth.json
if [ -n "$SOCKET" ]; then
  "$ROOT/.venv/bin/python" -m tests.mock_upstream --port "$PORT" --websocket --auth-file "$AUTH" > /dev/null 2>&1 &
else
  "$ROOT/.venv/bin/python" -m benchmarks.mock --port "$PORT" > /dev/null 2>&1 &
fi
MOCK=$!
trap 'kill "$MOCK" 2>/dev/null; rm -rf "$(dirname "$AUTH")"' EXIT
for _ in $(seq 50); do  # until the mock answers (at most ~5 s)
  "$ROOT/.venv/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
  sleep 0.1
done
if [ -n "$OTEL" ]; then  # spans are built, encoded and exported to the mock, which takes them as a collector
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$PORT OTEL_BSP_SCHEDULE_DELAY=${OTEL_BSP_SCHEDULE_DELAY:-200}
fi
count() {  # $1 = checkout, $2 = requests (or loops); prints the instructions and the requests (or turns)
  if [ -n "$SOCKET" ]; then
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$ROOT/.venv/bin/python" \
      "$ROOT/benchmarks/probes/inproc_socket_loop.py" --root "$1" --mock "http://127.0.0.1:$PORT" --auth "$AUTH" \
      --transport "$SOCKET" --loops "$2" 2>&1 | awk '/Collected/ {c=$4} /^turns=/ {split($1, t, "="); n=t[2]} END {print c, n}'
    return
  fi
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$ROOT/.venv/bin/python" \
    "$ROOT/benchmarks/probes/inproc_request.py" --root "$1" --port "$PORT" --requests "$2" ${STREAM:+--stream} ${CODEX:+--codex} ${TEAM:+--team} 2>&1 \
    | awk -v n="$2" '/Collected/ {print $4, n}'
}
for rev in "$@"; do
  if [ "$rev" = "." ]; then
    tree=$ROOT
  else
    tree=$(mktemp -d); git worktree add -q -f "$tree" "$rev" 2>/dev/null
  fi
  read -r a na <<< "$(count "$tree" "$N1")"; read -r b nb <<< "$(count "$tree" "$N2")"
  if [ -z "$a" ] || [ -z "$b" ] || [ -z "$na" ] || [ -z "$nb" ] || [ "$na" = "$nb" ]; then
    echo "$rev instructions_per_$UNIT=failed (the harness did not finish; run it by hand to see why)"
  else
    echo "$rev instructions_per_$UNIT=$(( (b - a) / (nb - na) ))"
  fi
  [ "$rev" = "." ] || git worktree remove --force "$tree"
done
