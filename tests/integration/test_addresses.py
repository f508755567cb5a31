"""Client addresses: --trusted-proxy with the PROXY protocol (v1, v2) and
X-Forwarded-For, per-address counting (IPv6 by /64), the default
--max-message, and options refused at start. PROXY and X-Forwarded-For are
written by hand on raw sockets; one test runs a real haproxy when there is
one."""

import shutil
import socket
import struct
import subprocess
import time

import pytest

from server_proc import BIN, require_binary
from wsraw import OP_TEXT, Closed, RawConn, RawWS, handshake_request

TRUST = ("--trusted-proxy", "127.0.0.1/32")
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, sport=40000, dport=80):
    fam, dst = ("TCP6", "::1") if ":" in src else ("TCP4", "127.0.0.1")
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def proxy_v2(src=None, sport=40000, local=False):
    """A v2 header as haproxy's send-proxy-v2 writes it; src None: UNSPEC."""
    if src is None:
        body, fam = b"", 0x00
    elif ":" in src:
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
                + struct.pack("!HH", sport, 80))
        fam = 0x21
    else:
        body = (socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 80))
        fam = 0x11
    return V2_SIG + bytes([0x20 if local else 0x21, fam]) + struct.pack("!H", len(body)) + body


def upgrade(port, prefix=b"", xff=None, path="/"):
    """Opens a connection, sends prefix (a PROXY header) and an upgrade
    request; returns (status or None when closed without an answer, conn)."""
    c = RawConn(port)
    extra = ["X-Forwarded-For: %s" % xff] if xff is not None else []
    req, _ = handshake_request(path, extra=extra)
    try:
        c.send_raw(prefix + req)
        return c.read_http_response(timeout=5, read_body=False).status, c
    except (Closed, ConnectionResetError, BrokenPipeError):
        return None, c


class Conns:
    """Connections kept open so that they count; all closed at the end."""

    def __init__(self):
        self.conns = []

    def open(self, port, prefix=b"", xff=None, path="/"):
        status, c = upgrade(port, prefix, xff, path)
        self.conns.append(c)
        return status

    def close(self):
        for c in self.conns:
            c.close()


@pytest.fixture
def conns():
    k = Conns()
    yield k
    k.close()


def assert_alive(port):
    ws = RawWS(port)
    try:
        assert ws.login("alive")
    finally:
        ws.close()


# -- X-Forwarded-For ----------------------------------------------------------------

def test_xff_names_the_client_behind_a_trusted_proxy(make_server, conns):
    srv = make_server(*TRUST, "--max-conns-per-ip", "2")
    assert conns.open(srv.ws_port, xff="203.0.113.1") == 101
    assert conns.open(srv.ws_port, xff="203.0.113.1") == 101
    assert conns.open(srv.ws_port, xff="203.0.113.1") == 503, "3rd from one client accepted"
    # another client behind the same proxy is not held back by the first
    assert conns.open(srv.ws_port, xff="203.0.113.2") == 101
    # a client that puts an address in front of its own gains nothing: the
    # proxy appended the real one on the right
    assert conns.open(srv.ws_port, xff="198.51.100.50, 203.0.113.1") == 503
    # the web port's /ws too, and the header's name in any case
    assert conns.open(srv.http_port, xff="203.0.113.3", path="/ws") == 101
    # the proxy's own requests (no header) count against the proxy: 2 more
    assert conns.open(srv.ws_port) == 101
    assert conns.open(srv.ws_port) == 101
    assert conns.open(srv.ws_port) == 503


def test_xff_chain_of_trusted_proxies(make_server, conns):
    srv = make_server(*TRUST, "--trusted-proxy", "10.0.0.0/8", "--max-conns-per-ip", "1")
    assert conns.open(srv.ws_port, xff="203.0.113.7, 10.1.1.1, 10.2.2.2") == 101
    # the same client through other inner proxies: still the same client
    assert conns.open(srv.ws_port, xff="203.0.113.7, 10.9.9.9") == 503
    assert conns.open(srv.ws_port, xff="2001:db8:7::1") == 101


def test_xff_is_ignored_from_an_untrusted_peer(make_server, conns):
    srv = make_server("--max-conns-per-ip", "2")
    assert conns.open(srv.ws_port, xff="203.0.113.1") == 101
    assert conns.open(srv.ws_port, xff="203.0.113.2") == 101
    status = conns.open(srv.ws_port, xff="203.0.113.3")
    assert status != 101, "X-Forwarded-For from an untrusted peer was believed"


def test_chat_works_through_a_trusted_proxy(make_server):
    srv = make_server(*TRUST)
    ws = RawWS(srv.ws_port, handshake=False)
    try:
        ws.send_raw(proxy_v2("198.51.100.4"))
        ws.handshake(extra=["X-Forwarded-For: 203.0.113.4"])
        uid, _ = ws.login("behind")
        ws.send_json({"type": "say", "content": "oi"})
        m = ws.recv_json()
        assert m["type"] == "say" and m["content"] == "oi" and m["from_uid"] == uid, m
    finally:
        ws.close()


# -- the PROXY protocol ---------------------------------------------------------------

@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
@pytest.mark.parametrize("port", ["ws", "http"])
def test_proxy_header_names_the_client(make_server, conns, header, port):
    srv = make_server(*TRUST, "--max-conns-per-ip", "2")
    p = srv.ws_port if port == "ws" else srv.http_port
    path = "/" if port == "ws" else "/ws"
    assert conns.open(p, header("198.51.100.7"), path=path) == 101
    assert conns.open(p, header("198.51.100.7", sport=40001), path=path) == 101
    assert conns.open(p, header("198.51.100.7"), path=path) == 503
    assert conns.open(p, header("198.51.100.8"), path=path) == 101
    # the proxy's own address is not spent by its clients
    assert conns.open(p, path=path) == 101


def test_proxy_header_before_a_page_request(make_server):
    srv = make_server(*TRUST)
    for header in (proxy_v1("198.51.100.9"), proxy_v2("198.51.100.9")):
        with RawConn(srv.http_port) as c:
            c.send_raw(header + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = c.read_http_response()
            assert resp.status == 200, resp
            assert b"<html" in resp.body.lower()


def test_proxy_ipv6_clients_count_by_64(make_server, conns):
    srv = make_server(*TRUST, "--max-conns-per-ip", "2")
    assert conns.open(srv.ws_port, proxy_v1("2001:db8:1:2::a")) == 101
    assert conns.open(srv.ws_port, proxy_v2("2001:db8:1:2:ffff:ffff:ffff:ffff")) == 101
    # a third address of the same /64: the same site
    assert conns.open(srv.ws_port, proxy_v1("2001:db8:1:2::c")) == 503
    assert conns.open(srv.ws_port, proxy_v1("2001:db8:1:3::a")) == 101
    # an IPv4-mapped address is its IPv4 address
    assert conns.open(srv.ws_port, proxy_v2("::ffff:198.51.100.20")) == 101
    assert conns.open(srv.ws_port, proxy_v1("198.51.100.20")) == 101
    assert conns.open(srv.ws_port, proxy_v1("::ffff:198.51.100.20")) == 503


def test_proxy_local_and_unknown_keep_the_proxy_address(make_server, conns):
    srv = make_server(*TRUST, "--max-conns-per-ip", "3")
    assert conns.open(srv.ws_port, proxy_v2(local=True)) == 101
    assert conns.open(srv.ws_port, b"PROXY UNKNOWN\r\n") == 101
    assert conns.open(srv.ws_port, proxy_v2(None)) == 101          # PROXY, UNSPEC
    # all three were 127.0.0.1's: a fourth LOCAL is over its limit
    assert conns.open(srv.ws_port, proxy_v2(local=True)) == 503
    assert conns.open(srv.ws_port, proxy_v1("198.51.100.1")) == 101


def test_proxy_header_in_pieces(make_server):
    srv = make_server(*TRUST)
    for header in (proxy_v1("198.51.100.3"), proxy_v2("2001:db8::3")):
        ws = RawWS(srv.ws_port, handshake=False)
        try:
            for i in range(len(header)):
                ws.send_raw(header[i:i + 1])
                time.sleep(0.002)
            ws.handshake()
            assert ws.login("pieces")
        finally:
            ws.close()


def test_held_signature_prefix_that_turns_out_to_be_http(make_server):
    """A trusted peer's first bytes look like the start of a v2 signature
    (a CRLF, which HTTP allows before a request) and then are not: they are
    given to HTTP after all, in order."""
    srv = make_server(*TRUST)
    with RawConn(srv.http_port) as c:
        c.send_raw(b"\r\n")
        time.sleep(0.1)
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = c.read_http_response()
        assert resp.status == 200, resp
    ws = RawWS(srv.ws_port, handshake=False)
    try:
        ws.send_raw(b"\r\n")
        time.sleep(0.1)
        ws.handshake()
        assert ws.login("held")
    finally:
        ws.close()


def test_proxy_header_request_and_frames_in_one_write(make_server):
    srv = make_server(*TRUST)
    c = RawConn(srv.ws_port)
    try:
        req, _ = handshake_request()
        from wsraw import encode_frame
        c.send_raw(proxy_v1("198.51.100.5") + req +
                   encode_frame(OP_TEXT, b'{"type":"login","name":"together"}'))
        resp = c.read_http_response(read_body=False)
        assert resp.status == 101, resp
        deadline = time.monotonic() + 5
        head = c.read_exact(2, deadline)
        assert head[0] == 0x81
        payload = c.read_exact(head[1] & 0x7f, deadline) if head[1] < 126 else None
        assert payload is None or b"user_list" in payload
    finally:
        c.close()


@pytest.mark.parametrize("header", [proxy_v1("198.51.100.7"), proxy_v2("198.51.100.7")],
                         ids=["v1", "v2"])
def test_proxy_header_from_an_untrusted_peer_is_bad_http(make_server, header):
    srv = make_server("--trusted-proxy", "10.0.0.0/8")
    for port in (srv.ws_port, srv.http_port):
        status, c = upgrade(port, header)
        c.close()
        assert status == 400, "PROXY header from an untrusted peer: %r" % status
    assert_alive(srv.ws_port)


MALFORMED = [
    b"PROXY TCP4 198.51.100.7 127.0.0.1 1\r\n",                  # a port missing
    b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",                 # family mismatch
    b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
    b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n",                    # past 107 bytes
    b"PROXY TCP4 198.51.100.7 127.0.0.1 1 2\n",                  # LF without CR
    V2_SIG + b"\x11\x11\x00\x0c" + b"\x00" * 12,                 # version 1 in v2
    V2_SIG + b"\x21\x11\x00\x08" + b"\x00" * 8,                  # INET too short
    V2_SIG + b"\x21\x11\xff\xff",                                # 64 KiB of TLVs
    V2_SIG + b"\x23\x11\x00\x0c" + b"\x00" * 12,                 # command 3
]


@pytest.mark.parametrize("header", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_proxy_header_from_a_trusted_peer_is_closed(make_server, header):
    srv = make_server(*TRUST)
    c = RawConn(srv.ws_port)
    try:
        req, _ = handshake_request()
        try:
            c.send_raw(header + req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed, got = c.wait_closed(timeout=5)
        assert closed, "a malformed PROXY header left the connection open"
        assert got == 0, "a malformed PROXY header was answered (%d bytes)" % got
    finally:
        c.close()
    assert_alive(srv.ws_port)


def test_unfinished_proxy_header_times_out(make_server):
    srv = make_server(*TRUST, "--handshake-timeout", "1")
    c = RawConn(srv.ws_port)
    try:
        c.send_raw(b"PROXY TCP4 198.51.100.7")
        closed, _ = c.wait_closed(timeout=5)
        assert closed, "an unfinished PROXY header held the connection past the handshake timeout"
    finally:
        c.close()


# -- the largest message -----------------------------------------------------------

def test_default_max_message_holds_a_maximum_say(make_server):
    """4096 astral code points written as JSON surrogate escapes (12 bytes
    each) fit the default 64 KiB; one byte past 65536 closes with 1009."""
    srv = make_server("--rate", "1000", "--burst", "1000")
    ws = RawWS(srv.ws_port)
    try:
        ws.login("big")
        content = "\U0001F600" * 4096
        msg = ('{"type":"say","to_uid":"all","content":"%s"}'
               % ("\\ud83d\\ude00" * 4096)).encode()
        assert 49152 < len(msg) <= 65536
        ws.send_frame(OP_TEXT, msg)
        m = ws.recv_json()
        assert m["type"] == "say" and m["content"] == content, m.get("content", m)[:40]
        pad = 65536 - len(b'{"type":"say","content":""}')
        exact = b'{"type":"say","content":"' + b"a" * pad + b'"}'
        assert len(exact) == 65536
        ws.send_frame(OP_TEXT, exact)
        m = ws.recv_json()
        assert m["type"] == "error" and m["code"] == "bad_content", m   # > 4096: refused, kept
        ws.send_frame(OP_TEXT, exact[:-2] + b'a"}')
        code, _ = ws.expect_close()
        assert code == 1009, code
    finally:
        ws.close()


# -- settings refused at start ---------------------------------------------------------

@pytest.mark.parametrize("args,says", [
    (["--max-message", "0"], b"--max-message"),
    (["--max-message", "nan"], b"--max-message"),
    (["--max-message", "100.5"], b"--max-message"),
    (["--max-content", "0"], b"--max-content"),
    (["--max-content", "600000"], b"--outbound-cap"),
    (["--max-content", "1048576", "--outbound-cap", "1073741824"], b"4 GiB"),
    (["--outbound-cap", "1024"], b"--outbound-cap"),
    (["--max-header", "10"], b"--max-header"),
    (["--max-conns-per-ip", "0"], b"--max-conns-per-ip"),
    (["--rate", "nan"], b"--rate"),
    (["--trusted-proxy", "10.0.0.0/40"], b"--trusted-proxy"),
    (["--trusted-proxy", "proxy.example.com"], b"--trusted-proxy"),
])
def test_nonsense_settings_exit_2(tmp_path, args, says):
    require_binary()
    proc = subprocess.run([BIN, "serve", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--data", str(tmp_path)] + args, capture_output=True, timeout=10)
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
    assert says in proc.stderr, proc.stderr
    assert b"listening" not in proc.stdout


# -- a real haproxy ------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upgrade_from(src, port):
    """An upgrade from source address src (any 127/8 address is local)."""
    s = socket.socket()
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    req, _ = handshake_request()
    s.sendall(req)
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            b = s.recv(4096)
            if not b:
                break
            head += b
    except (ConnectionResetError, socket.timeout):
        pass
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None
    return status, s


@pytest.mark.skipif(shutil.which("haproxy") is None,
                    reason="haproxy is not installed (apt-get install haproxy)")
def test_behind_haproxy_send_proxy_v2(make_server, tmp_path):
    srv = make_server(*TRUST, "--max-conns-per-ip", "2")
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "global\n  maxconn 200\n"
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
        "frontend chat\n  bind 127.0.0.1:%d\n  default_backend tagarela\n"
        "backend tagarela\n  server one 127.0.0.1:%d send-proxy-v2\n" % (port, srv.ws_port))
    proxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "haproxy.err", "wb"))
    socks = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proxy.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("haproxy did not start: %s" % (tmp_path / "haproxy.err").read_text())
                time.sleep(0.05)
        # haproxy connects from 127.0.0.1 for everyone; its header says who
        for src, want in (("127.0.0.2", 101), ("127.0.0.2", 101), ("127.0.0.2", 503),
                          ("127.0.0.3", 101), ("127.0.0.3", 101), ("127.0.0.4", 101)):
            status, s = upgrade_from(src, port)
            socks.append(s)
            assert status == want, (src, status, want)
    finally:
        for s in socks:
            s.close()
        proxy.terminate()
        proxy.wait(timeout=10)
