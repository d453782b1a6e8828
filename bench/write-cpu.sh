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
  mountpoint -q "$W/run/mnt" && fusermount3 -u "$W/run/mnt" 2>/dev/null || true
  [ -n "${SP:-}" ] && kill "$SP" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
head -c $((SIZE_MB << 20)) /dev/urandom > "$W/src.bin"
# shellcheck source=bench/stack.sh
. "$(dirname "$0")/stack.sh"

one() {
  local bin; bin=$(realpath "$1")
  local run="$W/run"
  stack_up "$bin" "$run" $(((SIZE_MB + 64) << 20))
  local rp=$RP
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
  stack_down "$bin" "$run"
}

for _ in $(seq "$RUNS"); do
  for b in "$@"; do one "$b"; done
done
