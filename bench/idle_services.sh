#!/bin/bash
# What N idle services cost a server: processes under `nimbus serve` and its resident memory,
# right after applying them and again once spares have expired (5 min), beside an empty server
# of the same build measured first.
#
#   bench/idle_services.sh [BIN_DIR (default target/release)] [N (default 1000)] [WAIT_S (default 360)]
#
# The services are host processes (nimbus-test-app) with initial-scale 0: idle from the start.
set -euo pipefail
BIN_DIR=${1:-target/release}
N=${2:-1000}
WAIT_S=${3:-360}
NIMBUS=$(realpath "$BIN_DIR/nimbus")
APP=$(realpath "$BIN_DIR/nimbus-test-app")
DIR=$(mktemp -d)
trap 'kill $(cat "$DIR/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$DIR"' EXIT

start() {
  rm -rf "$DIR/data"
  "$NIMBUS" serve --data-dir "$DIR/data" --http-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 >"$DIR/log" 2>&1 &
  echo $! >"$DIR/pid"
  until grep -qs "nimbus: ready" "$DIR/log"; do sleep 0.2; done
}
descendants() { for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done; }
measure() {
  local pid; pid=$(cat "$DIR/pid")
  printf '%-34s processes: %4d   RSS: %4d MiB\n' "$1" "$(descendants "$pid" | wc -l)" \
    "$(( $(awk '/VmRSS/{print $2}' /proc/"$pid"/status) / 1024 ))"
}

start; sleep 2; measure "empty server"; kill "$(cat "$DIR/pid")"; sleep 1
start
for i in $(seq 1 "$N"); do
  printf -- '---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s%d\nspec:\n  template:\n    metadata:\n      annotations:\n        nimbus.dev/runtime: process\n        autoscaling.knative.dev/initial-scale: "0"\n    spec:\n      containers:\n        - command: ["%s"]\n' "$i" "$APP"
done >"$DIR/all.yaml"
server=$(grep -o "API listening on http://[0-9.:]*" "$DIR/log" | awk '{print $4}')
"$NIMBUS" apply --server "$server" --data-dir "$DIR/data" -f "$DIR/all.yaml" >/dev/null
sleep 20; measure "$N idle services, 20 s after apply"
sleep "$WAIT_S"; measure "$N idle services, $((WAIT_S + 20)) s after"
