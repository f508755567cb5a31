"""A small raw-socket WebSocket client (RFC 6455) for protocol tests.

It builds every byte itself so tests can send frames that a conforming client
library would refuse to produce (unmasked, reserved bits, bad opcodes, broken
UTF-8, bad close codes...). Every read has a deadline: nothing here can hang.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


class Closed(Exception):
    """The peer closed the TCP connection (EOF or reset)."""


def accept_for(key):
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None,
                 length=None):
    """One frame. rsv is the 3-bit RSV1..3 field (4=RSV1, 2=RSV2, 1=RSV3).
    length overrides the advertised payload length (for lying headers)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    if mask_key is None:
        mask_key = os.urandom(4)
    return head + mask_key + apply_mask(payload, mask_key)


def apply_mask(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "payload", "masked")

    def __init__(self, fin, rsv, opcode, payload, masked):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.payload, self.masked = payload, masked

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return "Frame(fin=%s rsv=%d op=%#x len=%d %r)" % (
            self.fin, self.rsv, self.opcode, len(self.payload), p)


def parse_json_strict(text):
    """json.loads that refuses duplicate keys (key order is kept by dict)."""
    def hook(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), "duplicate keys in %r" % (text,)
        return dict(pairs)
    return json.loads(text, object_pairs_hook=hook)


class HttpResponse:
    def __init__(self, status_line, headers, body, head_raw):
        self.status_line = status_line
        parts = status_line.split(" ", 2)
        self.version = parts[0]
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        self.headers = headers          # list of (name, value) as sent
        self.body = body
        self.head_raw = head_raw

    def header(self, name):
        """Value of the first header with that name (case-insensitive) or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "HttpResponse(%r, %r, body=%r)" % (self.status_line, self.headers,
                                                  self.body[:200])


class RawConn:
    """A TCP connection with a receive buffer and deadline-based reads."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, rcvbuf=None):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    # -- low level -------------------------------------------------------
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_best_effort(self, data, chunk=65536):
        """Sends as much as the peer takes; stops quietly when it closes or
        stops reading. Returns the number of bytes sent."""
        sent = 0
        view = memoryview(data)
        old = self.sock.gettimeout()
        self.sock.settimeout(2.0)
        try:
            while sent < len(data):
                n = self.sock.send(view[sent:sent + chunk])
                if n <= 0:
                    break
                sent += n
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            pass
        finally:
            self.sock.settimeout(old)
        return sent

    def _fill(self, deadline):
        """Reads more bytes into buf. Raises Closed on EOF/reset and
        TimeoutError when the deadline passes."""
        if self.eof:
            raise Closed("connection already closed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data") from None
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            raise Closed("connection reset") from None
        if not data:
            self.eof = True
            raise Closed("EOF")
        self.buf += data

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, marker, deadline, limit=1 << 20):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (marker, limit))
            self._fill(deadline)

    def wait_closed(self, timeout=5.0):
        """Reads and discards until EOF/reset. Returns (closed, discarded)."""
        deadline = time.monotonic() + timeout
        discarded = len(self.buf)
        self.buf.clear()
        while True:
            try:
                self._fill(deadline)
            except Closed:
                return True, discarded
            except TimeoutError:
                return False, discarded
            discarded += len(self.buf)
            self.buf.clear()

    def read_http_response(self, timeout=None, read_body=True):
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self.read_until(b"\r\n\r\n", deadline, limit=65536)
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        status_line = lines[0]
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        body = b""
        resp = HttpResponse(status_line, headers, body, head)
        if read_body and resp.status != 101:
            cl = resp.header("Content-Length")
            if cl is not None:
                try:
                    body = self.read_exact(int(cl), deadline)
                except Closed:
                    body = bytes(self.buf)
            else:
                # no length: read until EOF (or the deadline)
                try:
                    while True:
                        self._fill(deadline)
                except (Closed, TimeoutError):
                    pass
                body = bytes(self.buf)
                self.buf.clear()
            resp.body = body
        return resp

    def reset(self):
        """Closes with a TCP RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def handshake_request(path="/", host="127.0.0.1", key=None, version="13",
                      extra=(), origin=None, method="GET", http="HTTP/1.1"):
    key = key if key is not None else new_key()
    lines = ["%s %s %s" % (method, path, http), "Host: %s" % host,
             "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: %s" % key]
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    if origin is not None:
        lines.append("Origin: %s" % origin)
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


class RawWS(RawConn):
    """A WebSocket client over RawConn. Masks its frames unless told not to."""

    def __init__(self, port, host="127.0.0.1", path="/", timeout=5.0,
                 rcvbuf=None, origin=None, handshake=True):
        super().__init__(port, host, timeout, rcvbuf)
        self.path = path
        self.origin = origin
        self.response = None
        if handshake:
            self.handshake()

    def handshake(self, extra=()):
        req, key = handshake_request(self.path, "127.0.0.1", origin=self.origin,
                                     extra=extra)
        self.send_raw(req)
        resp = self.read_http_response(read_body=False)
        self.response = resp
        assert resp.status == 101, "handshake refused: %r" % (resp,)
        assert resp.header("Sec-WebSocket-Accept") == accept_for(key), resp
        return resp

    # -- sending ---------------------------------------------------------
    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True,
                   mask_key=None):
        self.send_raw(encode_frame(opcode, payload, fin, rsv, mask, mask_key))

    def send_text(self, text, fin=True):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text, fin)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def send_close(self, code=None, reason=b"", payload=None):
        if payload is None:
            payload = close_payload(code, reason)
        self.send_frame(OP_CLOSE, payload)

    # -- receiving -------------------------------------------------------
    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        b0, b1 = self.read_exact(2, deadline)
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF
        masked, n = bool(b1 & 0x80), b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
        key = self.read_exact(4, deadline) if masked else None
        payload = self.read_exact(n, deadline)
        if masked:
            payload = apply_mask(payload, key)
        frame = Frame(fin, rsv, opcode, payload, masked)
        assert not masked, "server frames must not be masked: %r" % (frame,)
        assert rsv == 0, "server frame with RSV bits set: %r" % (frame,)
        return frame

    def recv_message(self, timeout=None, answer_pings=True):
        """Next data message as (opcode, payload bytes), reassembling
        fragments and answering pings. A close frame raises AssertionError
        naming its code; EOF raises Closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        parts, first_op = [], None
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                raise AssertionError("unexpected close frame code=%r payload=%r"
                                     % (f.close_code, f.payload))
            if first_op is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), "bad first frame %r" % f
                first_op = f.opcode
            else:
                assert f.opcode == OP_CONT, "expected continuation, got %r" % f
            parts.append(f.payload)
            if f.fin:
                return first_op, b"".join(parts)

    def recv_json(self, timeout=None):
        """Next JSON object from a text message (skips {"type":"ping"})."""
        while True:
            op, payload = self.recv_message(timeout)
            assert op == OP_TEXT, "server sent a non-text data message %r" % payload[:100]
            obj = parse_json_strict(payload.decode("utf-8"))
            if isinstance(obj, dict) and obj.get("type") == "ping":
                continue
            return obj

    def expect_close(self, timeout=5.0, reply=True):
        """Reads until a close frame. Returns (code, reason bytes) or
        (None, None) when the TCP connection ends without one. Then answers
        the close (if reply) and checks the server closes TCP."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except Closed:
                return None, None
            if f.opcode != OP_CLOSE:
                continue
            code = f.close_code
            reason = f.payload[2:]
            assert len(f.payload) != 1, "server close frame with a 1-byte payload"
            assert code not in (1004, 1005, 1006, 1015) and (code is None or 1000 <= code < 5000), \
                "server sent close code %r, which may not be sent" % code
            try:
                reason.decode("utf-8")
            except UnicodeDecodeError:
                raise AssertionError("server close reason is not UTF-8: %r" % reason)
            if reply:
                try:
                    self.send_close(code if code is not None else None)
                except OSError:
                    pass
            closed, _ = self.wait_closed(3.0)
            assert closed, "server sent close %r but kept the TCP connection open" % code
            return code, reason

    # -- chat helpers ------------------------------------------------------
    def login(self, name, room_id=None):
        msg = {"type": "login", "name": name}
        if room_id is not None:
            msg["room_id"] = room_id
        self.send_json(msg)
        ul = self.recv_json()
        assert ul["type"] == "user_list", ul
        me = self.recv_json()
        assert me["type"] == "login", me
        session = self.recv_json()
        assert session["type"] == "session" and session["uid"] == me["uid"], session
        self.token = session["token"]
        return me["uid"], ul["user_list"]
