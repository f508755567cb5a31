#!/usr/bin/env bash
# run.sh -- `make bench`: tagarela, uWebSockets.js and Node ws, one after the
# other, on the same scenarios, with `tagarela bench` as the load generator.
#
# Each server runs alone on core 0 (tagarela with one event loop), the load
# generator on core 1, and every measurement gets a fresh server. Results:
#   bench/results/<server>-<scenario>.json   one `tagarela bench --json` run each
#   bench/results/summary.json               the numbers side by side, machine, versions
#   bench/results/table.md                   the table with ratios and the issue's targets
#   bench/results/bench.png                  the chart
# Scenarios: fanout (1000 clients in one room, 10 senders), peak (200
# clients in one room; a sweep of sender counts, then the best one 5 times,
# median), latency (p99 at half of that peak's message rate), latency-light
# (the same 40,000 deliveries/s for every server; tagarela also with
# permessage-deflate: deflate-light), idle (20,000
# logged-in clients in rooms of 100: RSS per connection), login (5000 logins
# in rooms of 100).
#
# Environment: TAGARELA_BIN (default build/tagarela; this script builds
# nothing), BENCH_QUICK=1 (small numbers, about a minute), BENCH_SERVERS
# (default "tagarela uws node-ws"), BENCH_OUT (default bench/results),
# BENCH_DATA_DIR (where tagarela's data goes; default /tmp), BENCH_RETRIES,
# BENCH_NOISE_PCT (a run disturbed by others is run again; see below).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
BIN=${TAGARELA_BIN:-build/tagarela}
[[ $BIN = /* ]] || BIN=$ROOT/$BIN
OUT=${BENCH_OUT:-bench/results}
SERVERS=${BENCH_SERVERS:-"tagarela uws node-ws"}
QUICK=${BENCH_QUICK:-0}

if [[ $QUICK = 1 ]]; then
  FANOUT_N=200  FANOUT_S=10 FANOUT_D=2
  PEAK_N=200    PEAK_SWEEP="10" PEAK_SWEEP_D=2 PEAK_D=2 PEAK_REPEAT=0
  IDLE_N=2000   IDLE_D=1
  LOGIN_N=1000
  LAT_D=2
  : "${BENCH_RETRIES:=0}"
else
  FANOUT_N=1000 FANOUT_S=10 FANOUT_D=5
  PEAK_N=200    PEAK_SWEEP="10 50" PEAK_SWEEP_D=3 PEAK_D=5 PEAK_REPEAT=5
  IDLE_N=20000  IDLE_D=3
  LOGIN_N=5000
  LAT_D=5
fi
LIGHT_S=10 LIGHT_RATE=20  # a light load: 200 messages/s, 40,000 deliveries/s
ROOM_SIZE=100       # clients per room in the idle and login scenarios
# A message still queued when sending stops is waited for (up to 10 s),
# so that a slow server's late deliveries are not counted as lost; logins
# get LOGIN_TIMEOUT s (Node ws logs in 20,000 clients at well under 1000/s).
SEND_OPTS=(--drain 10)
LOGIN_TIMEOUT=120
LAT_WINDOW=64       # room enough that the window never holds a paced sender back

die() { echo "bench: $*" >&2; exit 1; }
[[ -x $BIN ]] || die "no tagarela binary at $BIN (run 'make build' or set TAGARELA_BIN)"
"$BIN" bench --help >/dev/null 2>&1 || die "$BIN has no 'bench' command yet"
command -v node >/dev/null || die "node is not installed"
command -v taskset >/dev/null || die "taskset (util-linux) is not installed"

# Server on core 0, load generator on core 1: they never compete for a core.
if (( $(nproc) >= 2 )); then
  PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
else
  echo "bench: only one core: nothing pinned, numbers are not comparable to the README's" >&2
  PIN_SERVER=() PIN_LOAD=()
fi

# 20,000 clients are 20,000 descriptors on each side: raise the soft limit
# to the hard one, and ask for more (root may). Where the hard limit cannot
# be raised (a container without CAP_SYS_RESOURCE), the idle scenario is
# sized to fit under it, and says so.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) >= IDLE_N + 256 )) || ulimit -n $((IDLE_N + 4096)) 2>/dev/null || true
if (( $(ulimit -n) < IDLE_N + 256 )); then
  echo "bench: ulimit -n is $(ulimit -n): the idle scenario holds $(( $(ulimit -n) - 256 )) clients, not $IDLE_N" >&2
  IDLE_N=$(( $(ulimit -n) - 256 ))
fi

TMP=$(mktemp -d /tmp/tagarela-bench.XXXXXX)
# tagarela stores every message in SQLite (WAL) under --data: on disk by
# default, as users run it; BENCH_DATA_DIR=/dev/shm takes the disk out.
DATA_ROOT=$(mktemp -d "${BENCH_DATA_DIR:-/tmp}/tagarela-bench-data.XXXXXX")
SERVER_PID=""
FAILED=0

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  rm -rf "${DATA_ROOT:?}/data"
}
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  stop_server
  rm -rf "$TMP" "$DATA_ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Does the binary take --threads (one event loop pinned with the server)?
THREADS_OPT=()
if "$BIN" serve --help 2>&1 | grep -q -- '--threads'; then
  THREADS_OPT=(--threads 1)
else
  echo "bench: this tagarela has no --threads; it runs with its default" >&2
fi

# start_server NAME LOG: starts NAME on a free port; sets SERVER_PID, PORT.
start_server() {
  local name=$1 log=$2
  PORT=$(free_port)
  case $name in
    tagarela)
      # A fresh data directory per run, deleted with the server (stop_server):
      # an earlier run's WAL must not be written back during this one.
      local data=$DATA_ROOT/data
      # Per-client rate limits and the per-address cap are lifted: the load
      # generator's clients send as fast as the server takes.
      "${PIN_SERVER[@]}" "$BIN" serve "${THREADS_OPT[@]}" --ws "127.0.0.1:$PORT" \
        --http "127.0.0.1:$(free_port)" --data "$data" \
        --rate 1e9 --burst 1e9 --max-conns-per-ip 10000000 >"$log" 2>&1 &
      ;;
    uws|node-ws)
      "${PIN_SERVER[@]}" node "bench/peers/$name/server.js" --port "$PORT" \
        --rate 1e9 --burst 1e9 >"$log" 2>&1 &
      ;;
    *) die "unknown server $name" ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      SERVER_PID=""
      echo "bench: $name did not start:" >&2
      tail -5 "$log" >&2
      return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: $name does not listen on $PORT" >&2
  stop_server
  return 1
}

# jq-less JSON reading: jget FILE 'python expression over d'
jget() {
  $PY -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---- noise: other processes share this machine ---------------------------
# Each run waits for the machine to be quiet, and counts the CPU time that
# neither the server nor the load generator used while it ran (others' work
# on these cores); a run disturbed by more than NOISE_PCT of a core is run
# again (BENCH_RETRIES times), keeping the least disturbed one. Bash builtins
# only between the samples, so the harness itself stays out of the count.
CLK=$(getconf CLK_TCK)
NOISE_PCT=${BENCH_NOISE_PCT:-15}
RETRIES=${BENCH_RETRIES:-1}
QUIET_MAX=${BENCH_QUIET_MAX:-30}

# The kernel's network work for our own traffic (irq and softirq time, and
# the ksoftirqd threads it overflows to) is not "others": left out of JIF_BUSY.
KSOFTIRQD=()
while read -r pid; do KSOFTIRQD+=("$pid"); done < <(pgrep '^ksoftirqd/' || true)
cpu_jiffies() {     # JIF_BUSY, JIF_TOTAL: the whole machine; JIF_CORE[k]: core k busy
  local c u n s i w q sq st p a
  JIF_CORE=()
  while read -r c u n s i w q sq st _; do
    case $c in
      cpu) JIF_BUSY=$((u + n + s + st)) JIF_TOTAL=$((u + n + s + i + w + q + sq + st)) ;;
      cpu[0-9]*) JIF_CORE[${c#cpu}]=$((u + n + s + q + sq + st)) ;;
      *) break ;;
    esac
  done </proc/stat
  for p in "${KSOFTIRQD[@]}"; do
    read -r -a a <"/proc/$p/stat" 2>/dev/null && JIF_BUSY=$((JIF_BUSY - a[13] - a[14]))
  done
  return 0
}
server_jiffies() {  # SRV_JIF: the server's utime + stime
  local a
  SRV_JIF=0
  read -r -a a <"/proc/$SERVER_PID/stat" 2>/dev/null && SRV_JIF=$((a[13] + a[14]))
  return 0
}
children_ms() {     # CHILD_MS: user + sys of this shell's reaped children
  local line=""
  times >"$TMP/times"
  { read -r _; read -r line; } <"$TMP/times"
  CHILD_MS=0
  [[ $line =~ ^([0-9]+)m([0-9]+)\.([0-9]{3})s\ ([0-9]+)m([0-9]+)\.([0-9]{3})s ]] || return 0
  local r=("${BASH_REMATCH[@]}")
  CHILD_MS=$(( (10#${r[1]} + 10#${r[4]}) * 60000 + (10#${r[2]} + 10#${r[5]}) * 1000 + 10#${r[3]} + 10#${r[6]} ))
}
wait_quiet() {      # QUIET_WAITED: seconds waited for a second with <= NOISE_PCT% busy
  QUIET_WAITED=0
  while :; do
    cpu_jiffies
    local b0=$JIF_BUSY t0=$JIF_TOTAL
    sleep 1
    cpu_jiffies
    (( (JIF_BUSY - b0) * 100 <= NOISE_PCT * (JIF_TOTAL - t0) )) && return 0
    if (( ++QUIET_WAITED >= QUIET_MAX )); then
      echo "bench: the machine stays busy; measuring anyway" >&2
      return 0
    fi
  done
}

# measure_once SERVER SCENARIO BENCH-ARGS...: a fresh server, one bench run,
# $OUT/SERVER-SCENARIO.json; OTHER_PCT: others' CPU during it, in 1/100 % of
# a core. A failed run leaves {"error": ...} there.
measure_once() {
  local name=$1 scen=$2
  shift 2
  local out=$OUT/$name-$scen.json log=$TMP/$name-$scen
  OTHER_PCT=0
  if ! start_server "$name" "$log.server"; then
    $PY -c 'import json, sys; print(json.dumps({"error": "server did not start"}))' >"$out"
    return 1
  fi
  sync             # nothing of the last run left to write back during this one
  wait_quiet
  local rc=0 b0 s0 c0 w0 b1 s1 c1 w1 core0
  cpu_jiffies; server_jiffies; children_ms
  b0=$JIF_BUSY s0=$SRV_JIF c0=$CHILD_MS w0=${EPOCHREALTIME/./} core0=("${JIF_CORE[@]}")
  timeout --foreground 300 "${PIN_LOAD[@]}" "$BIN" bench --json -q --server-pid "$SERVER_PID" \
    "$@" "ws://127.0.0.1:$PORT/" >"$log.json" 2>"$log.err" || rc=$?
  cpu_jiffies; server_jiffies; children_ms
  b1=$JIF_BUSY s1=$SRV_JIF c1=$CHILD_MS w1=${EPOCHREALTIME/./}
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "bench: $name died during $scen:" >&2
    tail -5 "$log.server" >&2
    [[ $rc != 0 ]] || rc=99
  fi
  stop_server
  if [[ $rc != 0 ]] || ! jget "$log.json" 'd["clients"]' >/dev/null 2>&1; then
    echo "bench: $name $scen failed (exit $rc): $(tail -3 "$log.err" | tr '\n' ' ')" >&2
    $PY -c 'import json, sys; print(json.dumps({"error": sys.argv[1], "exit": int(sys.argv[2])}))' \
      "$(tail -3 "$log.err")" "$rc" >"$out"
    return 1
  fi
  local wall_us=$((w1 - w0)) busy_ms=$(( (b1 - b0) * 1000 / CLK )) srv_ms=$(( (s1 - s0) * 1000 / CLK ))
  local other_ms=$(( busy_ms - srv_ms - (c1 - c0) )) cores="" k
  # Each core's busy share (softirq included: loopback TCP work shows here).
  for k in "${!JIF_CORE[@]}"; do
    cores+="${cores:+,}$(( (JIF_CORE[k] - core0[k]) * 1000 * 1000000 / CLK / (wall_us > 0 ? wall_us : 1) ))"
  done
  (( other_ms > 0 )) || other_ms=0
  OTHER_PCT=$(( other_ms * 10000000 / (wall_us > 0 ? wall_us : 1) ))
  # The harness's own view of the run goes with the load generator's JSON.
  $PY - "$log.json" "$out" "$name" "$scen" "$wall_us" "$srv_ms" "$((c1 - c0))" "$other_ms" \
    "$QUIET_WAITED" "${PIN_SERVER[*]:-}" "${PIN_LOAD[*]:-}" "$cores" <<'EOF'
import json, sys
src, out, name, scen, wall_us, srv_ms, load_ms, other_ms, waited, pin_s, pin_l, cores = sys.argv[1:]
d = json.load(open(src))
d["harness"] = {"server": name, "scenario": scen, "wall_s": int(wall_us) / 1e6,
                "server_cpu_s": int(srv_ms) / 1e3, "load_cpu_s": int(load_ms) / 1e3,
                "other_cpu_s": int(other_ms) / 1e3, "quiet_wait_s": int(waited),
                "server_pinned": pin_s, "load_pinned": pin_l,
                "core_busy": [int(c) / 1000 for c in cores.split(",") if c]}
with open(out, "w") as f:
    json.dump(d, f)
    f.write("\n")
EOF
  $PY - "$out" <<'EOF' >&2
import json, sys
d = json.load(open(sys.argv[1]))
h = d["harness"]
s = d.get("server") or {}
lat = d.get("latency_ms") or {}
fmt = lambda v: "-" if v is None else ("%.2f" % v)
line = "%-9s %-10s %6d clients" % (h["server"], h["scenario"], d["logged_in"])
if d["sent"]:
    line += "  %9.0f deliveries/s  p50 %s p99 %s ms  lost %d dups %d" % (
        d["deliveries_per_s"], fmt(lat.get("p50")), fmt(lat.get("p99")), d["lost"], d["dups"])
else:
    line += "  %6.0f logins/s  rss/client %s B" % (d["login"]["per_s"], fmt(s.get("rss_bytes_per_client")))
line += "  | cpu: server %.1fs load %.1fs over %.1fs; cores busy %s; others %.0f%%" % (
    s.get("cpu_s") or 0, d["bench"]["cpu_s"], d["duration_s"],
    "/".join("%.0f%%" % (100 * c) for c in h["core_busy"]), 100 * h["other_cpu_s"] / h["wall_s"])
print(line)
EOF
}

# measure SERVER SCENARIO BENCH-ARGS...: measure_once, again when others
# disturbed it, keeping the least disturbed run.
measure() {
  local out=$OUT/$1-$2.json best=-1 k
  for ((k = 0; ; k++)); do
    if ! measure_once "$@"; then
      # A retry that fails leaves the earlier complete run in place.
      if (( best >= 0 )); then
        cp "$TMP/best.json" "$out"
        return 0
      fi
      FAILED=1
      return 1
    fi
    if (( best >= 0 && OTHER_PCT > best )); then
      cp "$TMP/best.json" "$out"
    else
      best=$OTHER_PCT
      cp "$out" "$TMP/best.json"
    fi
    (( best <= NOISE_PCT * 100 || k >= RETRIES )) && return 0
    echo "bench: others used $((OTHER_PCT / 100))% of a core during $1 $2: once more" >&2
  done
}

# Installs a peer's npm packages; a peer that cannot be installed is skipped.
install_peer() {
  echo "bench: npm ci in bench/peers/$1" >&2
  (cd "bench/peers/$1" && npm ci --no-audit --no-fund --silent >/dev/null) || {
    echo "bench: npm ci failed in bench/peers/$1: skipping $1" >&2
    FAILED=1
    return 1
  }
}

run_server() {
  local name=$1
  measure "$name" fanout -n "$FANOUT_N" -s "$FANOUT_S" -d "$FANOUT_D" "${SEND_OPTS[@]}" || true

  # Peak: which sender count gives the most deliveries/s, then that one again.
  local best_s="" best=0 s v
  for s in $PEAK_SWEEP; do
    measure "$name" "peak-s$s" -n "$PEAK_N" -s "$s" -d "$PEAK_SWEEP_D" "${SEND_OPTS[@]}" || continue
    v=$(jget "$OUT/$name-peak-s$s.json" 'int(d["deliveries_per_s"])')
    if (( v > best )); then best=$v best_s=$s; fi
  done
  if [[ -n $best_s ]]; then
    local runs=()
    for ((r = 1; r <= PEAK_REPEAT; r++)); do
      measure "$name" "peak-r$r" -n "$PEAK_N" -s "$best_s" -d "$PEAK_D" "${SEND_OPTS[@]}" &&
        runs+=("$OUT/$name-peak-r$r.json")
    done
    (( PEAK_REPEAT > 0 )) || runs=("$OUT/$name-peak-s$best_s.json")
    if (( ${#runs[@]} )); then
      # The median run by deliveries/s stands for the scenario.
      $PY - "$OUT/$name-peak.json" "${runs[@]}" <<'EOF'
import json, shutil, sys
runs = sorted(sys.argv[2:], key=lambda f: json.load(open(f))["deliveries_per_s"])
shutil.copy(runs[(len(runs) - 1) // 2], sys.argv[1])
EOF
      # Latency at half of that peak's message rate, spread over the senders.
      local rate
      rate=$(jget "$OUT/$name-peak.json" '"%.3f" % (d["messages_per_s"] / 2 / d["senders"])')
      measure "$name" latency -n "$PEAK_N" -s "$best_s" -r "$rate" -w "$LAT_WINDOW" -d "$LAT_D" \
        "${SEND_OPTS[@]}" || true
    fi
  fi
  # The same light load for every server: latency without queues.
  measure "$name" latency-light -n "$PEAK_N" -s "$LIGHT_S" -r "$LIGHT_RATE" -w "$LAT_WINDOW" \
    -d "$LAT_D" "${SEND_OPTS[@]}" || true
  # permessage-deflate at the same light load (docs/deflate.md): tagarela's
  # server CPU per delivery against the plain run's.
  if [[ $name = tagarela ]]; then
    measure "$name" deflate-light -n "$PEAK_N" -s "$LIGHT_S" -r "$LIGHT_RATE" -w "$LAT_WINDOW" \
      -d "$LAT_D" --deflate "${SEND_OPTS[@]}" || true
  fi

  # Rooms of ROOM_SIZE: in one room every login is a broadcast and a user
  # list as long as the room, so 20,000 logins would cost 200 million
  # deliveries and gigabytes of user lists, measuring the broadcast instead.
  measure "$name" idle -n "$IDLE_N" --rooms $((IDLE_N / ROOM_SIZE)) --idle -d "$IDLE_D" \
    --connect-timeout "$LOGIN_TIMEOUT" || true
  measure "$name" login -n "$LOGIN_N" --rooms $((LOGIN_N / ROOM_SIZE)) --idle -d 1 \
    --connect-timeout "$LOGIN_TIMEOUT" || true
}

mkdir -p "$OUT"
# Only what this script writes: bench/results holds other tools' files too.
for name in $SERVERS; do rm -f "$OUT/$name"-*.json; done
rm -f "$OUT/summary.json" "$OUT/table.md" "$OUT/bench.png" "$OUT/chart.dat"
START=$(date +%s)
for name in $SERVERS; do
  case $name in
    uws|node-ws) install_peer "$name" || continue ;;
  esac
  echo "bench: == $name ==" >&2
  run_server "$name"
done

# shellcheck disable=SC2086  # one word per server
BENCH_QUICK=$QUICK TAGARELA_BIN=$BIN BENCH_PINNED=${#PIN_SERVER[@]} \
  $PY bench/summarize.py "$OUT" $SERVERS
if command -v gnuplot >/dev/null; then
  gnuplot -e "dat='$OUT/chart.dat'; out='$OUT/bench.png'" bench/plot.gp ||
    { echo "bench: gnuplot failed" >&2; FAILED=1; }
else
  echo "bench: no gnuplot (apt-get install gnuplot-nox): no chart" >&2
  FAILED=1
fi
cat "$OUT/table.md"
echo "bench: done in $(( $(date +%s) - START )) s; results in $OUT/" >&2
exit $FAILED
