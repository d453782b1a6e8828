#!/usr/bin/env bash
# What a mount holds in memory once it has seen a large tree: `bench/memory.sh [--quick | FILES]
# [BINDIR ...]` (`cargo xtask bench memory [--quick]`) builds a tree of FILES small files (default 100000, 500 to a directory), gives it to
# bindfs, to sshfs (over ssh on loopback) and to rclone (`serve webdav` + `mount` with its full
# VFS cache), and imports it as a source for aether: one session of it, mounted by each BINDIR's
# `aether` (default target/release) against that BINDIR's own `afs-server`. For every mount it
# prints the daemon's RSS idle after mounting, after `find -type f` and after a cold `ls -lR`,
# each walk's time, and the growth per file. Needs root, /dev/fuse, bindfs, sshfs, sshd, rclone.
set -euo pipefail

FILES=100000
if [ "${1:-}" = --quick ]; then FILES=20000; shift
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then FILES=$1; shift; fi
[ "$FILES" -ge 1 ] || { echo "FILES must be at least 1 (got $FILES)" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || set -- "$ROOT/target/release"
PER_DIR=500
TOKEN="00000000-0000-4000-8000-000000000001:bench"
for t in bindfs rclone sshfs sshd python3 bc; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install bindfs rclone sshfs openssh-server fuse3" >&2; exit 2; }
done
for b in "$@"; do
  [ -x "$b/aether" ] && [ -x "$b/afs-server" ] || { echo "no aether and afs-server in $b: cargo build --release -p aether -p afs-server" >&2; exit 2; }
done

W=$(mktemp -d /tmp/aether-memory.XXXXXX)
PIDS=""
cleanup() {
  set +e
  for m in "$W"/mnt/*; do mountpoint -q "$m" && umount -l "$m"; done
  [ -f "$W/ssh/pid" ] && kill "$(cat "$W/ssh/pid")"
  kill $PIDS 2>/dev/null
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/tree" "$W/mnt"

# The tree: small files of varied sizes, nested one level below each top directory.
python3 - "$W/tree" "$FILES" "$PER_DIR" <<'EOF'
import os, sys
root, files, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    d = f"{root}/d{i // per_dir:04}/sub{(i // per_dir) % 7}"
    if i % per_dir == 0:
        os.makedirs(d)
    with open(f"{d}/file_{i % per_dir:04}.rs", "w") as f:
        f.write("x" * (i % 300))
EOF
tar cf "$W/tree.tar" -C "$W/tree" .

now() { date +%s.%N; }
rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
printf "%-40s %12s %12s %12s %9s %9s %14s\n" mount "idle KiB" "find KiB" "ls -lR KiB" "find s" "ls -lR s" "bytes a file"

# measure NAME DIR PID: the walks and the daemon's RSS around them.
measure() {
  local name=$1 dir=$2 pid=$3 idle after_find after_ls t0 t1 t2 n
  sleep 1
  idle=$(rss_of "$pid")
  drop_caches
  t0=$(now)
  n=$(find "$dir" -type f | wc -l)
  t1=$(now)
  after_find=$(rss_of "$pid")
  drop_caches
  t1b=$(now)
  ls -lR "$dir" > /dev/null
  t2=$(now)
  after_ls=$(rss_of "$pid")
  [ "$n" = "$FILES" ] || { echo "$name: find saw $n files, not $FILES" >&2; exit 1; }
  printf "%-40s %12s %12s %12s %9.2f %9.2f %14.0f\n" "$name" "$idle" "$after_find" "$after_ls" \
    "$(echo "$t1 - $t0" | bc -l)" "$(echo "$t2 - $t1b" | bc -l)" "$(echo "($after_ls - $idle) * 1024 / $FILES" | bc -l)"
}

# --- peers ---
mkdir -p "$W/mnt/bindfs"
bindfs "$W/tree" "$W/mnt/bindfs"
measure bindfs "$W/mnt/bindfs" "$(pgrep -n -f "bindfs $W/tree")"

RPORT=18091
rclone serve webdav "$W/tree" --addr 127.0.0.1:$RPORT >/dev/null 2>&1 & PIDS="$PIDS $!"
sleep 1
mkdir -p "$W/mnt/rclone"
rclone mount :webdav: "$W/mnt/rclone" --webdav-url http://127.0.0.1:$RPORT --vfs-cache-mode full \
  --cache-dir "$W/rclone-cache" --daemon
measure rclone "$W/mnt/rclone" "$(pgrep -n -f "rclone mount :webdav: $W/mnt/rclone")"

mkdir -p "$W/ssh" /run/sshd /root/.ssh
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/key" && ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/hostkey"
cat "$W/ssh/key.pub" >> /root/.ssh/authorized_keys
/usr/sbin/sshd -p 2223 -h "$W/ssh/hostkey" -o ListenAddress=127.0.0.1 -o PermitRootLogin=prohibit-password -o PidFile="$W/ssh/pid"
sleep 0.5
mkdir -p "$W/mnt/sshfs"
sshfs -p 2223 root@127.0.0.1:"$W/tree" "$W/mnt/sshfs" \
  -o IdentityFile="$W/ssh/key",StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null
measure sshfs "$W/mnt/sshfs" "$(pgrep -n -f "sshfs -p 2223")"

# --- ours, once per build ---
i=0
for b in "$@"; do
  i=$((i + 1)); bin=$(realpath "$b"); run="$W/aether-$i"; mkdir -p "$run" "$W/mnt/aether-$i"
  "$bin/afs-server" --listen 127.0.0.1:0 --data-dir "$run/data" > "$run/server.out" 2> "$run/server.err" & PIDS="$PIDS $!"
  for _ in $(seq 100); do grep -q listening "$run/server.out" 2>/dev/null && break; sleep 0.1; done
  export AFS_AETHER_SERVER_ENDPOINT=http://$(sed -n 's/.*listening on http:\/\///p' "$run/server.out") AFS_AUTH_TOKEN=$TOKEN
  src=$("$bin/aether" source create --name tree --archive "$W/tree.tar" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sourceId"])')
  sid=$("$bin/aether" session create --source-id "$src" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  "$bin/aether" mount --session-id "$sid" --mount-dir "$W/mnt/aether-$i" --cache-dir "$run/cache" > /dev/null
  measure "aether ($b)" "$W/mnt/aether-$i" "$(pgrep -n -f "aether mount --session-id $sid")"
  "$bin/aether" stop --session-id "$sid" --cache-dir "$run/cache" > /dev/null
done
