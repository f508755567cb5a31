#!/usr/bin/python3
"""Benchmark of `tagarela capture` against tcpdump and tshark on the same
pcap of chat traffic.

    bench/capture/run.py [--runs 5] [--size 300] [--tshark-full] [--no-plain]

Makes bench/results/capture-300M.pcap with gen_chat_pcap.py if it is not
there (a third of the connections compressed), its first 30 MB as
capture-30M.pcap (the same traffic, cut), and capture-plain-300M.pcap where
no connection is compressed (this project's server declines deflate), unless
--no-plain. The peak RSS of `tagarela capture` is also taken on the first
30, 100, 200 and 300 MB of the compressed file: what memory does as the
file grows.

Timed, each run alone, the fastest of --runs kept (the machine is shared);
the commands of a file take turns (A, B, C, A, B, C...) so that a busy
moment of the machine falls on all of them alike, all at the niceness the
script runs at:
  tagarela capture -r F --json > /dev/null          (--threads: the cores)
  tagarela capture -r F --json --threads 1 > /dev/null
  tcpdump -r F -w /dev/null
  tshark -r F -d tcp.port==7272,http -Y websocket -T fields ... > /dev/null
    (on the 30 MB file only, its time extrapolated to 300 MB, unless
    --tshark-full: minutes and gigabytes)
with /usr/bin/time -v for the elapsed time, CPU time and peak RSS.
Writes bench/results/capture.json and bench/results/capture.md.

Environment: TAGARELA_BIN (default build/tagarela); TAGARELA_BEFORE_BIN, if
set, another build (the one before a change) timed in the same turns, named
in the table by TAGARELA_BEFORE_LABEL (default "before --threads").
"""
import argparse
import json
import os
import platform
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "bench" / "results"
BIN = os.environ.get("TAGARELA_BIN", str(ROOT / "build" / "tagarela"))
BEFORE = os.environ.get("TAGARELA_BEFORE_BIN")
BEFORE_LABEL = os.environ.get("TAGARELA_BEFORE_LABEL", "before --threads")
PY = "/usr/bin/python3"


def generate(path, size, deflate_share):
    if path.exists() and path.stat().st_size >= size * 1e6:
        return
    print(f"generating {path} ({size} MB)...", file=sys.stderr)
    subprocess.run([PY, str(HERE / "gen_chat_pcap.py"), str(path), "--size", str(size),
                    "--deflate-share", str(deflate_share)], check=True)


def head(src, dst, size):
    """The first `size` MB of a pcap (whole records), as another pcap."""
    if dst.exists():
        return
    with open(src, "rb") as f, open(dst, "wb") as o:
        hdr = f.read(24)
        o.write(hdr)
        n = 24
        while n < size * 1e6:
            rec = f.read(16)
            if len(rec) < 16:
                break
            caplen = struct.unpack("<I", rec[8:12])[0]
            o.write(rec + f.read(caplen))
            n += 16 + caplen


def timed(argv, stdout=subprocess.DEVNULL):
    """Runs argv under /usr/bin/time -v: (elapsed s, cpu s, max RSS KiB, stderr)."""
    proc = subprocess.run(["/usr/bin/time", "-v"] + argv, stdout=stdout,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr[-2000:]}")
    err = proc.stderr

    def field(name):
        return re.search(rf"{re.escape(name)}: (.*)", err).group(1).strip()

    el = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    elapsed = sum(float(x) * 60 ** i for i, x in enumerate(reversed(el)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return elapsed, cpu, int(field("Maximum resident set size (kbytes)")), err


def best(argvs, runs):
    """The fastest run of each command, the commands taking turns."""
    results = [[] for _ in argvs]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            results[i].append(timed(argv))
    return [min(r, key=lambda x: x[0]) for r in results]


def file_counts(path):
    """Packets and WebSocket frames in the file, from our own summary."""
    _, _, _, err = timed([BIN, "capture", "-r", str(path), "--json", "-q"])
    packets = int(re.search(r"packets: (\d+)", err).group(1))
    fr = re.search(r"frames: text (\d+), binary (\d+), continuation (\d+), close (\d+), "
                   r"ping (\d+), pong (\d+), other (\d+); messages (\d+) \((\d+) inflated\)", err)
    frames = sum(int(x) for x in fr.groups()[:7])
    gaps = int(re.search(r"gaps: (\d+)", err).group(1))
    errors = int(re.search(r"errors: (\d+)", err).group(1))
    return {"packets": packets, "frames": frames, "messages": int(fr.group(8)),
            "inflated": int(fr.group(9)), "gaps": gaps, "errors": errors}


TSHARK = ["tshark", "-r", "{f}", "-d", "tcp.port==7272,http",
          "-o", "tcp.reassemble_out_of_order:TRUE", "-Y", "websocket", "-T", "fields",
          "-e", "frame.time_epoch", "-e", "ip.src", "-e", "tcp.srcport",
          "-e", "websocket.opcode", "-e", "websocket.payload.text"]


def row(tool, path, counts, elapsed, cpu, rss, note=""):
    mb = path.stat().st_size / 1e6
    return {"tool": tool, "file": path.name, "file_mb": round(mb, 1),
            "elapsed_s": round(elapsed, 3), "cpu_s": round(cpu, 3),
            "mb_per_s": round(mb / elapsed, 1), "frames_per_s": round(counts["frames"] / elapsed),
            "packets_per_s": round(counts["packets"] / elapsed), "peak_rss_mb": round(rss / 1024, 1),
            "note": note}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--tshark-full", action="store_true")
    ap.add_argument("--no-plain", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    big = OUT / f"capture-{a.size}M.pcap"
    small = OUT / f"capture-{a.size // 10}M.pcap"
    generate(big, a.size, 1 / 3)
    head(big, small, a.size / 10)
    files = [small, big]
    if not a.no_plain:
        plain = OUT / f"capture-plain-{a.size}M.pcap"
        generate(plain, a.size, 0)
        files.append(plain)
    rows, counts = [], {}
    load_start = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    for f in files:
        counts[f.name] = c = file_counts(f)
        print(f"{f.name}: {c}", file=sys.stderr)
        argvs = [[BIN, "capture", "-r", str(f), "--json"],
                 [BIN, "capture", "-r", str(f), "--json", "--threads", "1"],
                 ["tcpdump", "-r", str(f), "-w", "/dev/null"]]
        names = [f"tagarela capture --json ({cores} threads)",
                 "tagarela capture --json --threads 1", "tcpdump -w /dev/null"]
        if BEFORE:
            argvs.append([BEFORE, "capture", "-r", str(f), "--json"])
            names.append(f"tagarela capture --json, {BEFORE_LABEL}")
        runs = best(argvs, a.runs)
        for name, (el, cpu, rss, _) in zip(names, runs):
            rows.append(row(name, f, c, el, cpu, rss))
    # tshark: slow; on the small file, and on the big one only if asked
    for f in ([small, big] if a.tshark_full else [small]):
        el, cpu, rss, _ = timed([x.format(f=f) for x in TSHARK])
        rows.append(row("tshark (WebSocket fields)", f, counts[f.name], el, cpu, rss))
    if not a.tshark_full:
        t = next(r for r in rows if r["tool"].startswith("tshark"))
        ratio = big.stat().st_size / small.stat().st_size
        rows.append({**t, "file": big.name, "file_mb": round(big.stat().st_size / 1e6, 1),
                     "elapsed_s": round(t["elapsed_s"] * ratio, 1),
                     "cpu_s": round(t["cpu_s"] * ratio, 1), "peak_rss_mb": None,
                     "note": f"extrapolated from {small.name} (x{ratio:.1f})"})
    # memory as the file grows: the same traffic, cut at several sizes
    rss = []
    for mb in (a.size // 10, a.size // 3, 2 * a.size // 3, a.size):
        part = big if mb == a.size else OUT / f"capture-{mb}M.pcap"
        head(big, part, mb)
        _, _, kib, _ = timed([BIN, "capture", "-r", str(part), "--json"])
        rss.append({"file_mb": round(part.stat().st_size / 1e6, 1),
                    "peak_rss_mb": round(kib / 1024, 1)})
        if part not in (big, small):
            part.unlink()
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
           "cpus": os.cpu_count(), "kernel": platform.release(), "runs": a.runs,
           "load_at_start": load_start, "load_at_end": os.getloadavg(), "files": counts, "results": rows,
           "rss_by_size": rss}
    (OUT / "capture.json").write_text(json.dumps(res, indent=2) + "\n")
    md = (table(rows) + "\n" + rss_table(rss) + "\n" +
          f"{res['date']}, {res['cpus']} CPUs, {a.runs} runs each (fastest kept), load average "
          f"{load_start[0]:.2f} at the start, {res['load_at_end'][0]:.2f} at the end\n")
    (OUT / "capture.md").write_text(md)
    print(md)


def table(rows):
    lines = ["| tool | file | MB/s | frames/s | elapsed s | CPU s | peak RSS MB | |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        rss = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {r['tool']} | {r['file']} ({r['file_mb']:.0f} MB) | "
                     f"{r['mb_per_s']:.0f} | {r['frames_per_s']:,} | {r['elapsed_s']} | "
                     f"{r['cpu_s']} | {rss} | {r['note']} |")
    return "\n".join(lines) + "\n"


def rss_table(rss):
    return ("| first MB of capture-300M.pcap | " + " | ".join(f"{r['file_mb']:.0f}" for r in rss)
            + " |\n|---|" + "---:|" * len(rss) + "\n| peak RSS of tagarela capture, MB | "
            + " | ".join(f"{r['peak_rss_mb']:.0f}" for r in rss) + " |\n")


if __name__ == "__main__":
    main()
