"""run.py -- `make soak`: every attack of issue 10 at once, for a long time,
beside honest traffic, against a server with its default limits.

Honest side: 10 clients in room "1" reading as fast as they can, one of them
saying a timed message 10 times a second; each must keep its connection and
see the room's ids one by one (no gap, no repeat). Attack side, each on its
own thread and period: pipelined GETs on the web port, 3 sockets x 100
maximum-size says into room "1", 20 resumes at once of 300 maximum-size
messages, an impostor asking for "bob"'s private history, a non-reader that
pings, 50 sockets holding unfinished fragmented messages, a room-creation
flood, floods of padded says before login and past the rate, and connections
aborted in the middle of the upgrade.

The server's RSS is sampled every second. Results: bench/results/soak.json,
soak.dat and soak.png (bench/soak/soak.gp). Exits 1 when an honest client
lost its connection or a message, or got one twice.

Environment: TAGARELA_BIN (default build/tagarela), SOAK_SECONDS (600),
SOAK_THREADS (the server's --threads; default: its own default),
SOAK_OUT (bench/results), SOAK_RSS_CEILING_MB (2048: above it attackers
pause, so that a server without the fixes cannot take the machine down;
the pauses are counted and reported).
"""

import itertools
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests" / "adversarial")]

from adv import (MAX_SAY_CONTENT, MB, HonestClient, HonestRoom, RssMonitor,  # noqa: E402
                 env_int, percentile, rss_bytes, say_frame)
from attacks import (abort_upgrades, fill_room, flood, get_flood, pinger_in_room,  # noqa: E402
                     send_all_at_once, start_fragmented)
from server_proc import Server  # noqa: E402
from wsraw import RawWS  # noqa: E402

SECONDS = env_int("SOAK_SECONDS", 600)
OUT = Path(os.environ.get("SOAK_OUT", str(ROOT / "bench" / "results")))
RSS_CEILING = env_int("SOAK_RSS_CEILING_MB", 2048) * MB
HONEST_READERS = 10
HONEST_SAYS_PER_S = 10


class Attackers:
    """The attack side, run in a process of its own (so that its Python does
    not slow the honest readers down): the stop signal, counters per attack
    and a thread per attack."""

    def __init__(self, ws_port, http_port, pid, stop):
        self.ws_port, self.http_port, self.pid = ws_port, http_port, pid
        self.stop = stop
        self.lock = threading.Lock()
        self.counts = {}
        self.threads = []
        self.room_seq = itertools.count(1)      # rooms created by the flood

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def over_ceiling(self):
        try:
            return rss_bytes(self.pid) > RSS_CEILING
        except (OSError, AssertionError):
            return True

    def keep_going(self):
        return not self.stop.is_set() and not self.over_ceiling()

    def every(self, name, period, fn):
        """Runs fn every period seconds on a thread until the end. An attack
        that raises is counted, not fatal: the server may refuse it, or be
        too busy to answer in time."""
        def loop():
            while not self.stop.is_set():
                if self.over_ceiling():
                    self.count("paused_at_rss_ceiling")
                    self.stop.wait(1.0)
                    continue
                try:
                    fn()
                    self.count(name + "_rounds")
                except Exception as e:      # noqa: BLE001 -- any failure of an attacker
                    self.count(name + "_errors")
                    self.count("error:" + type(e).__name__)
                self.stop.wait(period)
        t = threading.Thread(target=loop, daemon=True, name=name)
        t.start()
        self.threads.append(t)


# -- the attacks -----------------------------------------------------------------------------

def attack_get_flood(s):
    sock, sent = get_flood(s.http_port, 8 * MB, s.keep_going, deadline=5.0)
    s.count("get_flood_bytes", sent)
    s.stop.wait(2.0)
    sock.close()


def attack_big_says(s):
    frames = say_frame(MAX_SAY_CONTENT) * 100
    attackers = send_all_at_once(s.ws_port, frames, 3, "1")
    s.stop.wait(5.0)
    for a in attackers:
        a.close()


def attack_resumes(s, last_id):
    names = ["resumer%d" % i for i in range(20)]
    clients = HonestClient.login_all(s.ws_port, names, "big", {"last_id": 0})
    want = set(range(1, last_id + 1))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not s.stop.is_set():
        if all(not c.alive or want <= {m["id"] for ch in c.history for m in ch}
               for c in clients):
            break
        time.sleep(0.2)
    for c in clients:
        got = {m["id"] for ch in c.history for m in ch}
        s.count("resume_complete" if want <= got else
                "resume_closed" if not c.alive else "resume_unfinished")
        c.stop()


def private_pair(port):
    """bob and ana in room "priv"; ana sends bob a private say."""
    bob = RawWS(port)
    bob_uid, _ = bob.login("bob", room_id="priv")
    ana = RawWS(port)
    ana.login("ana", room_id="priv")
    ana.send_json({"type": "say", "to_uid": bob_uid, "content": "for bob only"})
    return bob, ana


def attack_impostor(s):
    impostor = RawWS(s.ws_port)
    try:
        impostor.send_json({"type": "login", "name": "bob", "room_id": "priv",
                            "last_id": 0, "history_names": True})
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                m = impostor.recv_json(max(0.05, end - time.monotonic()))
            except TimeoutError:
                break
            if m.get("type") == "history":
                leaked = sum(1 for x in m["messages"] if x.get("to_uid") != "all")
                s.count("impostor_private_messages_leaked", leaked)
    finally:
        impostor.close()


def attack_pinger(s):
    """A non-reader that pings, in room "1", for 40 s; then it reads to see
    whether the server closed it (what it should do after its write
    timeout): EOF after what was queued, or data still coming."""
    stop = threading.Event()
    p, _ = pinger_in_room(s.ws_port, "1", stop)
    try:
        s.stop.wait(40.0)
        stop.set()
        closed, _ = p.wait_closed(timeout=5.0)
        s.count("pinger_closed_by_server" if closed else "pinger_still_open")
    finally:
        stop.set()
        p.close()


def attack_fragments(s):
    socks = []
    try:
        for _ in range(50):
            if not s.keep_going():
                break
            ws = RawWS(s.ws_port)
            socks.append(ws)
            s.count("fragment_bytes", start_fragmented(ws, 1 * MB - 16 * 1024))
        s.stop.wait(20.0)
    finally:
        for ws in socks:
            ws.close()


def attack_rooms(s):
    for _ in range(10):
        ws = RawWS(s.ws_port)
        try:
            ws.send_json({"type": "login", "name": "roomer",
                          "room_id": "flood-%d" % next(s.room_seq)})
            m = ws.recv_json()
            s.count("rooms_created" if m.get("type") == "user_list" else "rooms_refused")
        finally:
            ws.close()


def attack_say_flood(s):
    stop = threading.Event()
    sent = []

    def one(logged_in, message=None):
        try:
            sent.append(flood(s.ws_port, logged_in, stop, message=message))
        except Exception as e:      # noqa: BLE001 -- a login refused or too slow
            s.count("say_flood_errors")
            s.count("error:" + type(e).__name__)
    # padded says, and tiny messages that each earn an error nobody reads
    kinds = [(False, None), (False, None), (True, None), (False, b"[]"), (True, b'{"type":"x"}')]
    threads = [threading.Thread(target=one, args=k) for k in kinds]
    for t in threads:
        t.start()
    s.stop.wait(5.0)
    stop.set()
    for t in threads:
        t.join(10)
    s.count("say_flood_bytes", sum(sent))


def attack_aborted_upgrades(s):
    abort_upgrades(s.ws_port, 5)
    s.count("aborted_upgrades", 20)


# -- the honest side ---------------------------------------------------------------------------

def run_attackers(ws_port, http_port, pid, last_big, stop, results):
    """The attack process: every attack on its period until stop is set;
    its counters go back through results."""
    s = Attackers(ws_port, http_port, pid, stop)
    s.every("get_flood", 5, lambda: attack_get_flood(s))
    s.every("big_says", 30, lambda: attack_big_says(s))
    s.every("resumes", 15, lambda: attack_resumes(s, last_big))
    s.every("impostor", 30, lambda: attack_impostor(s))
    s.every("pinger", 1, lambda: attack_pinger(s))
    s.every("fragments", 1, lambda: attack_fragments(s))
    s.every("rooms", 5, lambda: attack_rooms(s))
    s.every("say_flood", 10, lambda: attack_say_flood(s))
    s.every("aborted_upgrades", 1, lambda: attack_aborted_upgrades(s))
    stop.wait()
    for t in s.threads:
        t.join(60)
    results.put(dict(s.counts))


class HonestSide:
    """The honest clients (the current ones and those that were lost) and
    what they saw, sampled once a second."""

    def __init__(self, srv, room):
        self.srv = srv
        self.room = room
        self.lost_clients = []
        self.rows = []
        self._seen_latencies = {}

    def replace_lost(self):
        """A lost honest client is counted and replaced, so the soak goes on."""
        for i, c in enumerate(self.room.clients):
            if c.alive:
                continue
            try:
                fresh = HonestClient(self.srv.ws_port, c.name + "b", "1")
            except Exception:       # noqa: BLE001 -- tried again next second
                continue
            self.lost_clients.append(c)
            self.room.clients[i] = fresh
            if i == 0:
                self.room.talker = fresh

    def replace_lost_until(self, stop):
        while not stop.wait(1.0):
            self.replace_lost()
        self.replace_lost()

    def sample(self, t):
        """One row: seconds, RSS MB, honest clients connected, p99 ms of the
        deliveries of the last second."""
        lat = []
        for c in self.room.clients:
            n = self._seen_latencies.get(id(c), 0)
            lat.extend(c.latencies[n:])
            self._seen_latencies[id(c)] = len(c.latencies)
        try:
            rss = rss_bytes(self.srv.proc.pid) / MB
        except (OSError, AssertionError):
            rss = float("nan")
        p99 = percentile(lat, 99)
        row = {"t": round(t, 1), "rss_mb": round(rss, 1),
               "honest_alive": sum(1 for c in self.room.clients if c.alive),
               "p99_ms": round(p99 * 1000, 2) if p99 is not None else None}
        self.rows.append(row)
        return row

    def summary(self):
        clients = self.room.clients + self.lost_clients
        lat = [x for c in clients for x in c.latencies]

        def ms(v):
            return round(v * 1000, 2) if v is not None else None
        return {
            "clients": HONEST_READERS,
            "disconnects": len(self.lost_clients) + sum(1 for c in self.room.clients
                                                         if not c.alive),
            "disconnect_reasons": sorted({c.lost for c in clients if c.lost})[:10],
            "deliveries": len(lat),
            "delivery_anomalies": sum(delivery_anomalies(c) for c in clients),
            "p50_ms": ms(percentile(lat, 50)),
            "p99_ms": ms(percentile(lat, 99)),
            "max_ms": ms(max(lat) if lat else None),
        }


def delivery_anomalies(c):
    """Gaps and repeats in the room's ids seen by one client (every say in
    room "1" goes to every member, so ids must follow one by one)."""
    return sum(1 for a, b in zip(c.ids, c.ids[1:]) if b != a + 1)


def soak(srv):
    """Fills the rooms the attacks need, runs the honest side here and the
    attackers in a child process for SECONDS. Returns the result."""
    last_big = fill_room(srv.ws_port, "big", 300)
    bob, ana = private_pair(srv.ws_port)
    # spawned, not forked: the child must not inherit the honest sockets
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results = ctx.Queue()
    with RssMonitor(srv.proc.pid, period=1.0) as mon, \
            HonestRoom(srv.ws_port, "1", HONEST_READERS,
                       chatter_per_s=HONEST_SAYS_PER_S) as room:
        honest = HonestSide(srv, room)
        room.begin()
        attackers = ctx.Process(
            target=run_attackers, args=(srv.ws_port, srv.http_port, srv.proc.pid,
                                        last_big, stop, results))
        attackers.start()
        # replacing a lost client may wait on a busy server: not on the
        # sampling thread, which must keep its one row a second
        replacer = threading.Thread(target=honest.replace_lost_until, args=(stop,),
                                    daemon=True)
        replacer.start()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < SECONDS:
                time.sleep(1.0)
                r = honest.sample(time.monotonic() - t0)
                if len(honest.rows) % 30 == 0:
                    print("  %4.0f s  rss %7.1f MB  honest %d/%d  p99 %s ms"
                          % (r["t"], r["rss_mb"], r["honest_alive"], HONEST_READERS,
                             r["p99_ms"]), flush=True)
        finally:
            stop.set()
            try:
                counts = results.get(timeout=120)
            except queue.Empty:
                counts = {"attackers_did_not_report": 1}
            attackers.join(10)
            if attackers.is_alive():
                attackers.kill()
            replacer.join(30)
        result = {
            "seconds": SECONDS,
            "binary": srv.argv[0],
            "argv": srv.argv[1:],
            "rss_mb": {"baseline": round(mon.baseline / MB, 1),
                       "peak": round(mon.peak / MB, 1),
                       "final": honest.rows[-1]["rss_mb"] if honest.rows else None},
            "honest": honest.summary(),
            "attacks": dict(sorted(counts.items())),
            "samples": honest.rows,
        }
    bob.close()
    ana.close()
    return result


def run():
    OUT.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("SOAK_THREADS")
    work = Path(tempfile.mkdtemp(prefix="tagarela-soak-"))
    srv = Server(work, ["--threads", threads] if threads else [])
    srv.start()
    print("soak: %d s against %s (pid %d), data in %s"
          % (SECONDS, srv.argv[0], srv.proc.pid, work), flush=True)
    try:
        result = soak(srv)
    finally:
        rc = srv.terminate()
    result["server_exit"] = rc
    write_results(result)
    h = result["honest"]
    print("soak: RSS %.1f -> peak %.1f MB; honest disconnects %d, anomalies %d, "
          "%d deliveries, p50 %s ms, p99 %s ms; impostor leaks %d; server exit %r"
          % (result["rss_mb"]["baseline"], result["rss_mb"]["peak"], h["disconnects"],
             h["delivery_anomalies"], h["deliveries"], h["p50_ms"], h["p99_ms"],
             result["attacks"].get("impostor_private_messages_leaked", 0), rc))
    ok = h["disconnects"] == 0 and h["delivery_anomalies"] == 0 and rc == 0 \
        and not result["attacks"].get("impostor_private_messages_leaked")
    if not ok:
        print("soak: FAILED (see %s)" % (OUT / "soak.json"), file=sys.stderr)
    return 0 if ok else 1


def write_results(result):
    rows = result["samples"]
    (OUT / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    with open(OUT / "soak.dat", "w") as f:
        f.write("# t_s rss_mb honest_alive p99_ms\n")
        for r in rows:
            f.write("%s %s %s %s\n" % (r["t"], r["rss_mb"], r["honest_alive"],
                                       "NaN" if r["p99_ms"] is None else r["p99_ms"]))
    gp = Path(__file__).with_name("soak.gp")
    title = "soak: %d s, every attack at once; honest disconnects %d, p99 %s ms" % (
        result["seconds"], result["honest"]["disconnects"], result["honest"]["p99_ms"])
    subprocess.run(["gnuplot", "-e", "dat='%s'; out='%s'; ttl='%s'" % (
        OUT / "soak.dat", OUT / "soak.png", title), str(gp)], check=True)


if __name__ == "__main__":
    sys.exit(run())
