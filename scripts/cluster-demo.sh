#!/usr/bin/env bash
# A three-node Shoal cluster on this machine: redis-server, a synthetic origin (the CDN's part)
# and three `shoal serve` nodes running every role (API, tracker, STUN, pingback) that share
# state through Redis. Prints the dashboard URLs and how to play; Ctrl-C stops everything.
#
#   scripts/cluster-demo.sh            (make cluster-demo builds the release binary first)
#
# Environment: SHOAL_BIN (default target/release/shoal), REDIS_PORT (6390), ORIGIN_PORT (8080),
# NODE_PORTS ("8091 8092 8093"), STUN_PORTS ("3479 3480 3481"), DEMO_DIR (logs; a temp dir).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${SHOAL_BIN:-target/release/shoal}
REDIS_PORT=${REDIS_PORT:-6390}
ORIGIN_PORT=${ORIGIN_PORT:-8080}
read -r -a NODE_PORTS <<<"${NODE_PORTS:-8091 8092 8093}"
read -r -a STUN_PORTS <<<"${STUN_PORTS:-3479 3480 3481}"
DIR=${DEMO_DIR:-$(mktemp -d -t shoal-cluster-demo.XXXXXX)}
mkdir -p "$DIR"

[ -x "$BIN" ] || { echo "no $BIN: run 'make cluster-demo' (or cargo build --release -p shoal)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is not installed: run scripts/install-deps.sh" >&2; exit 1; }

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  # Only what this script started, newest first.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; logs in $DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait for a line starting with $2 in file $1 (at most 60 s); print it.
wait_line() {
  for _ in $(seq 1 600); do
    if line=$(grep -m1 "^$2" "$1" 2>/dev/null); then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $2 in $1" >&2
  tail -n 20 "$1" "${1%.out}.err" >&2 || true
  return 1
}

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >"$DIR/redis.log" 2>&1 &
PIDS+=($!)
REDIS="redis://127.0.0.1:$REDIS_PORT/0"

"$BIN" origin --synthetic --listen "127.0.0.1:$ORIGIN_PORT" >"$DIR/origin.out" 2>"$DIR/origin.err" &
PIDS+=($!)
KEY=$(wait_line "$DIR/origin.out" SHOAL_ORIGIN_KEY | awk '{print $2}')
MASTER=$(wait_line "$DIR/origin.out" SHOAL_ORIGIN_READY | awk '{print $3}')
CDN="http://127.0.0.1:$ORIGIN_PORT/live/{stream}/"

# Every node checks tickets minted by any other: one shared ticket key (with its key id).
TICKETS="k1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
APIS=()
for i in 0 1 2; do
  port=${NODE_PORTS[$i]}
  SHOAL_TICKETS_KEYS="$TICKETS" SHOAL_API_HOLDBACK_PERCENT=0 "$BIN" serve \
    --roles api,tracker,stun,pingback \
    --listen "127.0.0.1:$port" --stun-listen "127.0.0.1:${STUN_PORTS[$i]}" \
    --set "cluster.redis=$REDIS" --set "cluster.node_id=node$i" \
    --set auth.require_token=false \
    --set "api.origin_public_key=$KEY" --set "api.cdn=[\"$CDN\"]" \
    >"$DIR/node$i.out" 2>"$DIR/node$i.err" &
  PIDS+=($!)
  APIS+=("http://127.0.0.1:$port")
done
for i in 0 1 2; do wait_line "$DIR/node$i.out" SHOAL_SERVE_READY >/dev/null; done
API_LIST=$(IFS=,; echo "${APIS[*]}")

cat <<EOF

Shoal cluster demo: redis-server, an origin and three nodes (api, tracker, stun, pingback).

  Redis        $REDIS
  Origin/CDN   $MASTER
  Nodes        ${APIS[*]}
  Dashboard    ${APIS[0]}/dashboard   (the same figures on every node: ${APIS[1]}/dashboard)
  Cluster      ${APIS[0]}/v1/cluster  (registry, Redis link, backplane)

Play (each viewer joins through the first API that answers; run it twice to see peers share):

  $BIN play $MASTER --api $API_LIST

  add --headless to play without a player; without it, open the printed local URL in
  ffplay, mpv or VLC.

Try a failover: kill one node (its pid is in 'ps' as 'shoal serve ... node1') and watch
/v1/cluster and the viewers' logs; stop redis-server and start it again on port $REDIS_PORT.
Logs: $DIR. Ctrl-C stops everything.
EOF

# Stop everything when any process ends (a node that cannot start, Ctrl-C).
wait -n "${PIDS[@]}" || true
echo "a process of the demo ended; stopping the others" >&2
