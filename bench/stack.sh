# Sourced by the bench scripts that compare builds: starts one build's stack in a fresh
# directory. `stack_up BINDIR RUN MAX_FILE_BYTES` starts afs-server (data in RUN/data), creates
# a session and mounts it at RUN/mnt (cache in RUN/cache); it sets SP (the server's pid), SID
# (the session) and RP (the mount runtime's pid). `stack_down BINDIR RUN` stops both.
# `cpu PID` prints the CPU seconds PID has used. `stack_scratch NAME` makes the scratch
# directory W (/tmp/NAME.XXXXXX) and, at exit, unmounts RUN=$W/run, stops its server and removes W.

TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }

stack_up() {
  local bin=$1 run=$2 max=$3
  rm -rf "$run"; mkdir -p "$run/mnt"
  "$bin/afs-server" --listen 127.0.0.1:0 --data-dir "$run/data" --max-file-bytes "$max" \
    > "$run/server.out" 2> "$run/server.err" & SP=$!
  for _ in $(seq 100); do grep -q listening "$run/server.out" 2>/dev/null && break; sleep 0.1; done
  local ep; ep=http://$(sed -n 's/.*listening on http:\/\///p' "$run/server.out")
  export AFS_AETHER_SERVER_ENDPOINT=$ep AFS_AUTH_TOKEN="00000000-0000-4000-8000-000000000001:bench"
  SID=$(curl -sf -X POST "$ep/v1/sessions" -H "Authorization: Bearer $AFS_AUTH_TOKEN" -d '{}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  "$bin/aether" mount --session-id "$SID" --mount-dir "$run/mnt" --cache-dir "$run/cache" > /dev/null
  RP=$(pgrep -f "aether mount --session-id $SID" | head -1)
}

stack_down() {
  local bin=$1 run=$2
  "$bin/aether" stop --session-id "$SID" --cache-dir "$run/cache" > /dev/null 2>&1 || true
  kill "$SP"; wait "$SP" 2>/dev/null || true; SP=""
}

stack_scratch() {
  W=$(mktemp -d "/tmp/$1.XXXXXX")
  trap stack_scratch_cleanup EXIT
}

stack_scratch_cleanup() {
  mountpoint -q "$W/run/mnt" && fusermount3 -u "$W/run/mnt" 2>/dev/null || true
  [ -n "${SP:-}" ] && kill "$SP" 2>/dev/null || true
  rm -rf "$W"
}
