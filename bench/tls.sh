#!/usr/bin/env bash
# tls.sh -- what TLS costs tagarela (docs/tls.md), with `tagarela bench`:
#   bench/tls.sh idle N        RSS per idle logged-in client, ws:// then wss://
#                              (N clients in rooms of 100, one event loop)
#   bench/tls.sh broadcast S [R]
#                              200 clients in one room, S senders (at R messages/s
#                              each, default: as fast as the window allows), the
#                              server on core 0 and the load generator on core 1:
#                              deliveries/s and server CPU per delivery, ws:// then wss://
#   bench/tls.sh storm         p50/p99 of deliveries to 50 wss:// clients (10 senders at
#                              100 messages/s), alone and while 3 x 500 new TLS clients
#                              connect at once (one event loop)
# Every measurement gets a fresh server and a certificate made here (ECDSA P-256).
# Environment: TAGARELA_BIN (default build/tagarela).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TAGARELA_BIN:-build/tagarela}
[[ $BIN = /* ]] || BIN=$PWD/$BIN
[[ -x $BIN ]] || { echo "tls.sh: no binary at $BIN" >&2; exit 1; }
WORK=$(mktemp -d /tmp/tagarela-tls-bench.XXXXXX)
SERVER_PID=
cleanup() { [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# start_server tls|plain [pin...]: sets SERVER_PID and WS_URL
start_server() {
  local kind=$1; shift
  local tls=() scheme=ws
  if [[ $kind = tls ]]; then tls=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"); scheme=wss; fi
  rm -rf "$WORK/data" "$WORK/out"
  "$@" "$BIN" serve --ws 127.0.0.1:0 --http 127.0.0.1:0 --data "$WORK/data" --threads 1 \
    --rate 1e9 --burst 1e9 --max-conns-per-ip 10000000 "${tls[@]}" >"$WORK/out" 2>"$WORK/err" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "http listening" "$WORK/out" && break; sleep 0.05; done
  WS_URL="$scheme://127.0.0.1:$(sed -n 's/^ws listening on .*://p' "$WORK/out")/"
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=; }

field() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

idle() {
  local n=$1
  for kind in plain tls; do
    start_server "$kind"
    "$BIN" bench --idle -n "$n" --rooms $(( (n + 99) / 100 )) -d 3 -q --json --server-pid "$SERVER_PID" \
      "$WS_URL" >"$WORK/idle.json"
    stop_server
    echo "$kind: $(field "$WORK/idle.json" "'%d clients, %.0f bytes per idle connection, logins %.0f/s' % (d['logged_in'], d['server']['rss_bytes_per_client'], d['login']['per_s'])")"
  done
}

broadcast() {
  local s=$1 rate=${2:-0}
  for kind in plain tls; do
    start_server "$kind" taskset -c 0
    taskset -c 1 "$BIN" bench -n 200 -s "$s" -r "$rate" -d 5 -t 1 -q --json --server-pid "$SERVER_PID" \
      "$WS_URL" >"$WORK/b.json"
    stop_server
    echo "$kind: $(field "$WORK/b.json" "'%.0f deliveries/s, server CPU %.0f ns per delivery, p99 %.1f ms, lost %d' % (d['deliveries_per_s'], d['server']['cpu_s'] * 1e9 / d['deliveries'], d['latency_ms']['p99'], d['lost'])")"
  done
}

storm() {
  for with in alone storm; do
    start_server tls
    "$BIN" bench -n 50 -s 10 -r 100 -d 6 -t 1 -q --json --room chat "$WS_URL" >"$WORK/lat.json" &
    local bp=$!
    if [[ $with = storm ]]; then
      sleep 2.5
      for _ in 1 2 3; do
        "$BIN" bench --idle -n 500 --max-connecting 500 -d 0.3 -t 1 -q --json --rooms 5 --room storm \
          "$WS_URL" >/dev/null
      done
    fi
    wait "$bp"
    stop_server
    echo "$with: $(field "$WORK/lat.json" "'deliveries p50 %.1f ms, p99 %.1f ms, lost %d' % (d['latency_ms']['p50'], d['latency_ms']['p99'], d['lost'])")"
  done
}

case ${1:-} in
  idle) idle "${2:-5000}" ;;
  broadcast) broadcast "${2:-50}" "${3:-0}" ;;
  storm) storm ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
