"""Helpers of the adversarial suite: the server's memory read from /proc, and
honest clients that share a room with the attackers and must come out of
every attack with their connection and every message, once, in order.

Everything here is blocking code on threads (no asyncio): attackers write
as fast as the kernel takes, honest readers read as fast as they can, each
on its own thread, and every wait has a deadline."""

import json
import os
import select
import socket
import struct
import threading
import time

from wsraw import (OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawWS, encode_frame,
                   parse_json_strict)

MB = 1024 * 1024

# The largest say the default limits accept: 4096 code points, all line
# breaks, the content that grows most once escaped (nl2br and HTML).
MAX_SAY_CONTENT = "\n" * 4096


def rss_bytes(pid):
    """Resident set of a process, from /proc/PID/status (VmRSS, in kB)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


class RssMonitor:
    """Samples a process's RSS on a thread; keeps the baseline and the peak.
    `over(bound)` lets an attack stop as soon as the bound is broken, so a
    server without the fix is not pushed to gigabytes."""

    def __init__(self, pid, period=0.05):
        self.pid = pid
        self.period = period
        self.baseline = rss_bytes(pid)
        self.peak = self.baseline
        self.samples = []           # (monotonic time, rss bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                r = rss_bytes(self.pid)
            except (OSError, AssertionError):
                return
            self.samples.append((time.monotonic(), r))
            self.peak = max(self.peak, r)
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def growth(self):
        return self.peak - self.baseline

    def over(self, bound):
        return self.growth() > bound

    def check(self, bound, what):
        g = self.growth()
        assert g <= bound, ("server RSS grew by %.1f MB during %s (from %.1f MB), bound %.0f MB"
                            % (g / MB, what, self.baseline / MB, bound / MB))


class FrameReader:
    """Incremental parser of server frames over a byte buffer."""

    def __init__(self):
        self.buf = bytearray()
        self.pos = 0

    def feed(self, data):
        if self.pos and self.pos == len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def next(self):
        """(fin, opcode, payload) or None when the frame is not all here."""
        b, p = self.buf, self.pos
        if len(b) - p < 2:
            return None
        fin, op, n = b[p] & 0x80, b[p] & 0x0F, b[p + 1] & 0x7F
        assert not b[p + 1] & 0x80, "server frame is masked"
        h = 2
        if n == 126:
            if len(b) - p < 4:
                return None
            n, h = struct.unpack_from("!H", b, p + 2)[0], 4
        elif n == 127:
            if len(b) - p < 10:
                return None
            n, h = struct.unpack_from("!Q", b, p + 2)[0], 10
        if len(b) - p < h + n:
            return None
        payload = bytes(b[p + h:p + h + n])
        self.pos = p + h + n
        return bool(fin), op, payload


class LockedWS(RawWS):
    """A RawWS whose sends may come from two threads (the test sending, the
    reader answering pings) without interleaving frames."""

    def __init__(self, port, **kw):
        self.send_lock = threading.Lock()
        super().__init__(port, **kw)

    def send_raw(self, data):
        with self.send_lock:
            self.sock.sendall(data)


def timed_content(tag):
    """A say's content that carries when it was sent (for latencies)."""
    return "%s t=%d" % (tag, time.monotonic_ns())


class HonestClient:
    """A logged-in client that reads everything as fast as it can on its own
    thread and answers pings. It records the ids of the says it gets (live
    ones only), the delivery latency of timed says, errors and the close."""

    def __init__(self, port, name, room, login_extra=None, timeout=10.0):
        self.name = name
        self.ws = LockedWS(port, timeout=timeout)
        self._send_login(room, login_extra)
        self._logged_in(timeout)

    @classmethod
    def login_all(cls, port, names, room, login_extra=None, timeout=30.0):
        """Many clients whose logins leave back to back, as fast as one
        socket write each: the server sees them at once."""
        clients = []
        for name in names:
            c = cls.__new__(cls)
            c.name = name
            c.ws = LockedWS(port, timeout=timeout)
            clients.append(c)
        for c in clients:
            c._send_login(room, login_extra)
        for c in clients:
            c._logged_in(timeout)
        return clients

    def _send_login(self, room, login_extra):
        msg = {"type": "login", "name": self.name, "room_id": room}
        msg.update(login_extra or {})
        self.ws.send_json(msg)

    def _logged_in(self, timeout):
        """Reads the user_list and our login, then starts the reader."""
        ul = self.ws.recv_json(timeout)
        assert ul["type"] == "user_list", "login of %s answered %r" % (self.name, ul)
        me = self.ws.recv_json(timeout)
        assert me["type"] == "login", me
        self.uid = me["uid"]
        self.ids = []               # ids of live says, in arrival order
        self.contents = {}          # id -> content, for the says with a tag
        self.latencies = []         # seconds, timed says
        self.history = []           # the `history` messages, as received
        self.history_sizes = []     # their sizes in bytes
        self.others = []            # every other message (login, logout...)
        self.errors = []
        self.close_code = None      # the server's close frame
        self.lost = None            # why the connection ended, if it did
        self.received_bytes = 0
        self._stop = threading.Event()
        self._leftover = bytes(self.ws.buf)     # read past the login already
        self.ws.buf.clear()
        self.ws.sock.settimeout(None)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="honest-" + self.name)
        self._thread.start()

    @property
    def alive(self):
        return self.lost is None

    def say(self, content, **extra):
        msg = {"type": "say", "to_uid": "all", "content": content}
        msg.update(extra)
        self.ws.send_json(msg)

    def _on_message(self, payload):
        obj = parse_json_strict(payload.decode("utf-8"))
        t = obj.get("type")
        if t == "say" and "id" in obj:
            self.ids.append(obj["id"])
            content = obj["content"]
            if " t=" in content[:80]:
                tag, _, stamp = content.partition(" t=")
                self.contents[obj["id"]] = tag
                if stamp.isdigit():
                    self.latencies.append((time.monotonic_ns() - int(stamp)) / 1e9)
        elif t == "history":
            self.history.append(obj["messages"])
            self.history_sizes.append(len(payload))
        elif t == "error":
            self.errors.append(obj)
        elif t == "ping":
            self.ws.send_json({"type": "pong"})
        else:
            self.others.append(obj)

    def _run(self):
        reader = FrameReader()
        reader.feed(self._leftover)
        sock = self.ws.sock
        parts = []
        try:
            while not self._stop.is_set():
                f = reader.next()
                if f is None:
                    r, _, _ = select.select([sock], [], [], 0.2)
                    if not r:
                        continue
                    data = sock.recv(1 << 20)
                    if not data:
                        self.lost = "EOF"
                        return
                    self.received_bytes += len(data)
                    reader.feed(data)
                    continue
                fin, op, payload = f
                if op == OP_PING:
                    self.ws.send_frame(OP_PONG, payload)
                elif op == OP_CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.lost = "close frame %r %r" % (self.close_code, payload[2:80])
                    return
                elif op != OP_PONG:
                    parts.append(payload)
                    if fin:
                        self._on_message(b"".join(parts))
                        parts = []
        except (OSError, ValueError, AssertionError) as e:
            if not self._stop.is_set():
                self.lost = "error: %r" % (e,)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.ws.close()


def wait_for(cond, timeout, what, step=0.05):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(step)


class HonestRoom:
    """Honest clients in one room. The first one also talks: a start marker,
    a few timed says a second while the attack runs, an end marker. At the
    end every honest client must still be connected and must have got the
    room's says from the start marker to the end marker: every id, once, in
    order (the attackers' says included)."""

    def __init__(self, port, room="1", readers=10, prefix="honest", chatter_per_s=5):
        self.port = port
        self.room = room
        self.clients = [HonestClient(port, "%s%d" % (prefix, i), room) for i in range(readers)]
        self.talker = self.clients[0]
        self.chatter_per_s = chatter_per_s
        self.start_id = self.end_id = None
        self.sent = 0
        self._chatter_stop = threading.Event()
        self._chatter = None

    def _marker(self, tag, timeout):
        self.talker.say(timed_content(tag))
        self.sent += 1

        def seen():
            return all(tag in c.contents.values() or not c.alive for c in self.clients)
        try:
            wait_for(seen, timeout, "the %r marker at every honest client" % tag)
        except AssertionError as e:
            raise AssertionError("%s; %s" % (e, self.describe())) from None
        self.check_alive()
        for mid, t in self.talker.contents.items():
            if t == tag:
                return mid
        raise AssertionError("the talker lost its connection before %r: %s"
                             % (tag, self.talker.lost))

    def _chatter_run(self):
        i = 0
        while not self._chatter_stop.wait(1.0 / self.chatter_per_s):
            try:
                self.talker.say(timed_content("chatter%d" % i))
            except OSError:
                continue        # lost: the checks say so; the soak replaces it
            self.sent += 1
            i += 1

    def begin(self, timeout=10.0):
        self.start_id = self._marker("start", timeout)
        if self.chatter_per_s:
            self._chatter = threading.Thread(target=self._chatter_run, daemon=True)
            self._chatter.start()
        return self

    def finish(self, timeout=60.0):
        """Stops the chatter, sends the end marker and checks every honest
        client. Returns the latencies of the timed says, all clients."""
        self._chatter_stop.set()
        if self._chatter:
            self._chatter.join(5)
        self.check_alive()
        self.end_id = self._marker("end", timeout)
        self.check_alive()
        expected = list(range(self.start_id, self.end_id + 1))
        for c in self.clients:
            got = [i for i in c.ids if self.start_id <= i <= self.end_id]
            if got != expected:
                dup = len(got) - len(set(got))
                missing = sorted(set(expected) - set(got))
                raise AssertionError(
                    "%s got %d says of %d between ids %d and %d (duplicates %d, "
                    "missing %r..., in order %s)" % (
                        c.name, len(got), len(expected), self.start_id, self.end_id,
                        dup, missing[:10], got == sorted(got)))
        return [x for c in self.clients for x in c.latencies]

    def describe(self):
        """Where each honest client is: its last id, bytes read, state."""
        return "honest clients: " + ", ".join(
            "%s last id %s, %d bytes, %s" % (c.name, c.ids[-1] if c.ids else None,
                                             c.received_bytes, c.lost or "connected")
            for c in self.clients)

    def check_alive(self):
        lost = ["%s: %s" % (c.name, c.lost) for c in self.clients if not c.alive]
        assert not lost, "honest clients lost their connection: %s" % "; ".join(lost[:5])

    def close(self):
        self._chatter_stop.set()
        for c in self.clients:
            c.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def say_frame(content, pad=0, mask_key=b"\x11\x22\x33\x44", **extra):
    """One masked client frame with a say, built once and sent many times
    by the attackers (pad: an ignored key of that many bytes)."""
    msg = {"type": "say", "to_uid": "all", "content": content}
    msg.update(extra)
    if pad:
        msg["pad"] = "p" * pad
    return encode_frame(OP_TEXT, json.dumps(msg).encode(), mask_key=mask_key)


def raw_socket(port, rcvbuf=None):
    """A plain TCP socket to the server (an attacker that need not speak
    WebSocket properly). rcvbuf: a small receive buffer, set before
    connecting, for a client that reads nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class OwnServer:
    """A server started by the test itself rather than by make_server: for
    options that today's binary may not know yet, so that a refusal to start
    fails the test (an xfail) and not its teardown. Must exit 0 on SIGTERM
    when the test got that far."""

    def __init__(self, workdir, *args):
        from server_proc import Server
        self.server = Server(workdir, args)

    def __enter__(self):
        return self.server.start()

    def __exit__(self, exc_type, *exc):
        rc = self.server.terminate()
        if exc_type is None:
            assert rc == 0, "server exit code %r on SIGTERM\n%s" % (rc, self.server.describe())
