#!/usr/bin/env bash
# Small changes of large files: `bench/edits.sh [RUNS] BINDIR [BINDIR ...]`, through a fresh
# aether mount of a fresh afs-server per build, beside the same changes on a native file in the
# same run.
# - Edits with fsync (what a database in a mount does): a 256 MiB file, then 20 edits of each
#   kind, each one pwrite of 4 KiB and an fsync: `random` (one page anywhere), `head` (page 0
#   and one page anywhere, as SQLite changes its header on every commit) and `append`. Prints
#   per kind the median and 90th percentile fsync time, and per build the server's CPU time and
#   the growth of its blob directory over all the edits.
# - Appends with close (a log written by one `echo >>` after another): 200 lines appended to a
#   64 MiB file, each with its own open and close. Prints the total time and the mount
#   runtime's CPU time.
# Builds to compare: `cargo build --release -p aether -p afs-server` in two checkouts. Needs
# root and /dev/fuse.
set -euo pipefail

RUNS=1
if [[ ${1:-} =~ ^[0-9]+$ ]]; then RUNS=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [RUNS] BINDIR [BINDIR ...]" >&2; exit 2; }
SIZE_MB=256
# shellcheck source=bench/stack.sh
. "$(dirname "$0")/stack.sh"
stack_scratch aether-patch-fsync

# edits FILE: makes the edits, prints one line per kind (median and p90 of fsync, in ms).
edits() {
  python3 - "$1" "$SIZE_MB" <<'PY'
import os, random, statistics, sys, time
path, mb = sys.argv[1], int(sys.argv[2])
size = mb << 20
if not os.path.exists(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    block = os.urandom(1 << 20)
    for i in range(mb):
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
rng = random.Random(7)
page = 4096
fd = os.open(path, os.O_RDWR)
out = []
for kind in ("random", "head", "append"):
    times = []
    for _ in range(20):
        data = rng.randbytes(page)
        if kind == "append":
            os.pwrite(fd, data, os.fstat(fd).st_size)
        else:
            if kind == "head":
                os.pwrite(fd, data, 0)
            os.pwrite(fd, data, rng.randrange(size // page) * page)
        t = time.perf_counter()
        os.fsync(fd)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    out.append(f"{kind} {statistics.median(times):.1f} {times[int(0.9 * len(times)) - 1]:.1f}")
os.close(fd)
print("\n".join(out))
PY
}

# appends FILE [PID]: 200 lines appended, each with its own open and close; prints the
# seconds, and the CPU seconds process PID used meanwhile.
appends() {
  python3 - "$1" "${2:-}" <<'PY'
import os, sys, time
path, pid = sys.argv[1], sys.argv[2]
def cpu():
    if not pid:
        return 0.0
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
with open(path, "wb") as f:
    block = os.urandom(1 << 20)
    for _ in range(64):
        f.write(block)
    f.flush()
    os.fsync(f.fileno())
time.sleep(1)
c, t = cpu(), time.perf_counter()
for i in range(200):
    with open(path, "ab") as f:
        f.write(f"line {i} of the log, appended and closed\n".encode())
print(f"{time.perf_counter() - t:.3f} {cpu() - c:.2f}")
PY
}

one() {
  local bin; bin=$(realpath "$1")
  local run="$W/run"
  stack_up "$bin" "$run" $(((SIZE_MB + 64) << 20))
  # The whole file first (not measured), then the edits.
  edits "$run/mnt/db.bin" > /dev/null
  local s0 d0; s0=$(cpu "$SP"); d0=$(du -sk "$run/data" | cut -f1)
  rm -f "$W/native.bin"; edits "$W/native.bin" > /dev/null
  local ours native
  ours=$(edits "$run/mnt/db.bin")
  native=$(edits "$W/native.bin")
  local s1 d1; s1=$(cpu "$SP"); d1=$(du -sk "$run/data" | cut -f1)
  echo "$1: server CPU $(awk -v a="$s1" -v b="$s0" 'BEGIN{printf "%.2f", a-b}') s, blob store grew $(((d1 - d0) / 1024)) MiB over 60 edits"
  paste <(echo "$ours") <(echo "$native") | awk '{printf "  %-6s fsync median %7.1f ms  p90 %7.1f ms   native %5.1f / %5.1f ms   (%.0f x native)\n", $1, $2, $3, $5, $6, ($5 > 0 ? $2 / $5 : 0)}'
  local rp=$RP ours_log native_log
  ours_log=$(appends "$run/mnt/log.bin" "$rp")
  native_log=$(appends "$W/native.log" | cut -d' ' -f1)
  echo "$ours_log $native_log" | awk '{printf "  200 appends with close: %.3f s (runtime CPU %.2f s)   native %.4f s   (%.0f x native)\n", $1, $2, $3, $1 / $3}'
  stack_down "$bin" "$run"
}

for _ in $(seq "$RUNS"); do
  for b in "$@"; do one "$b"; done
done
