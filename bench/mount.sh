#!/usr/bin/env bash
# The mount benchmark (`cargo xtask bench mount [--quick] [--fuse-wake-here] [--guest-halt-poll]`): one run, side by side, of a native
# directory, bindfs (the FUSE floor), rclone mount (--vfs-cache-mode full) of rclone serve
# webdav, sshfs over loopback, and an aether mount of an afs-server on loopback.
# Rows: sequential write + fsync (every target's three rounds interleaved, the median kept),
# sequential read cold and warm, 10,000 4 KiB creates in 100
# directories, ls -lR cold and warm, and a real workload (copy a crate's source in, git add +
# commit, grep -r). Prints a table; times are seconds unless a unit says otherwise.
# Needs root, /dev/fuse and: apt-get install bindfs rclone sshfs openssh-server fuse3 git
set -euo pipefail

QUICK=0
# --fuse-wake-here: run every FUSE target with the kernel's `fuse.wake_here` parameter on (a
# parameter some kernels carry, this CI kind's among them: the two ends of a FUSE request wake each
# other on the CPU they run on instead of another one). The previous value is restored at exit.
WAKE_HERE=""
WAKE_PARAM=/sys/module/fuse/parameters/wake_here
# --guest-halt-poll: on a virtual machine whose idle driver is cpuidle-haltpoll, let an idle vCPU
# poll for 200 µs before it halts (`haltpoll.guest_halt_poll_ns`), so that waking it costs no exit
# to the host. Restored at exit too.
HALT_POLL=""
HALT_PARAM=/sys/module/haltpoll/parameters/guest_halt_poll_ns
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    --fuse-wake-here) WAKE_HERE=Y ;;
    --guest-halt-poll) HALT_POLL=200000 ;;
    *) echo "unknown option $a (expected --quick, --fuse-wake-here, --guest-halt-poll)" >&2; exit 2 ;;
  esac
done
SIZE_MB=$([ $QUICK = 1 ] && echo 256 || echo 1024)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AETHER=$ROOT/target/release/aether
SERVER=$ROOT/target/release/afs-server
W=${BENCH_DIR:-/tmp/aether-bench}
TOKEN="00000000-0000-4000-8000-000000000001:bench"

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
need() { command -v "$1" >/dev/null || { echo "missing $1: apt-get install bindfs rclone sshfs openssh-server fuse3" >&2; exit 2; }; }
for t in bindfs rclone sshfs sshd git bc python3; do need "$t"; done
[ -x "$AETHER" ] && [ -x "$SERVER" ] || { echo "build first: cargo build --release -p aether -p afs-server" >&2; exit 2; }

cleanup() {
  set +e
  [ -n "${WAKE_BEFORE:-}" ] && echo "$WAKE_BEFORE" > "$WAKE_PARAM"
  [ -n "${HALT_BEFORE:-}" ] && echo "$HALT_BEFORE" > "$HALT_PARAM"
  for m in bindfs rclone sshfs aether; do umount -l "$W/mnt/$m" 2>/dev/null; done
  [ -n "${AETHER_SID:-}" ] && "$AETHER" stop --session-id "$AETHER_SID" --cache-dir "$W/aether-cache" >/dev/null 2>&1
  [ -f "$W/ssh/pid" ] && kill "$(cat "$W/ssh/pid")" 2>/dev/null   # sshd detaches: not in PIDS
  kill ${PIDS:-} 2>/dev/null
  wait 2>/dev/null
  rm -rf "$W" "$W.trash"
}
trap cleanup EXIT
PIDS=""
if [ -n "$WAKE_HERE" ]; then
  [ -w "$WAKE_PARAM" ] || { echo "--fuse-wake-here: this kernel has no writable $WAKE_PARAM" >&2; exit 2; }
  WAKE_BEFORE=$(cat "$WAKE_PARAM")
  echo Y > "$WAKE_PARAM"
fi
if [ -n "$HALT_POLL" ]; then
  [ -w "$HALT_PARAM" ] || { echo "--guest-halt-poll: no writable $HALT_PARAM (not a VM with cpuidle-haltpoll?)" >&2; exit 2; }
  HALT_BEFORE=$(cat "$HALT_PARAM")
  echo "$HALT_POLL" > "$HALT_PARAM"
fi
# Files deleted in the last ~30 s make every inode allocation on this ext4 slower (the kernel's
# `recently_deleted` scan, up to 100s of µs per create), so nothing is deleted while measuring:
# caches emptied for the cold rows are moved aside and removed at exit with everything else.
if [ -e "$W" ] || [ -e "$W.trash" ]; then
  # A run that was killed may have left its mounts and sshd behind: never recurse into a mount.
  for m in "$W"/mnt/*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  [ -f "$W/ssh/pid" ] && kill "$(cat "$W/ssh/pid")" 2>/dev/null
  rm -rf "$W" "$W.trash"; echo "removed a previous run's files; waiting 35 s for the file system to settle" >&2; sleep 35
fi
discard() { mkdir -p "$W.trash" && mv "$1" "$W.trash/$(basename "$1").$(date +%s%N)"; }
mkdir -p "$W"/{src,mnt,back}/ "$W"/mnt/{native,bindfs,rclone,sshfs,aether} "$W"/back/{bindfs,rclone,sshfs}

# Inputs: random bytes (no compression or dedup shortcuts; one file per write round, so that no
# round writes what an earlier one stored) and a real crate's source tree.
WRITE_ROUNDS=3
for r in $(seq $WRITE_ROUNDS); do head -c $((SIZE_MB << 20)) /dev/urandom > "$W/src/big-$r.bin"; done
CRATE=$(ls -d "$HOME"/.cargo/registry/src/*/tokio-1.* 2>/dev/null | sort -V | tail -1)
[ -n "$CRATE" ] || CRATE=$(ls -d "$HOME"/.cargo/registry/src/*/* | head -1)
cat > "$W/src/creates.py" <<'EOF'
import os, sys
d = sys.argv[1]
data = os.urandom(4096)
for i in range(100):
    os.makedirs(f"{d}/c/d{i}", exist_ok=True)
    for j in range(100):
        with open(f"{d}/c/d{i}/f{j}", "wb") as f:
            f.write(data)
EOF

# --- the peers ---
bindfs "$W/back/bindfs" "$W/mnt/bindfs"

RPORT=18081
rclone serve webdav "$W/back/rclone" --addr 127.0.0.1:$RPORT >/dev/null 2>&1 & PIDS="$PIDS $!"
sleep 1
rclone mount :webdav: "$W/mnt/rclone" --webdav-url http://127.0.0.1:$RPORT --vfs-cache-mode full --vfs-write-back 0s \
  --cache-dir "$W/rclone-cache" --daemon

mkdir -p "$W/ssh" && ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/key" && ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/hostkey"
mkdir -p /root/.ssh && cat "$W/ssh/key.pub" >> /root/.ssh/authorized_keys
mkdir -p /run/sshd
/usr/sbin/sshd -p 2222 -h "$W/ssh/hostkey" -o ListenAddress=127.0.0.1 -o PermitRootLogin=prohibit-password -o PidFile="$W/ssh/pid"
sleep 0.5
sshfs -p 2222 root@127.0.0.1:"$W/back/sshfs" "$W/mnt/sshfs" \
  -o IdentityFile="$W/ssh/key",StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null

# --- ours ---
"$SERVER" --listen 127.0.0.1:0 --data-dir "$W/aether-data" --max-file-bytes $(((SIZE_MB + 64) << 20)) > "$W/server.out" 2>"$W/server.err" & PIDS="$PIDS $!"
for _ in $(seq 50); do grep -q listening "$W/server.out" 2>/dev/null && break; sleep 0.1; done
ENDPOINT=http://$(sed -n 's/.*listening on http:\/\///p' "$W/server.out")
export AFS_AETHER_SERVER_ENDPOINT=$ENDPOINT AFS_AUTH_TOKEN=$TOKEN
AETHER_SID=$(curl -s -X POST "$ENDPOINT/v1/sessions" -H "Authorization: Bearer $TOKEN" -d '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
mount_aether() { "$AETHER" mount --session-id "$AETHER_SID" --mount-dir "$W/mnt/aether" --cache-dir "$W/aether-cache" >/dev/null; }
remount_aether_cold() {
  "$AETHER" stop --session-id "$AETHER_SID" --cache-dir "$W/aether-cache" >/dev/null
  discard "$W/aether-cache"
  mount_aether
}
mount_aether
rss() { ps -o rss= -p "$(pgrep -f "aether mount --session-id $AETHER_SID" | head -1)" 2>/dev/null | tr -d ' ' || echo '?'; }
sleep 1
IDLE_RSS=$(rss)

# rclone uploads in the background: waits until its server holds everything (the last round's
# big file whole, too), so that neither a cold row nor the next target's rows share the CPU with
# that upload.
rclone_settle() {
  local big=${1:-big-$WRITE_ROUNDS.bin}
  for _ in $(seq 600); do
    [ "$(find "$W/back/rclone" -type f | wc -l)" = "$(find "$W/mnt/rclone" -type f | wc -l)" ] \
      && [ "$(stat -c %s "$W/back/rclone/$big" 2>/dev/null)" = "$((SIZE_MB << 20))" ] && break
    sleep 0.5
  done
}

# Remounts a target with empty caches (for the cold rows).
cold() {
  case $1 in
    aether) remount_aether_cold ;;
    rclone) rclone_settle
            umount -l "$W/mnt/rclone"; sleep 1; discard "$W/rclone-cache"
            rclone mount :webdav: "$W/mnt/rclone" --webdav-url http://127.0.0.1:$RPORT --vfs-cache-mode full --vfs-write-back 0s --cache-dir "$W/rclone-cache" --daemon ;;
  esac
  drop_caches
}

# BENCH_TARGETS narrows a run to some of the targets (say "native aether") while iterating.
TARGETS=${BENCH_TARGETS:-native bindfs rclone sshfs aether}
declare -A R
# The write row first, for every target in turn, three rounds, each target's figure the median of
# its rounds: its `fsync` waits for the disk, whose speed on this VM drifts over a run (a native
# write + fsync of 1 GiB measured 600 to 1,280 MiB/s in one hour), so each target's rounds are
# spread over the same stretch of time instead of falling wherever its other rows put them.
# Every round starts alike: earlier writes on the disk (not flushed by the kernel in the middle of
# this one), the page cache empty but for the round's source.
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
echo "== write rounds" >&2
for r in $(seq $WRITE_ROUNDS); do
  for t in $TARGETS; do
    drop_caches
    cat "$W/src/big-$r.bin" > /dev/null
    sleep 1
    s=$(now); dd if="$W/src/big-$r.bin" of="$W/mnt/$t/big-$r.bin" bs=1M conv=fsync status=none
    R[$t,write_$r]=$(since "$s")
    if [ "$t" = rclone ]; then rclone_settle "big-$r.bin"; fi
  done
done
for t in $TARGETS; do
  R[$t,write]=$(median $(for r in $(seq $WRITE_ROUNDS); do echo "${R[$t,write_$r]}"; done))
done
BIG=big-$WRITE_ROUNDS.bin
for t in $TARGETS; do
  d=$W/mnt/$t
  echo "== $t" >&2
  cold "$t"
  s=$(now); cat "$d/$BIG" > /dev/null; R[$t,read_cold]=$(since "$s")
  s=$(now); cat "$d/$BIG" > /dev/null; R[$t,read_warm]=$(since "$s")
  sync; sleep 1   # earlier rows' dirty pages reach the disk first, for every target alike
  s=$(now); python3 "$W/src/creates.py" "$d"; R[$t,creates]=$(since "$s")
  cold "$t"
  s=$(now); ls -lR "$d/c" > /dev/null; R[$t,ls_cold]=$(since "$s")
  s=$(now); ls -lR "$d/c" > /dev/null; R[$t,ls_warm]=$(since "$s")
  # The workload's inputs (the crate's files, the git, cp and grep programs) in the page cache for
  # every target alike: the cold rows above emptied it, and reading them from disk is not the mount's work.
  find "$CRATE" -type f -exec cat {} + > /dev/null
  for p in git cp grep; do "$p" --version > /dev/null; done
  sync; sleep 1
  s=$(now)
  cp -r "$CRATE" "$d/crate"
  (cd "$d/crate" && git init -q . && git add -A && git -c user.email=b@e -c user.name=b commit -qm bench && grep -r "fn " . > /dev/null)
  R[$t,workload]=$(since "$s")
  if [ "$t" = rclone ]; then rclone_settle; fi
done

mbps() { echo "$SIZE_MB / $1" | bc -l; }
printf '\n%-34s' "row"; for t in $TARGETS; do printf '%12s' "$t"; done; printf '%16s\n' "aether/ratio"
row() { # name key kind(time|rate|mbps) ratio-against
  printf '%-34s' "$1"
  for t in $TARGETS; do
    v=${R[$t,$2]:-}
    case $3 in
      mbps) printf '%12.0f' "$(mbps "$v")" ;;
      rate) printf '%12.0f' "$(echo "10000 / $v" | bc -l)" ;;
      time) printf '%12.3f' "$v" ;;
    esac
  done
  if [ -n "${R[aether,$2]:-}" ] && [ -n "${R[$4,$2]:-}" ]; then
    printf '%16.2f\n' "$(echo "${R[aether,$2]} / ${R[$4,$2]}" | bc -l)"
  else
    printf '%16s\n' "-"
  fi
}
row "seq write ${SIZE_MB} MiB + fsync (MiB/s)" write mbps native
row "seq read cold (MiB/s)" read_cold mbps native
row "seq read warm (MiB/s)" read_warm mbps bindfs
row "10k 4 KiB creates (files/s)" creates rate native
row "ls -lR 10k cold (s)" ls_cold time native
row "ls -lR 10k warm (s)" ls_warm time native
row "crate copy+git commit+grep (s)" workload time native
echo "(aether/ratio: aether's time over native's, or over bindfs's for the warm read; <1 is faster)"
echo "crate: $CRATE"
echo "fuse wake_here: $(cat "$WAKE_PARAM" 2>/dev/null || echo 'not in this kernel')"
echo "guest_halt_poll_ns: $(cat "$HALT_PARAM" 2>/dev/null || echo 'no haltpoll driver')"
echo "aether runtime RSS: ${IDLE_RSS} KiB idle after mounting, $(rss) KiB after the run"
printf 'write rounds (MiB/s; the row is their median):'
for t in $TARGETS; do
  printf ' %s' "$t"
  for r in $(seq $WRITE_ROUNDS); do printf ' %.0f' "$(mbps "${R[$t,write_$r]}")"; done
  printf ';'
done
echo
