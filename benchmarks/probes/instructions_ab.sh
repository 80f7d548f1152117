#!/bin/bash
# Instructions per request at several commits, counted by callgrind (exactly repeatable, unlike CPU
# seconds on a shared machine): the in-process harness runs N1 and N2 requests and the difference
# is divided by N2 - N1, so start-up and imports cancel out.
# Usage: bash benchmarks/probes/instructions_ab.sh f9c6778 HEAD        (STREAM=1 for 50-delta streams;
# STREAM=1 CODEX=1 for Chat -> Codex translation of them; TEAM=1 for a team member's request, TEAM_BUDGET=1
# with a monthly money budget on top of the limits)
cd "$(dirname "$0")/../.." && ROOT=$(pwd)
N1=${N1:-200}; N2=${N2:-800}; PORT=${PORT:-8941}
(.venv/bin/python -m benchmarks.mock --port "$PORT" > /dev/null 2>&1 &)
sleep 2
count() {  # $1 = checkout, $2 = requests
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$ROOT/.venv/bin/python" \
    "$ROOT/benchmarks/probes/inproc_request.py" --root "$1" --port "$PORT" --requests "$2" ${STREAM:+--stream} ${CODEX:+--codex} ${TEAM:+--team} 2>&1 \
    | awk '/Collected/ {print $4}'
}
for rev in "$@"; do
  tree=$(mktemp -d); git worktree add -q -f "$tree" "$rev" 2>/dev/null
  a=$(count "$tree" "$N1"); b=$(count "$tree" "$N2")
  echo "$rev instructions_per_request=$(( (b - a) / (N2 - N1) ))"
  git worktree remove --force "$tree"
done
pkill -f "benchmarks.mock --port $PORT"
