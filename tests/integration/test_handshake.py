"""The HTTP upgrade (RFC 6455 section 4) on the WebSocket port."""

import base64
import time

import pytest

from wsraw import RawConn, RawWS, accept_for, handshake_request, new_key

SEED_KEY = "zPDr6m4czzUdOFnsxIUEAw=="
SEED_ACCEPT = "nSsCeIBUsFnDJCRb/BNlFzBUDpM="

# The browser's request from the seed capture, byte for byte (715 bytes).
SEED_REQUEST = "\r\n".join([
    "GET / HTTP/1.1",
    "Host: 127.0.0.1:7272",
    "User-Agent: Mozilla/5.0 (X11; Ubuntu; Linux i686; rv:31.0) Gecko/20100101 Firefox/31.0",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language: zh-cn,zh;q=0.8,en-us;q=0.5,en;q=0.3",
    "Accept-Encoding: gzip, deflate",
    "Sec-WebSocket-Version: 13",
    "Origin: http://127.0.0.1:55151",
    "Sec-WebSocket-Key: zPDr6m4czzUdOFnsxIUEAw==",
    "Cookie: Hm_lvt_abcf9330bef79b4aba5b24fa373506d9=1402048017; "
    "Hm_lvt_5fedb3bdce89499492c079ab4a8a0323=1403063068,1403141761; "
    "Hm_lvt_7b1919221e89d2aa5711e4deb935debd=1407836536; "
    "Hm_lpvt_7b1919221e89d2aa5711e4deb935debd=1407837000",
    "Connection: keep-alive, Upgrade",
    "Pragma: no-cache",
    "Cache-Control: no-cache",
    "Upgrade: websocket",
]).encode() + b"\r\n\r\n"


def request(port, data, timeout=5.0):
    """Sends raw bytes, returns the parsed HTTP response."""
    with RawConn(port, timeout=timeout) as c:
        c.send_raw(data)
        return c.read_http_response()


def upgrade(port, **kw):
    data, _ = handshake_request(**kw)
    return request(port, data)


def check_101(resp, key):
    assert resp.status_line == "HTTP/1.1 101 Switching Protocols", resp
    assert (resp.header("Upgrade") or "").lower() == "websocket", resp
    tokens = [t.strip().lower() for t in (resp.header("Connection") or "").split(",")]
    assert "upgrade" in tokens, resp
    assert resp.header("Sec-WebSocket-Accept") == accept_for(key), resp
    # nothing was offered, so nothing may be selected
    assert resp.header("Sec-WebSocket-Extensions") is None, resp
    assert resp.header("Sec-WebSocket-Protocol") is None, resp


def test_seed_request_bytes(server):
    assert len(SEED_REQUEST) == 715
    assert accept_for(SEED_KEY) == SEED_ACCEPT
    ws = RawWS(server.ws_port, handshake=False)
    try:
        ws.send_raw(SEED_REQUEST)
        resp = ws.read_http_response(read_body=False)
        check_101(resp, SEED_KEY)
        assert resp.header("Sec-WebSocket-Accept") == SEED_ACCEPT
        # and the socket is a working chat connection afterwards
        uid, users = ws.login("mynick")
        assert users == [{"uid": uid, "name": "mynick"}]
    finally:
        ws.close()


def test_seed_request_split_in_tiny_pieces(server):
    """The request arrives a few bytes at a time (slow network)."""
    with RawConn(server.ws_port) as c:
        for i in range(0, len(SEED_REQUEST), 37):
            c.send_raw(SEED_REQUEST[i:i + 37])
            time.sleep(0.002)
        resp = c.read_http_response(read_body=False)
        check_101(resp, SEED_KEY)


def test_frame_pipelined_with_request(server):
    """A login frame in the same TCP write as the request is not lost."""
    from wsraw import encode_frame, OP_TEXT
    ws = RawWS(server.ws_port, handshake=False)
    try:
        data, key = handshake_request()
        ws.send_raw(data + encode_frame(OP_TEXT, b'{"type":"login","name":"pipelined"}'))
        resp = ws.read_http_response(read_body=False)
        check_101(resp, key)
        ul = ws.recv_json()
        assert ul["type"] == "user_list" and ul["user_list"][-1]["name"] == "pipelined", ul
        assert ws.recv_json()["type"] == "login"
    finally:
        ws.close()


@pytest.mark.parametrize("path", ["/", "/chat", "/ws", "/a/b/c?x=1&y=2"])
def test_ws_port_any_path(server, path):
    key = new_key()
    resp = upgrade(server.ws_port, path=path, key=key)
    check_101(resp, key)


def test_header_names_and_values_case_insensitive(server):
    key = new_key()
    data = ("GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: WebSocket\r\n"
            "connection: keep-alive, UPGRADE\r\nsec-websocket-key: %s\r\n"
            "sec-websocket-version: 13\r\n\r\n" % key).encode()
    check_101(request(server.ws_port, data), key)


def test_header_values_trimmed(server):
    """Optional whitespace around header values is not part of the key."""
    data = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade:   websocket  \r\n"
            "Connection:Upgrade\r\nSec-WebSocket-Key:   %s   \r\n"
            "Sec-WebSocket-Version:  13 \r\n\r\n" % SEED_KEY).encode()
    check_101(request(server.ws_port, data), SEED_KEY)


def test_version_12_gets_426(server):
    resp = upgrade(server.ws_port, version="12")
    assert resp.status == 426, resp
    assert resp.header("Sec-WebSocket-Version") == "13", resp


def test_missing_version_refused(server):
    resp = upgrade(server.ws_port, version=None)
    assert resp.status in (400, 426), resp


def test_missing_key_400(server):
    data = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    resp = request(server.ws_port, data)
    assert resp.status == 400, resp


@pytest.mark.parametrize("key", [
    "",
    "abc",
    base64.b64encode(b"x" * 15).decode(),          # 15 bytes
    base64.b64encode(b"x" * 17).decode(),          # 17 bytes
    base64.b64encode(b"x" * 32).decode(),          # 32 bytes
    "zPDr6m4czzUdOFnsxIUE!w==",                    # not base64
    "zPDr6m4czzUdOFnsxIUEAw",                      # no padding: 22 chars
])
def test_bad_key_400(server, key):
    resp = upgrade(server.ws_port, key=key)
    assert resp.status == 400, resp


def test_post_refused(server):
    resp = upgrade(server.ws_port, method="POST")
    assert resp.status in (400, 405), resp


def test_http_1_0_refused(server):
    """RFC 6455 4.2.1: the request must be HTTP/1.1 or higher."""
    resp = upgrade(server.ws_port, http="HTTP/1.0")
    assert 400 <= resp.status < 500, resp


def test_missing_host_refused(server):
    """RFC 6455 4.2.1: a Host header is required."""
    key = new_key()
    data = ("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
    resp = request(server.ws_port, data)
    assert resp.status == 400, resp


def test_missing_upgrade_header_refused(server):
    key = new_key()
    data = ("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
    resp = request(server.ws_port, data)
    assert resp.status is not None and 400 <= resp.status < 500, resp


def test_missing_connection_upgrade_refused(server):
    key = new_key()
    data = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
    resp = request(server.ws_port, data)
    assert resp.status is not None and 400 <= resp.status < 500, resp


def test_plain_get_on_ws_port_refused(server):
    resp = request(server.ws_port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp.status is not None and 400 <= resp.status < 500, resp


def test_garbage_request_refused(server):
    with RawConn(server.ws_port) as c:
        c.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100 + b"\r\n\r\n")
        try:
            resp = c.read_http_response(timeout=5)
            assert resp.status is not None and 400 <= resp.status < 500, resp
        except Exception as e:           # closing without an answer is fine too
            from wsraw import Closed
            assert isinstance(e, Closed), e
        closed, _ = c.wait_closed(5)
        assert closed, "connection left open after a garbage request"


def test_headers_too_large(server):
    """~200 KB of headers: the server answers 4xx and closes, without
    waiting for the end of the headers."""
    with RawConn(server.ws_port) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        import select
        answered = False
        for i in range(2000):
            r, _, _ = select.select([c.sock], [], [], 0)
            if r:
                answered = True
                break
            line = b"X-Filler-%d: %s\r\n" % (i, b"a" * 100)
            if c.send_best_effort(line) < len(line):
                answered = True
                break
        assert answered, "server read 200 KB of headers without answering"
        resp = c.read_http_response(timeout=5)
        assert resp.status in (400, 413, 431), resp
        closed, _ = c.wait_closed(5)
        assert closed, "connection left open after oversized headers"


def test_single_huge_header_line(server):
    with RawConn(server.ws_port) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = c.send_best_effort(b"b" * 300000)
        resp = c.read_http_response(timeout=5)
        assert resp.status in (400, 413, 431), (resp, sent)
        closed, _ = c.wait_closed(5)
        assert closed


def test_stalled_half_request_closed(make_server):
    srv = make_server("--handshake-timeout", "1")
    with RawConn(srv.ws_port, timeout=8) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        t0 = time.monotonic()
        closed, _ = c.wait_closed(6)
        elapsed = time.monotonic() - t0
        assert closed, "half request still open after 6s with --handshake-timeout 1"
        assert 0.7 <= elapsed <= 4.0, "closed after %.2fs, expected ~1s" % elapsed


def test_trickling_request_closed(make_server):
    """Slowloris: a byte every 0.3 s does not extend the handshake timeout."""
    srv = make_server("--handshake-timeout", "1")
    with RawConn(srv.ws_port, timeout=8) as c:
        t0 = time.monotonic()
        closed = False
        for ch in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
            try:
                c.send_raw(bytes([ch]))
            except OSError:
                closed = True
                break
            closed, _ = c.wait_closed(0.3)
            if closed:
                break
        elapsed = time.monotonic() - t0
        assert closed, "trickling request still open after %.1fs" % elapsed
        assert elapsed <= 4.0, "closed after %.2fs, expected ~1s" % elapsed


def test_silent_connection_closed(make_server):
    """A TCP connection that never sends a byte is closed too."""
    srv = make_server("--handshake-timeout", "1")
    with RawConn(srv.ws_port, timeout=8) as c:
        t0 = time.monotonic()
        closed, _ = c.wait_closed(6)
        elapsed = time.monotonic() - t0
        assert closed, "silent connection still open after 6s"
        assert 0.7 <= elapsed <= 4.0, "closed after %.2fs, expected ~1s" % elapsed


def test_handshake_timeout_not_applied_after_upgrade(make_server):
    srv = make_server("--handshake-timeout", "1")
    ws = RawWS(srv.ws_port)
    try:
        time.sleep(2.0)
        uid, _ = ws.login("still-here")
        assert uid
    finally:
        ws.close()


def test_subprotocol_not_invented(server):
    """A client offering a subprotocol gets none back, or one it offered."""
    key = new_key()
    resp = upgrade(server.ws_port, key=key, extra=["Sec-WebSocket-Protocol: chat, superchat"])
    assert resp.status == 101, resp
    proto = resp.header("Sec-WebSocket-Protocol")
    assert proto in (None, "chat", "superchat"), resp


def test_unknown_extension_declined(server):
    key = new_key()
    resp = upgrade(server.ws_port, key=key, extra=["Sec-WebSocket-Extensions: x-made-up; foo=1"])
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Extensions") is None, resp


def test_origin_allow_list(make_server):
    srv = make_server("--origin", "http://good.example", "--origin", "http://127.0.0.1:55151")
    for origin in ("http://good.example", "http://127.0.0.1:55151"):
        key = new_key()
        check_101(upgrade(srv.ws_port, key=key, origin=origin), key)
    for origin in ("http://evil.example", "http://good.example.evil.example", "null"):
        resp = upgrade(srv.ws_port, origin=origin)
        assert resp.status == 403, (origin, resp)


def test_any_origin_by_default(server):
    for origin in ("http://127.0.0.1:55151", "https://somewhere.example", "null"):
        key = new_key()
        check_101(upgrade(server.ws_port, key=key, origin=origin), key)
