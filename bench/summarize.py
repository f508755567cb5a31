#!/usr/bin/python3
"""summarize.py -- turns the runs of bench/run.sh into summary.json, table.md
and chart.dat (for bench/plot.gp).

    summarize.py RESULTS-DIR SERVER...

Reads RESULTS-DIR/<server>-<scenario>.json (fanout, peak, latency, idle,
login, and the peak sweep's peak-s<N>/peak-r<N>), records the machine and
the versions, compares tagarela with each peer and checks issue 6's targets:
deliveries/s >= 1.0x uWebSockets.js and >= 5x Node ws, <= 2 KiB of server
RSS per idle connection, p99 < 5 ms at half of the peak rate.
"""

import glob
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LABEL = {"tagarela": "tagarela", "uws": "uWebSockets.js", "node-ws": "Node ws"}
PEERS = ("uws", "node-ws")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1) if m else None
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(re.search(r"^MemTotal:\s*(\d+)", f.read(), re.M).group(1)) * 1024
    except (OSError, AttributeError):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "os": run(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
            "memory_bytes": mem}


def package_version(peer, name):
    d = load(os.path.join(HERE, "peers", peer, "node_modules", name, "package.json"))
    return d and d.get("version")


def versions(binary):
    uws_pkg = "@trufflesuite/uws-js-unofficial"
    uws_v = package_version("uws", uws_pkg)
    return {
        "tagarela": (run([binary, "serve", "--version"]) or "").replace("tagarela ", "") or None,
        "tagarela_commit": run(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
        "node": run(["node", "--version"]),
        "ws": package_version("node-ws", "ws"),
        "bufferutil": package_version("node-ws", "bufferutil"),
        "uws_package": uws_pkg + "@" + uws_v if uws_v else None,
        # The fork's version names the upstream uWebSockets.js release it builds.
        "uws_upstream": "v" + uws_v.split("-")[0] if uws_v else None,
    }


def pick(d):
    """The numbers of one run worth keeping side by side."""
    if d is None:
        return None
    if "error" in d:
        return {"error": d["error"]}
    srv = d.get("server") or {}
    h = d.get("harness") or {}
    out = {"clients": d["logged_in"], "senders": d["senders"], "rate": d["rate"],
           "window": d["window"], "duration_s": d["duration_s"],
           "logins_per_s": d["login"]["per_s"], "login_p99_ms": d["login"]["p99_ms"],
           "bench_cpu_s": d["bench"]["cpu_s"], "bench_threads": d["bench"]["threads"],
           "server_cpu_s": srv.get("cpu_s"), "server_rss_bytes": srv.get("rss_bytes"),
           "bytes_in": d.get("bytes_in"), "deflate_clients": (d.get("deflate") or {}).get("clients"),
           # CPU that other processes on the machine took during the run, in cores
           "others_cpu_share": round(h["other_cpu_s"] / h["wall_s"], 3) if h.get("wall_s") else None}
    if d["sent"]:
        out.update({"sent": d["sent"], "deliveries": d["deliveries"],
                    "expected_deliveries": d["expected_deliveries"], "lost": d["lost"],
                    "dups": d["dups"], "messages_per_s": d["messages_per_s"],
                    "deliveries_per_s": d["deliveries_per_s"], "latency_ms": d["latency_ms"],
                    "errors": d["errors"]})
    else:
        out["rss_bytes_per_client"] = srv.get("rss_bytes_per_client")
    return out


def server_results(out_dir, name):
    r = {s: pick(load(os.path.join(out_dir, "%s-%s.json" % (name, s))))
         for s in ("fanout", "peak", "latency", "latency-light", "deflate-light", "idle", "login")}
    sweep = {}
    for f in sorted(glob.glob(os.path.join(out_dir, name + "-peak-[sr]*.json"))):
        d = load(f)
        if d and "error" not in d:
            sweep[os.path.basename(f)[len(name) + 1:-5]] = d["deliveries_per_s"]
    r["peak_runs"] = sweep
    reps = [v for k, v in sweep.items() if k.startswith("peak-r")] or list(sweep.values())
    if r["peak"] and "error" not in r["peak"] and reps:
        r["peak"]["range"] = "%s / %s" % (fmt(min(reps)), fmt(max(reps)))
    return r


def get(res, name, scen, key, sub=None):
    v = ((res.get(name) or {}).get(scen) or {})
    v = v.get(key)
    if sub is not None:
        v = (v or {}).get(sub)
    return v


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v < 100:
        return "%.2f%s" % (v, unit)
    return "{:,.0f}{}".format(v, unit)


def targets(res):
    """The issue's targets, each with tagarela's value and whether it is met."""
    peak = lambda n: get(res, n, "peak", "deliveries_per_s")
    t = []
    for peer, need in (("uws", 1.0), ("node-ws", 5.0)):
        r = ratio(peak("tagarela"), peak(peer))
        t.append({"target": "peak deliveries/s >= %.1fx %s" % (need, LABEL[peer]),
                  "value": r, "met": None if r is None else r >= need})
    rss = get(res, "tagarela", "idle", "rss_bytes_per_client")
    t.append({"target": "server RSS per idle connection <= 2048 B", "value": rss,
              "met": None if rss is None else rss <= 2048})
    p99 = get(res, "tagarela", "latency", "latency_ms", "p99")
    t.append({"target": "p99 latency < 5 ms at half of peak", "value": p99,
              "met": None if p99 is None else p99 < 5.0})
    r = ratio(cpu_per_delivery(res, "deflate-light"), cpu_per_delivery(res, "latency-light"))
    t.append({"target": "permessage-deflate: server CPU per delivery <= 1.3x plain (light load, issue 12)",
              "value": r, "met": None if r is None else r <= 1.3})
    return t


def cpu_per_delivery(res, scen):
    """tagarela's CPU seconds per delivery over a run's sending phase."""
    cpu, dps = get(res, "tagarela", scen, "server_cpu_s"), get(res, "tagarela", scen, "deliveries_per_s")
    dur = get(res, "tagarela", scen, "duration_s")
    return cpu / (dps * dur) if cpu is not None and dps and dur else None


ROWS = [
    # label ({n}: the scenario's clients, {s}: senders), scenario, key, sub, unit
    ("fan-out deliveries/s ({n} clients, {s} senders)", "fanout", "deliveries_per_s", None, ""),
    ("peak deliveries/s ({n} clients, median of runs)", "peak", "deliveries_per_s", None, ""),
    ("peak: senders (best of the sweep)", "peak", "senders", None, ""),
    ("peak: slowest / fastest run", "peak", "range", None, ""),
    ("p50 latency at half of peak, ms", "latency", "latency_ms", "p50", ""),
    ("p99 latency at half of peak, ms", "latency", "latency_ms", "p99", ""),
    ("p99.9 latency at half of peak, ms", "latency", "latency_ms", "p999", ""),
    ("p50 latency at a light load (40,000 deliveries/s), ms", "latency-light", "latency_ms", "p50", ""),
    ("p99 latency at a light load (40,000 deliveries/s), ms", "latency-light", "latency_ms", "p99", ""),
    ("server RSS per idle connection, bytes ({n} clients, rooms of 100)", "idle", "rss_bytes_per_client", None, ""),
    ("logins/s ({n} clients, rooms of 100)", "login", "logins_per_s", None, ""),
]


def label(res, servers, text, scen):
    """Fills the row's label with the scenario's size, from the first server that ran it."""
    for s in servers:
        n, k = get(res, s, scen, "clients"), get(res, s, scen, "senders")
        if n is not None:
            return text.format(n="{:,}".format(n), s=k)
    return text.format(n="?", s="?")


def table(res, servers, summary):
    head = [LABEL.get(s, s) for s in servers]
    ratio_cols = [p for p in PEERS if "tagarela" in servers and p in servers]
    lines = ["| | " + " | ".join(head) + "".join(" | tagarela / %s" % LABEL[p] for p in ratio_cols) + " |",
             "|---" * (1 + len(head) + len(ratio_cols)) + "|"]
    for text, scen, key, sub, unit in ROWS:
        vals = [get(res, s, scen, key, sub) for s in servers]
        row = "| %s | " % label(res, servers, text, scen) + " | ".join(fmt(v, unit) for v in vals)
        for p in ratio_cols:
            if key in ("senders", "range"):
                row += " | "
                continue
            r = ratio(get(res, "tagarela", scen, key, sub), get(res, p, scen, key, sub))
            row += " | " + ("n/a" if r is None else "%.2fx" % r)
        lines.append(row + " |")
    # Correctness under load: every say must reach every client once.
    lost = []
    for s in servers:
        n = d = 0
        for scen in ("fanout", "peak", "latency", "latency-light", "deflate-light"):
            n += get(res, s, scen, "lost") or 0
            d += get(res, s, scen, "dups") or 0
        lost.append("%d / %d" % (n, d))
    lines.append("| lost / duplicated deliveries | " + " | ".join(lost) + " |" * (1 + len(ratio_cols)))
    load_cpu = []
    for s in servers:
        b, dur = get(res, s, "peak", "bench_cpu_s"), get(res, s, "peak", "duration_s")
        c = get(res, s, "peak", "server_cpu_s")
        load_cpu.append("n/a" if not dur else "%.0f%% / %.0f%%" % (100 * (c or 0) / dur, 100 * (b or 0) / dur))
    noise = []
    for s in servers:
        v = [get(res, s, scen, "others_cpu_share")
             for scen in ("fanout", "peak", "latency", "latency-light", "idle", "login")]
        v = [x for x in v if x is not None]
        noise.append("%.0f%%" % (100 * max(v)) if v else "n/a")
    lines.append("| other processes' CPU during a run, most (% of a core) | " + " | ".join(noise) +
                 " |" * (1 + len(ratio_cols)))
    lines.append("| CPU at peak: server / load generator | " + " | ".join(load_cpu) + " |" * (1 + len(ratio_cols)))
    lines += ["", "| target (issue 6, issue 12) | tagarela | met |", "|---|---|---|"]
    for t in summary["targets"]:
        v = t["value"]
        v = "n/a" if v is None else (("%.2fx" % v) if "x " in t["target"] else fmt(v))
        lines.append("| %s | %s | %s |" % (t["target"], v, {True: "yes", False: "**no**", None: "n/a"}[t["met"]]))
    m, v = summary["machine"], summary["versions"]
    lines += ["", "Machine: %s, %s cores, Linux %s. tagarela %s (%s, 1 event loop), Node %s, ws %s, "
              "uWebSockets.js %s (npm %s). Server on core 0, load generator on core 1.%s" % (
                  m["cpu"], m["nproc"], m["kernel"], v["tagarela"], v["tagarela_commit"], v["node"],
                  v["ws"], v["uws_upstream"], v["uws_package"],
                  " QUICK run: small numbers, not for the README." if summary["settings"]["quick"] else "")]
    return "\n".join(lines) + "\n"


def chart_data(res, servers):
    lines = ["# server fanout_dps peak_dps p50_ms p99_ms rss_per_conn logins_per_s light_p99_ms"]
    for s in servers:
        vals = [get(res, s, "fanout", "deliveries_per_s"), get(res, s, "peak", "deliveries_per_s"),
                get(res, s, "latency", "latency_ms", "p50"), get(res, s, "latency", "latency_ms", "p99"),
                get(res, s, "idle", "rss_bytes_per_client"), get(res, s, "login", "logins_per_s"),
                get(res, s, "latency-light", "latency_ms", "p99")]
        lines.append('"%s" ' % LABEL.get(s, s) + " ".join("NaN" if v is None else repr(v) for v in vals))
    return "\n".join(lines) + "\n"


def main():
    out_dir, servers = sys.argv[1], sys.argv[2:]
    binary = os.environ.get("TAGARELA_BIN", os.path.join(ROOT, "build", "tagarela"))
    res = {s: server_results(out_dir, s) for s in servers}
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        "versions": versions(binary),
        "settings": {"quick": os.environ.get("BENCH_QUICK") == "1",
                     "pinned": os.environ.get("BENCH_PINNED", "0") != "0",
                     "server_core": 0, "load_core": 1, "tagarela_threads": 1},
        "servers": res,
        "ratios": {},
        "targets": targets(res),
    }
    for _, scen, key, sub, _ in ROWS:
        if key in ("senders", "range"):
            continue
        summary["ratios"][scen + "." + key + ("." + sub if sub else "")] = {
            "tagarela/" + p: ratio(get(res, "tagarela", scen, key, sub), get(res, p, scen, key, sub))
            for p in PEERS if p in servers}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(table(res, servers, summary))
    with open(os.path.join(out_dir, "chart.dat"), "w") as f:
        f.write(chart_data(res, servers))


if __name__ == "__main__":
    main()
