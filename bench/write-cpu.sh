#!/usr/bin/env bash
# Where a large write's CPU goes: `bench/write-cpu.sh [RUNS] BINDIR [BINDIR ...]` writes 1 GiB
# through a fresh aether mount of a fresh afs-server (1 MiB writes, then fsync, page cache
# dropped before each run), once per build directory in turn, RUNS rounds (default 3), and
# prints per run: MiB/s, the time spent in write and in fsync, and the CPU seconds the mount
# runtime and the server used. Builds to compare: `cargo build --release -p aether -p
# afs-server` in two checkouts. Needs root and /dev/fuse.
set -euo pipefail

RUNS=3
if [[ ${1:-} =~ ^[0-9]+$ ]]; then RUNS=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [RUNS] BINDIR [BINDIR ...]" >&2; exit 2; }
SIZE_MB=1024
W=$(mktemp -d /tmp/aether-write-cpu.XXXXXX)
cleanup() {
  mountpoint -q "$W/mnt" && fusermount3 -u "$W/mnt" 2>/dev/null || true
  [ -n "${SP:-}" ] && kill "$SP" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
head -c $((SIZE_MB << 20)) /dev/urandom > "$W/src.bin"
TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }

one() {
  local bin; bin=$(realpath "$1")
  local run="$W/run"; rm -rf "$run"; mkdir -p "$run/mnt"
  "$bin/afs-server" --listen 127.0.0.1:0 --data-dir "$run/data" --max-file-bytes $(((SIZE_MB + 64) << 20)) \
    > "$run/server.out" 2> "$run/server.err" & SP=$!
  for _ in $(seq 100); do grep -q listening "$run/server.out" 2>/dev/null && break; sleep 0.1; done
  local ep; ep=http://$(sed -n 's/.*listening on http:\/\///p' "$run/server.out")
  export AFS_AETHER_SERVER_ENDPOINT=$ep AFS_AUTH_TOKEN="00000000-0000-4000-8000-000000000001:bench"
  local sid; sid=$(curl -sf -X POST "$ep/v1/sessions" -H "Authorization: Bearer $AFS_AUTH_TOKEN" -d '{}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  "$bin/aether" mount --session-id "$sid" --mount-dir "$run/mnt" --cache-dir "$run/cache" > /dev/null
  local rp; rp=$(pgrep -f "aether mount --session-id $sid" | head -1)
  sync; echo 3 > /proc/sys/vm/drop_caches; cat "$W/src.bin" > /dev/null; sleep 1
  local c0 s0; c0=$(cpu "$rp"); s0=$(cpu "$SP")
  local line
  line=$(python3 - "$W/src.bin" "$run/mnt/big.bin" "$SIZE_MB" <<'PY'
import os, sys, time
src = open(sys.argv[1], 'rb'); mb = int(sys.argv[3])
t0 = time.time()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
while True:
    b = src.read(1 << 20)
    if not b: break
    os.write(fd, b)
t1 = time.time(); os.fsync(fd); t2 = time.time(); os.close(fd)
print(f"{mb / (t2 - t0):.0f} MiB/s  write {t1 - t0:.2f} s  fsync {t2 - t1:.2f} s")
PY
)
  echo "$1: $line  runtime CPU $(awk -v a="$(cpu "$rp")" -v b="$c0" 'BEGIN{printf "%.2f", a-b}') s  server CPU $(awk -v a="$(cpu "$SP")" -v b="$s0" 'BEGIN{printf "%.2f", a-b}') s"
  "$bin/aether" stop --session-id "$sid" --cache-dir "$run/cache" > /dev/null 2>&1 || true
  kill "$SP"; wait "$SP" 2>/dev/null || true; SP=""
}

for _ in $(seq "$RUNS"); do
  for b in "$@"; do one "$b"; done
done
