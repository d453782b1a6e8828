#!/usr/bin/env bash
# What telemetry costs a mount (`cargo xtask bench telemetry [--quick]`): the mount benchmark's
# small-file row (4 KiB creates in 100 directories) and warm sequential read, with telemetry
# off (log level off, metrics endpoint never scraped) and on (info-level JSON logs to a file,
# the metrics endpoint scraped every second), alternating off/on runs against one afs-server
# so drift on a shared machine hits both alike. Prints medians and on/off ratios of the rates
# and of the mount runtime's CPU time per unit of work (utime + stime from /proc), the steadier
# measure on a shared machine: telemetry costs CPU, and wall-clock rates here vary by ±40 %
# between identical rounds.
# Spans and histograms are always recorded (they cannot be compiled out); "off" measures the
# settings a user can turn off.
set -euo pipefail

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
ROUNDS=${ROUNDS:-$([ $QUICK = 1 ] && echo 3 || echo 7)}
FILES=$([ $QUICK = 1 ] && echo 20 || echo 100)   # per directory, 100 directories
READ_MB=$([ $QUICK = 1 ] && echo 128 || echo 512)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AETHER=$ROOT/target/release/aether
SERVER=$ROOT/target/release/afs-server
W=${BENCH_DIR:-/tmp/aether-bench-telemetry}
TOKEN="00000000-0000-4000-8000-000000000001:bench"

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
[ -x "$AETHER" ] && [ -x "$SERVER" ] || { echo "build first: cargo build --release -p aether -p afs-server" >&2; exit 2; }
for t in bc curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

SID=""
cleanup() {
  set +e
  [ -n "$SID" ] && "$AETHER" stop --session-id "$SID" --cache-dir "$W/cache" >/dev/null 2>&1
  umount -l "$W/mnt" 2>/dev/null
  kill ${PIDS:-} 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT
PIDS=""
rm -rf "$W" && mkdir -p "$W/mnt"
head -c $((READ_MB << 20)) /dev/urandom > "$W/big.bin"
cat > "$W/creates.py" <<EOF
import os, sys
d = sys.argv[1]
data = os.urandom(4096)
for i in range(100):
    os.makedirs(f"{d}/c/d{i}", exist_ok=True)
    for j in range($FILES):
        with open(f"{d}/c/d{i}/f{j}", "wb") as f:
            f.write(data)
EOF

"$SERVER" --listen 127.0.0.1:0 --data-dir "$W/data" --max-file-bytes $(((READ_MB + 64) << 20)) > "$W/server.out" 2>"$W/server.err" & PIDS="$PIDS $!"
for _ in $(seq 50); do grep -q listening "$W/server.out" 2>/dev/null && break; sleep 0.1; done
ENDPOINT=http://$(sed -n 's/.*listening on http:\/\///p' "$W/server.out")
export AFS_AETHER_SERVER_ENDPOINT=$ENDPOINT AFS_AUTH_TOKEN=$TOKEN
PORT=19611

# One round in `mode`: a new session, mounted with that telemetry, creates then warm read.
round() {
  local mode=$1 s
  SID=$(curl -s -X POST "$ENDPOINT/v1/sessions" -H "Authorization: Bearer $TOKEN" -d '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  rm -rf "$W/cache"
  if [ "$mode" = on ]; then
    AFS_AETHER_LOG=${ON_LEVEL:-info} AFS_AETHER_LOG_FORMAT=json AFS_AETHER_LOG_DESTINATION=file \
      AFS_AETHER_LOG_PATH="$W/aether.log" AFS_AETHER_CLIENT_METRICS_ADDR=127.0.0.1:$PORT \
      "$AETHER" mount --session-id "$SID" --mount-dir "$W/mnt" --cache-dir "$W/cache" >/dev/null
    if [ "${SCRAPE:-1}" = 1 ]; then
      (while true; do curl -s "http://127.0.0.1:$PORT/metrics" > /dev/null; sleep 1; done) & SCRAPER=$!
    else
      SCRAPER=""
    fi
  else
    AFS_AETHER_LOG=off AFS_AETHER_CLIENT_METRICS_ADDR=127.0.0.1:$PORT \
      "$AETHER" mount --session-id "$SID" --mount-dir "$W/mnt" --cache-dir "$W/cache" >/dev/null
    SCRAPER=""
  fi
  sync; sleep 0.5
  local pid; pid=$(pgrep -f "mount --session-id $SID" | head -1)
  cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }   # clock ticks
  local c0; c0=$(cpu)
  s=$(now); python3 "$W/creates.py" "$W/mnt"; CREATES=$(since "$s")
  # Until the journal is written back: the write-back's work is part of what a create costs.
  for _ in $(seq 600); do
    "$AETHER" status --session-id "$SID" --cache-dir "$W/cache" --json | grep -q '"pending_entries": 0' && break
    sleep 0.1
  done
  local c1; c1=$(cpu)
  cp "$W/big.bin" "$W/mnt/big.bin"
  cat "$W/mnt/big.bin" > /dev/null
  local c2; c2=$(cpu)
  # Eight warm reads in a row: one takes a tenth of a second, too short to time alone.
  s=$(now); for _ in 1 2 3 4 5 6 7 8; do cat "$W/mnt/big.bin" > /dev/null; done; WARM=$(echo "($(now) - $s) / 8" | bc -l)
  local c3; c3=$(cpu)
  local hz; hz=$(getconf CLK_TCK)
  [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null && wait "$SCRAPER" 2>/dev/null || true
  "$AETHER" stop --session-id "$SID" --cache-dir "$W/cache" >/dev/null 2>&1
  SID=""
  local create_ms read_ms
  create_ms=$(echo "($c1 - $c0) * 1000 / $hz * 1000 / (100 * $FILES)" | bc -l)   # per 1,000 creates
  read_ms=$(echo "($c3 - $c2) * 1000 / $hz * 1024 / ($READ_MB * 8)" | bc -l)     # per GiB
  echo "$mode $(echo "100 * $FILES / $CREATES" | bc -l) $(echo "$READ_MB / $WARM" | bc -l) $create_ms $read_ms" >> "$W/results"
  echo "round $mode: creates $(printf %.0f "$(echo "100 * $FILES / $CREATES" | bc -l)") files/s ($(printf %.0f "$create_ms") CPU ms per 1,000), warm read $(printf %.0f "$(echo "$READ_MB / $WARM" | bc -l)") MiB/s ($(printf %.0f "$read_ms") CPU ms per GiB)" >&2
}

for _ in $(seq "$ROUNDS"); do round off; round on; done

python3 - "$W/results" "$ROUNDS" "$FILES" "$READ_MB" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda mode, col: statistics.median(float(r[col]) for r in rows if r[0] == mode)
print(f"\n{int(sys.argv[2])} rounds each, alternating; {100 * int(sys.argv[3])} creates, {sys.argv[4]} MiB warm read")
print(f"{'row':34}{'off':>12}{'on':>12}{'on/off':>10}{'cost':>9}")
for name, col in [("4 KiB creates (files/s)", 1), ("seq read warm (MiB/s)", 2)]:
    off, on = med("off", col), med("on", col)
    print(f"{name:34}{off:12.0f}{on:12.0f}{on / off:10.3f}{(1 - on / off) * 100:8.1f}%")
for name, col in [("CPU ms per 1,000 creates", 3), ("CPU ms per GiB warm read", 4)]:
    off, on = med("off", col), med("on", col)
    print(f"{name:34}{off:12.1f}{on:12.1f}{on / off:10.3f}{(on / off - 1) * 100:8.1f}%")
print("(cost: the rate lost, or the CPU added, with telemetry on)")
EOF

# The same question answered without the noise: what one FUSE request's span and histogram
# record cost, in isolation.
echo
for level in info off; do
  (cd "$ROOT" && cargo run --release -q -p aether-telemetry --example op_cost -- "$level")
done
