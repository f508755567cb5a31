"""`tagarela bench`, the load generator: against the real server (counts add
up, JSON has every key in order, --idle reports memory), against a strict
fake server written here (handshake, masking, ping/pong, frames split across
reads, duplicated and dropped messages) and its failures (unreachable
server, bad accept value, bad options)."""

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import subprocess

import pytest

from server_proc import BIN, require_binary

FAST = ("--rate", "1000000", "--burst", "1000000", "--history", "0")

TOP = ["server_url", "clients", "logged_in", "senders", "rate", "window", "size",
       "duration_s", "login", "sent", "deliveries", "expected_deliveries", "lost", "dups",
       "messages_per_s", "deliveries_per_s", "latency_ms", "errors", "bytes_in", "deflate",
       "bench", "server"]
LOGIN = ["seconds", "per_s", "p50_ms", "p99_ms", "max_ms"]
LATENCY = ["p50", "p99", "p999", "max"]
ERRORS = ["rate_limited", "other", "disconnects"]
BENCH = ["threads", "cpu_s"]
SERVER = ["pid", "cpu_s", "rss_bytes", "rss_bytes_per_client"]
DEFLATE = ["offered", "clients", "compressed_messages"]


def bench_argv(*args):
    require_binary()
    return [BIN, "bench"] + [str(a) for a in args]


def run_bench(*args, timeout=60):
    return subprocess.run(bench_argv(*args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ordered(text):
    """JSON with every object as a list of (key, value) pairs, in order."""
    return json.loads(text, object_pairs_hook=lambda pairs: pairs)


def check_shape(text):
    """Every key, in the documented order; returns the result as dicts."""
    assert text.count("\n") == 1 and text.endswith("\n"), text
    top = ordered(text)
    assert [k for k, _ in top] == TOP, top
    d = dict(top)
    for key, keys in (("login", LOGIN), ("latency_ms", LATENCY), ("errors", ERRORS),
                      ("bench", BENCH)):
        assert [k for k, _ in d[key]] == keys, (key, d[key])
    if d["server"] is not None:
        assert [k for k, _ in d["server"]] == SERVER, d["server"]
    assert [k for k, _ in d["deflate"]] == DEFLATE, d["deflate"]
    return json.loads(text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- against the real server -------------------------------------------------------

def test_small_run_counts_add_up(make_server):
    srv = make_server(*FAST)
    url = "ws://127.0.0.1:%d/" % srv.ws_port
    p = run_bench("-n", 50, "-s", 5, "-d", 2, "--json", "-q", "--server-pid", srv.proc.pid, url)
    assert p.returncode == 0, p.stderr
    r = check_shape(p.stdout)
    assert r["server_url"] == url
    assert (r["clients"], r["logged_in"], r["senders"], r["window"]) == (50, 50, 5, 16)
    assert r["rate"] == 0
    assert r["size"] >= 32
    assert 1.9 < r["duration_s"] < 3.0
    assert r["sent"] > 100, r
    # one room: every message reaches all 50 clients, the sender included
    assert r["expected_deliveries"] == r["sent"] * 50
    assert r["deliveries"] == r["expected_deliveries"], r
    assert (r["lost"], r["dups"]) == (0, 0), r
    assert r["errors"] == {"rate_limited": 0, "other": 0, "disconnects": 0}
    assert r["deliveries_per_s"] > 0 and r["messages_per_s"] > 0
    lat = r["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"] < 10000, lat
    lg = r["login"]
    assert lg["seconds"] > 0 and lg["per_s"] > 0
    assert 0 < lg["p50_ms"] <= lg["p99_ms"] <= lg["max_ms"]
    assert r["bench"]["threads"] >= 1 and r["bench"]["cpu_s"] > 0
    s = r["server"]
    assert s["pid"] == srv.proc.pid
    assert s["cpu_s"] > 0 and s["rss_bytes"] > 1 << 20
    assert isinstance(s["rss_bytes_per_client"], (int, float))
    assert r["deflate"] == {"offered": False, "clients": 0, "compressed_messages": 0}
    assert r["bytes_in"] > r["deliveries"] * 32


@pytest.mark.parametrize("server_opts,agreed", [((), True), (("--no-deflate",), False)])
def test_deflate_run(make_server, server_opts, agreed):
    """--deflate: every client offers it, inflates what comes and loses
    nothing; against --no-deflate the same run goes plain."""
    srv = make_server(*FAST, *server_opts)
    url = "ws://127.0.0.1:%d/" % srv.ws_port
    p = run_bench("-n", 20, "-s", 4, "-d", 1.5, "--size", 300, "--deflate", "--json", "-q", url)
    assert p.returncode == 0, p.stderr
    r = check_shape(p.stdout)
    assert r["deliveries"] == r["expected_deliveries"] > 0, r
    assert (r["lost"], r["dups"], r["errors"]["disconnects"]) == (0, 0, 0), r
    d = r["deflate"]
    assert d["offered"] is True
    assert d["clients"] == (20 if agreed else 0)
    if agreed:
        # the says (300 bytes of content, mostly padding) all came compressed
        assert d["compressed_messages"] >= r["deliveries"]
        assert r["bytes_in"] < r["deliveries"] * 300
    else:
        assert d["compressed_messages"] == 0
        assert r["bytes_in"] > r["deliveries"] * 300


def test_rate_limited_says_are_counted_not_lost(make_server):
    # the server's default limits: a burst of 100 then 50/s per client
    srv = make_server("--history", "0")
    p = run_bench("-n", 4, "-s", 2, "-d", 1.5, "--json", "-q",
                  "ws://127.0.0.1:%d/" % srv.ws_port)
    assert p.returncode == 0, p.stderr
    r = check_shape(p.stdout)
    assert r["errors"]["rate_limited"] > 0, r
    assert r["errors"]["other"] == 0
    # refused messages are not expected anywhere
    assert r["deliveries"] == r["expected_deliveries"] > 0
    assert (r["lost"], r["dups"]) == (0, 0)
    assert r["expected_deliveries"] == (r["sent"] - r["errors"]["rate_limited"]) * 4
    assert r["server"] is None


def test_rooms_and_rate(make_server):
    srv = make_server(*FAST)
    p = run_bench("-n", 30, "-s", 6, "--rooms", 3, "-r", 40, "-d", 2, "-t", 2, "--json", "-q",
                  "ws://127.0.0.1:%d/" % srv.ws_port)
    assert p.returncode == 0, p.stderr
    r = check_shape(p.stdout)
    # 6 senders at 40/s for 2 s; each room holds 10 clients
    assert 400 <= r["sent"] <= 500, r
    assert 180 <= r["messages_per_s"] <= 260, r
    assert r["expected_deliveries"] == r["sent"] * 10
    assert r["deliveries"] == r["expected_deliveries"] and r["lost"] == 0 and r["dups"] == 0
    assert r["bench"]["threads"] == 2
    assert r["rate"] == 40


def test_idle_reports_rss_per_client(make_server):
    srv = make_server(*FAST)
    p = run_bench("-n", 300, "--idle", "-d", 1, "--rooms", 10, "--json", "-q",
                  "--server-pid", srv.proc.pid, "ws://127.0.0.1:%d/" % srv.ws_port)
    assert p.returncode == 0, p.stderr
    r = check_shape(p.stdout)
    assert r["logged_in"] == 300 and r["senders"] == 0
    assert (r["sent"], r["deliveries"], r["expected_deliveries"], r["lost"]) == (0, 0, 0, 0)
    assert r["latency_ms"] == {"p50": None, "p99": None, "p999": None, "max": None}
    s = r["server"]
    assert s["rss_bytes"] > 0
    # 300 logged-in connections cost the server something, and not megabytes each
    assert 0 < s["rss_bytes_per_client"] < 1 << 20, s


def test_answers_pings_so_idle_clients_stay(make_server):
    # silent for 2 s means closed, pinged after 1 s: only the pongs keep them
    srv = make_server(*FAST, "--ping-interval", "1", "--idle-timeout", "2")
    p = run_bench("-n", 20, "--idle", "-d", 4.5, "--json", "-q",
                  "ws://127.0.0.1:%d/" % srv.ws_port)
    assert p.returncode == 0, p.stderr
    r = check_shape(p.stdout)
    assert r["errors"]["disconnects"] == 0, r


def test_human_output_and_progress(make_server):
    srv = make_server(*FAST)
    p = run_bench("-n", 10, "-s", 2, "-d", 2.2, "--server-pid", srv.proc.pid,
                  "ws://127.0.0.1:%d/" % srv.ws_port)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for word in ("login", "deliveries", "lost 0, dups 0", "latency", "p99.9", "errors",
                 "bench", "server", "rss"):
        assert word in out, out
    # not a terminal: one progress line per second, on stderr
    lines = [l for l in p.stderr.splitlines() if "deliveries/s" in l]
    assert len(lines) >= 2, p.stderr


def test_too_many_for_the_server_fails_with_a_message(make_server):
    srv = make_server(*FAST, "--max-conns-per-ip", "5")
    p = run_bench("-n", 20, "-s", 1, "-d", 1, "--src-addrs", 1, "--connect-timeout", 5,
                  "-q", "ws://127.0.0.1:%d/" % srv.ws_port)
    assert p.returncode != 0
    assert "client" in p.stderr, p.stderr


# -- failures before any traffic ----------------------------------------------------

def test_unreachable_server():
    p = run_bench("-n", 5, "-d", 1, "-q", "ws://127.0.0.1:%d/" % free_port(), timeout=30)
    assert p.returncode != 0
    assert "cannot connect" in p.stderr and "refused" in p.stderr, p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("args", [
    ["-n", "abc"], ["--bogus"], ["-n", "5", "-s", "6"], ["-w", "0"], ["-d", "-1"],
    ["http://127.0.0.1:1/"], ["wss://127.0.0.1:99999/"], ["ws://127.0.0.1:99999/"],
    ["ws://a/", "ws://b/"], ["--rooms", "5", "-n", "2"], ["-n"], ["--src-addrs", "300"],
])
def test_bad_options(args):
    p = run_bench(*args, timeout=10)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert "usage: tagarela bench" in p.stderr, p.stderr
    assert p.stdout == ""


def test_help():
    p = run_bench("--help", timeout=10)
    assert p.returncode == 0
    for opt in ("--clients", "--senders", "--rate", "--window", "--duration", "--threads",
                "--src-addrs", "--size", "--room", "--idle", "--connect-rate", "--server-pid",
                "--json", "--quiet"):
        assert opt in p.stdout, opt


# -- against a strict fake server ---------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(op, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | op, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | op, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 127, n)
    return head + payload


class FakeChat:
    """The contract's server side in a few lines, strict about what the bench
    sends. mode: "ok", "dup" (each say twice to the non-senders), "drop"
    (every 5th say lost to the non-senders), "badaccept", "close" (everyone
    gets a close frame after the 30th say)."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.problems = []
        self.masks = []
        self.pongs = []             # payloads of pong frames
        self.json_pongs = 0
        self.logins = []
        self.conns = {}             # uid -> writer
        self.next_uid = 1000
        self.says = 0
        self.locks = {}
        self.closes = []            # payloads of the bench's close frames

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def problem(self, what):
        self.problems.append(what)

    async def handshake(self, reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        if not lines[0].startswith("GET /") or not lines[0].endswith(" HTTP/1.1"):
            self.problem("request line %r" % lines[0])
        h = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                h[k.strip().lower()] = v.strip()
        if h.get("upgrade", "").lower() != "websocket":
            self.problem("upgrade %r" % h.get("upgrade"))
        if "upgrade" not in h.get("connection", "").lower():
            self.problem("connection %r" % h.get("connection"))
        if h.get("sec-websocket-version") != "13":
            self.problem("version %r" % h.get("sec-websocket-version"))
        if "host" not in h:
            self.problem("no Host")
        key = h.get("sec-websocket-key", "")
        if len(base64.b64decode(key)) != 16:
            self.problem("key %r" % key)
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if self.mode == "badaccept":
            accept = accept[::-1]
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                      % accept).encode())

    async def read_frame(self, reader):
        b0, b1 = await reader.readexactly(2)
        if not b1 & 0x80:
            self.problem("unmasked client frame")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        self.masks.append(mask)
        data = await reader.readexactly(n)
        return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(data))

    async def send(self, writer, data, cut=None):
        """One frame, in two TCP writes when cut is given so that the bench
        sees it across reads; a lock per connection keeps frames whole."""
        lock = self.locks.setdefault(writer, asyncio.Lock())
        async with lock:
            if cut is None:
                writer.write(data)
                return
            writer.write(data[:cut])
            await writer.drain()
            await asyncio.sleep(0.002)
            writer.write(data[cut:])

    async def handle(self, reader, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        uid = None
        try:
            await self.handshake(reader, writer)
            while True:
                op, data = await self.read_frame(reader)
                if op == 0x8:
                    self.closes.append(data)
                    await self.send(writer, frame(0x8, data[:2]))
                    break
                if op == 0xA:
                    self.pongs.append(data)
                    continue
                if op != 0x1:
                    self.problem("opcode %d" % op)
                    continue
                msg = json.loads(data)
                if msg["type"] == "login":
                    uid = self.next_uid
                    self.next_uid += 1
                    self.conns[uid] = writer
                    self.logins.append(msg["name"])
                    # a user_list over 64 KiB (64-bit length), split inside its header
                    others = [{"uid": i, "name": "someone%05d" % i} for i in range(3000)]
                    ul = json.dumps({"type": "user_list", "user_list": others +
                                     [{"uid": uid, "name": msg["name"]}]}).encode()
                    await self.send(writer, frame(0x1, ul), 3)
                    login = json.dumps({"type": "login", "uid": uid, "name": msg["name"],
                                        "time": "2026-01-01 00:00:00"}).encode()
                    for w in list(self.conns.values()):
                        await self.send(w, frame(0x1, login))
                    await self.send(writer, frame(0x9, b"hello"))
                    await self.send(writer, frame(0x1, b'{"type":"ping"}'))
                elif msg["type"] == "pong":
                    self.json_pongs += 1
                elif msg["type"] == "say":
                    self.says += 1
                    if self.mode == "close" and self.says == 30:
                        for w in list(self.conns.values()):
                            await self.send(w, frame(0x8, struct.pack("!H", 1001) + b"bye"))
                        continue
                    out = frame(0x1, json.dumps({
                        "type": "say", "from_uid": uid, "to_uid": "all",
                        "content": msg["content"], "time": "2026-01-01 00:00:00"}).encode())
                    for to, w in list(self.conns.items()):
                        if to != uid and self.mode == "drop" and self.says % 5 == 0:
                            continue
                        times = 2 if to != uid and self.mode == "dup" else 1
                        for _ in range(times):
                            cut = 1 + self.says % (len(out) - 1) if self.says <= 20 else None
                            await self.send(w, out, cut)
                else:
                    self.problem("message %r" % msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if uid is not None:
                self.conns.pop(uid, None)
            writer.close()


async def bench_against(fake, *args):
    port = await fake.start()
    proc = await asyncio.create_subprocess_exec(
        *bench_argv(*args, "--json", "-q", "ws://127.0.0.1:%d/chat" % port),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        fake.server.close()
    return proc.returncode, out.decode(), err.decode()


def test_speaks_the_contract_like_a_real_client():
    fake = FakeChat()
    rc, out, err = asyncio.run(bench_against(fake, "-n", 3, "-s", 1, "-w", 4, "-d", 1,
                                             "--room", "lobby"))
    assert rc == 0, err
    assert fake.problems == [], fake.problems[:5]
    assert sorted(fake.logins) == ["bench0", "bench1", "bench2"]
    # every ping frame answered with its payload, every JSON ping with a pong
    assert fake.pongs == [b"hello"] * 3
    assert fake.json_pongs == 3
    # a fresh random mask per frame
    assert len(fake.masks) > 50
    assert len(set(fake.masks)) > 0.9 * len(fake.masks)
    r = check_shape(out)
    assert r["sent"] == fake.says > 20
    assert r["deliveries"] == r["expected_deliveries"] == 3 * r["sent"]
    assert (r["lost"], r["dups"]) == (0, 0)


def test_counts_duplicates():
    fake = FakeChat("dup")
    rc, out, err = asyncio.run(bench_against(fake, "-n", 3, "-s", 1, "-w", 4, "-d", 1))
    assert rc == 0, err
    r = check_shape(out)
    assert r["lost"] == 0
    # the two receivers got everything twice, the sender its echo once
    assert r["dups"] == 2 * r["sent"], r
    assert r["deliveries"] == r["expected_deliveries"] + r["dups"]


def test_counts_lost_messages():
    fake = FakeChat("drop")
    rc, out, err = asyncio.run(bench_against(fake, "-n", 3, "-s", 1, "-w", 4, "-d", 1,
                                             "--drain", "0.5"))
    assert rc == 0, err
    r = check_shape(out)
    assert r["dups"] == 0
    # every 5th say missed the two receivers
    assert r["lost"] == 2 * (fake.says // 5), (r, fake.says)
    assert r["deliveries"] == r["expected_deliveries"] - r["lost"]


def test_wrong_accept_value_fails():
    fake = FakeChat("badaccept")
    rc, out, err = asyncio.run(bench_against(fake, "-n", 2, "-d", 1))
    assert rc != 0
    assert "Sec-WebSocket-Accept" in err, err
    assert out == ""


def test_server_closing_connections_is_counted():
    fake = FakeChat("close")
    rc, out, err = asyncio.run(bench_against(fake, "-n", 4, "-s", 2, "-w", 2, "-d", 1,
                                             "--drain", "0.3"))
    assert rc == 0, err
    r = check_shape(out)
    assert r["errors"]["disconnects"] == 4, r
    assert r["sent"] >= 30 and r["lost"] > 0
    # each close frame was answered with the same code
    assert fake.closes == [struct.pack("!H", 1001)] * 4
