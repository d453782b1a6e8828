#!/usr/bin/env bash
# A mount under file churn: `bench/churn.sh [ROUNDS] BINDIR [BINDIR ...]`.
# For each build: a fresh afs-server and mount; ROUNDS rounds (4 by default) of 20 s of
# bench/churn.py in the mount (8 threads changing six files: rewrites, appends, truncations,
# renames over, in-place edits with fsync, deleted scratch files). After each round it prints
# the operations done, the mount runtime's RSS, its inode count (`aether debug sessions`), the
# files left in its staging directory and the cache's size on disk. The same churn in a native
# directory gives the operations a round does there. What a mount must not do under churn is
# grow: its inodes should stay at the tree's size, its staging directory empty, its memory
# and its cache bounded (`cache_max_bytes`, from the environment: CACHE_MAX_BYTES, default
# 1 GiB here so that the bound shows within a run).
# Builds to compare: `cargo build --release -p aether -p afs-server` in two checkouts. Needs
# root, /dev/fuse and python3.
set -euo pipefail

ROUNDS=4
if [[ ${1:-} =~ ^[0-9]+$ ]]; then ROUNDS=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [ROUNDS] BINDIR [BINDIR ...]" >&2; exit 2; }
SECS=20
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/stack.sh
. "$HERE/stack.sh"
stack_scratch aether-churn
export AFS_AETHER_CACHE_MAX_BYTES=${CACHE_MAX_BYTES:-1073741824}

mkdir -p "$W/native"
for round in $(seq "$ROUNDS"); do
  echo "native round $round: $(python3 "$HERE/churn.py" "$W/native" "$SECS")"
done
rm -rf "$W/native"

for bin in "$@"; do
  echo "== $bin (cache_max_bytes $AFS_AETHER_CACHE_MAX_BYTES)"
  stack_up "$bin" "$W/run" $((1 << 30))
  state() {
    local inodes staging cache rss
    inodes=$("$bin/aether" debug sessions --session-id "$SID" --cache-dir "$W/run/cache" --json 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["sessions"][0]["inodes"])' 2>/dev/null || echo "?")
    staging=$(find "$W/run/cache/$SID/content/staging" -type f 2>/dev/null | wc -l)
    cache=$(du -sm "$W/run/cache" 2>/dev/null | cut -f1)
    rss=$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$RP/status")
    echo "RSS $rss MiB, inodes $inodes, staging files $staging, cache $cache MiB"
  }
  echo "at rest: $(state)"
  for round in $(seq "$ROUNDS"); do
    ops=$(python3 "$HERE/churn.py" "$W/run/mnt" "$SECS")
    sleep 1
    echo "round $round: $ops; $(state)"
  done
  stack_down "$bin" "$W/run"
  rm -rf "$W/run"
done
