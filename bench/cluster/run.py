#!/usr/bin/env python3
"""make bench-cluster: tagarela's cluster mode on one real redis-server, with
1, 2 and 3 nodes and the clients of `tagarela bench` spread over them.

For each size: deliveries/s, latency p50/p99 (send -> echo, which in a
cluster is a round trip through Redis), lost/duplicated messages, Redis
commands per say (INFO commandstats, calls inside the Lua script included,
the nodes' heartbeats and pings excluded by measuring an idle interval
too) and Redis's CPU per say (INFO cpu). Writes bench/results/cluster.json
and prints a Markdown table (docs/cluster.md has the last one)."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from redis_proc import Redis                # noqa: E402
from server_proc import Server              # noqa: E402

BIN = os.environ.get("TAGARELA_BIN", str(REPO / "build" / "tagarela"))
CLIENTS = int(os.environ.get("CLUSTER_BENCH_CLIENTS", "300"))
SENDERS = int(os.environ.get("CLUSTER_BENCH_SENDERS", "30"))
DURATION = float(os.environ.get("CLUSTER_BENCH_SECONDS", "5"))
# the chat's per-client limits out of the way: the bench measures the cluster
FAST = ["--rate", "1000000", "--burst", "1000000", "--history", "0"]


def redis_counters(r):
    calls = 0
    for line in r.info("commandstats").splitlines():
        if line.startswith("cmdstat_"):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            calls += int(fields["calls"])
    cpu = 0.0
    for line in r.info("cpu").splitlines():
        if line.startswith(("used_cpu_sys:", "used_cpu_user:")):
            cpu += float(line.split(":")[1])
    return calls, cpu


def one(r, n_nodes, workdir):
    nodes = [Server(Path(workdir) / ("n%d_%d" % (n_nodes, i)),
                    ["--redis", r.url, "--threads", "1"] + FAST).start()
             for i in range(n_nodes)]
    try:
        urls = ",".join("ws://127.0.0.1:%d/" % n.ws_port for n in nodes)
        calls0, cpu0 = redis_counters(r)
        time.sleep(2)                       # the background: heartbeats, pings
        calls1, cpu1 = redis_counters(r)
        idle_calls_per_s = (calls1 - calls0) / 2
        t0 = time.monotonic()
        p = subprocess.run(["nice", BIN, "bench", "--json", "-q", "-n", str(CLIENTS), "-s", str(SENDERS),
                            "-d", str(DURATION), "--room", "cluster", urls],
                           capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - t0
        calls2, cpu2 = redis_counters(r)
        if p.returncode != 0:
            raise SystemExit("bench failed: %s %s" % (p.stdout, p.stderr))
        res = json.loads(p.stdout)
        sent = res["sent"]
        says_calls = calls2 - calls1 - idle_calls_per_s * elapsed
        return {
            "nodes": n_nodes,
            "clients": res["clients"],
            "senders": res["senders"],
            "messages_per_s": res["messages_per_s"],
            "deliveries_per_s": res["deliveries_per_s"],
            "p50_ms": res["latency_ms"]["p50"],
            "p99_ms": res["latency_ms"]["p99"],
            "lost": res["lost"],
            "dups": res["dups"],
            "sent": sent,
            "redis_calls_per_say": round(says_calls / sent, 2) if sent else None,
            "redis_cpu_us_per_say": round((cpu2 - cpu1) * 1e6 / sent, 1) if sent else None,
        }
    finally:
        for n in nodes:
            n.terminate()


def main():
    work = tempfile.mkdtemp(prefix="tagarela-cluster-bench-")
    r = Redis(Path(work) / "redis").start()
    try:
        rows = [one(r, n, work) for n in (1, 2, 3)]
    finally:
        r.stop()
    out = REPO / "bench" / "results" / "cluster.json"
    out.write_text(json.dumps({"clients": CLIENTS, "senders": SENDERS, "seconds": DURATION,
                               "runs": rows}, indent=1) + "\n")
    print("| nodes | msgs/s | deliveries/s | p50 ms | p99 ms | lost | dups | Redis calls/say | Redis CPU µs/say |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        print("| %d | %.0f | %.0f | %.2f | %.2f | %d | %d | %s | %s |" % (
            x["nodes"], x["messages_per_s"], x["deliveries_per_s"], x["p50_ms"], x["p99_ms"],
            x["lost"], x["dups"], x["redis_calls_per_say"], x["redis_cpu_us_per_say"]))


if __name__ == "__main__":
    main()
