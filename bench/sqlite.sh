#!/usr/bin/env bash
# A SQLite database in a mount: `bench/sqlite.sh [RUNS] BINDIR [BINDIR ...]`, through a fresh
# aether mount of a fresh afs-server per build, beside the same database in a native directory
# in the same run. For each database size (256 KiB, 1 MiB, 4 MiB, 16 MiB of 4 KiB rows) and
# journal mode (`delete`, SQLite's default: a rollback journal created, synced and deleted per
# transaction; `wal`: a write-ahead log synced per transaction), 100 transactions of 5 updates
# of random rows, each committed with SQLite's default `synchronous` (every commit `fsync`s,
# which through a mount returns only once the server holds the data). Prints the median and
# 90th percentile commit time per size and mode, and per build the server's CPU time and the
# growth of its data directory over all (the blob collector does not run within a run).
# Builds to compare: `cargo build --release -p aether -p afs-server` in two checkouts. Needs
# root, /dev/fuse and python3 with its sqlite3 module.
set -euo pipefail

RUNS=1
if [[ ${1:-} =~ ^[0-9]+$ ]]; then RUNS=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [RUNS] BINDIR [BINDIR ...]" >&2; exit 2; }
# shellcheck source=bench/stack.sh
. "$(dirname "$0")/stack.sh"
stack_scratch aether-sqlite

# transactions DIR: one line per size and mode: "KiB mode median p90" (ms per commit).
transactions() {
  python3 - "$1" <<'PY'
import os, random, sqlite3, statistics, sys, time
where = sys.argv[1]
for kib in (256, 1024, 4096, 16384):
    for mode in ("delete", "wal"):
        path = os.path.join(where, f"bench-{kib}-{mode}.db")
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"pragma journal_mode={mode}")
        db.execute("create table t(id integer primary key, v blob)")
        rows = kib // 4
        rng = random.Random(kib)
        db.execute("begin")
        for i in range(rows):
            db.execute("insert into t values (?, ?)", (i, rng.randbytes(3900)))
        db.execute("commit")
        times = []
        for _ in range(100):
            t = time.perf_counter()
            db.execute("begin")
            for _ in range(5):
                db.execute("update t set v = ? where id = ?", (rng.randbytes(3900), rng.randrange(rows)))
            db.execute("commit")
            times.append((time.perf_counter() - t) * 1000)
        db.close()
        times.sort()
        print(f"{kib} {mode} {statistics.median(times):.2f} {times[89]:.2f}")
PY
}

one() {
  local bin; bin=$(realpath "$1")
  local run="$W/run"
  stack_up "$bin" "$run" $((64 << 20))
  mkdir -p "$W/native"; rm -f "$W"/native/*
  local s0 d0 ours native; s0=$(cpu "$SP"); d0=$(du -sk "$run/data" | cut -f1)
  ours=$(transactions "$run/mnt")
  local s1 d1; s1=$(cpu "$SP"); d1=$(du -sk "$run/data" | cut -f1)
  native=$(transactions "$W/native")
  echo "$1: server CPU $(awk -v a="$s1" -v b="$s0" 'BEGIN{printf "%.2f", a-b}') s, data directory grew $(((d1 - d0) / 1024)) MiB over 800 commits"
  paste <(echo "$ours") <(echo "$native") | awk '{printf "  %6d KiB %-6s commit median %6.2f ms  p90 %6.2f ms   native %5.2f / %5.2f ms   (%.0f x native)\n", $1, $2, $3, $4, $7, $8, ($7 > 0 ? $3 / $7 : 0)}'
  stack_down "$bin" "$run"
}

for _ in $(seq "$RUNS"); do
  for b in "$@"; do one "$b"; done
done
