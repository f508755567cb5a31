"""What holds against clients that do not play along: output capped after
the write (not before it), one HTTP answer at a time, writes that make no
progress, pings that are not activity, ping floods, messages that never
end, and the budget for unfinished messages."""

import socket
import time

from helpers import rss_kib, sanitized
from wsraw import OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, RawConn, RawWS, encode_frame


def read_all_answers(conn, count, timeout=10.0):
    return [conn.read_http_response(timeout=timeout) for _ in range(count)]


def test_pipelined_requests_answered_in_order(server):
    """Pipelining still works: each request gets its answer, in order."""
    with RawConn(server.http_port) as c:
        reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p
                        for p in (b"/healthz", b"/nope", b"/", b"/healthz"))
        c.send_raw(reqs)
        answers = read_all_answers(c, 4)
    assert [a.status for a in answers] == [200, 404, 200, 200]
    assert answers[0].body == b"ok\n" and answers[3].body == b"ok\n"
    assert b"<html" in answers[2].body.lower()


def test_pipelined_get_flood_from_a_non_reader_is_bounded(server):
    """8 MB of pipelined `GET /` from a client that never reads: the server
    stops reading it (one answer at a time) instead of queueing copies."""
    before = rss_kib(server.proc.pid)
    c = RawConn(server.http_port, rcvbuf=4096)
    try:
        req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        batch = req * 2048
        c.sock.settimeout(0.5)
        sent = 0
        t0 = time.monotonic()
        while sent < 8 << 20 and time.monotonic() - t0 < 10:
            try:
                c.sock.sendall(batch)
                sent += len(batch)
            except socket.timeout:
                break               # the server stopped reading us: what we want
            except OSError:
                break
        time.sleep(0.5)
        grown = rss_kib(server.proc.pid) - before
        print("sent %d KB of requests; server RSS grew %d KB" % (sent >> 10, grown))
        if not sanitized():
            assert grown < 20 * 1024, "server RSS grew %d KB for a pipelined flood" % grown
        # others are served meanwhile
        with RawConn(server.http_port) as other:
            other.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert other.read_http_response(timeout=5).status == 200
    finally:
        c.close()


def test_static_page_served_whole_many_times(server):
    """The page's bytes come straight from the binary: many answers on one
    connection, each complete and identical."""
    with RawConn(server.http_port) as c:
        bodies = set()
        for _ in range(20):
            c.send_raw(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_http_response(timeout=5)
            assert r.status == 200
            assert int(r.header("Content-Length")) == len(r.body)
            bodies.add(r.body)
        assert len(bodies) == 1


def fill_room(speaker, n, size=3000):
    payload = encode_frame(OP_TEXT, ('{"type":"say","content":"%s"}' % ("x" * size)).encode())
    speaker.send_raw(payload * n)


def test_write_timeout_closes_a_stuck_reader(make_server):
    """A client whose socket no longer takes anything is dropped after
    --write-timeout, even while it keeps sending pongs of its own."""
    srv = make_server("--write-timeout", "1", "--outbound-cap", "100000000",
                      "--rate", "100000", "--burst", "100000")
    speaker = RawWS(srv.ws_port)
    stuck = RawWS(srv.ws_port, rcvbuf=4096)
    try:
        speaker.login("speaker")
        stuck_uid, _ = stuck.login("stuck")
        # the speaker sees the stuck one's login
        m = speaker.recv_json()
        assert m["type"] == "login" and m["uid"] == stuck_uid
        t0 = time.monotonic()
        logout = None
        while logout is None and time.monotonic() - t0 < 15:
            fill_room(speaker, 200)
            try:
                stuck.send_raw(encode_frame(0xA, b""))      # a pong: activity
            except OSError:
                pass
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    m = speaker.recv_json(timeout=max(0.01, end - time.monotonic()))
                except TimeoutError:
                    break
                if m["type"] == "logout" and m["uid"] == stuck_uid:
                    logout = time.monotonic() - t0
                    break
        assert logout is not None, "stuck reader never dropped"
        print("stuck reader dropped after %.1fs" % logout)
    finally:
        speaker.close()
        stuck.close()


def test_pings_do_not_keep_a_client_alive(make_server):
    """A client that only pings (never a message or a pong) is idle."""
    srv = make_server("--ping-interval", "1", "--idle-timeout", "2")
    c = RawWS(srv.ws_port)
    try:
        c.login("pinger")
        t0 = time.monotonic()
        code = None
        while time.monotonic() - t0 < 8:
            try:
                c.send_frame(OP_PING, b"hi")
            except OSError:
                break
            try:
                f = c.recv_frame(timeout=0.5)
            except Exception:
                break
            if f.opcode == OP_CLOSE:
                code = f.close_code
                break
        elapsed = time.monotonic() - t0
        assert code == 1008, "close code %r after %.1fs" % (code, elapsed)
        assert elapsed < 5, "closed only after %.1fs (idle timeout 2)" % elapsed
    finally:
        c.close()


def test_ping_flood_is_closed(server):
    """Hundreds of pings at once: closed with 1008, others unaffected."""
    other = RawWS(server.ws_port)
    c = RawWS(server.ws_port)
    try:
        other.login("other")
        c.login("flood")
        try:
            c.send_raw(encode_frame(OP_PING, b"p") * 1000)
        except OSError:
            pass
        code, _ = c.expect_close(timeout=5)
        assert code == 1008
        other.send_json({"type": "say", "content": "still here"})
        while True:
            m = other.recv_json()
            if m["type"] == "say":
                assert m["content"] == "still here"
                break
    finally:
        c.close()
        other.close()


def test_a_few_pings_are_answered_each(server):
    c = RawWS(server.ws_port)
    try:
        c.login("polite")
        for i in range(5):
            c.send_frame(OP_PING, b"n%d" % i)
            while True:
                f = c.recv_frame(timeout=5)
                if f.opcode == 0xA:
                    assert f.payload == b"n%d" % i
                    break
    finally:
        c.close()


def test_unfinished_message_has_a_deadline(make_server):
    srv = make_server("--message-timeout", "1", "--idle-timeout", "30")
    c = RawWS(srv.ws_port)
    try:
        c.login("slow")
        c.send_frame(OP_TEXT, b'{"type":"say","content":"', fin=False)
        t0 = time.monotonic()
        # fragments that keep it busy but never finish
        code = None
        while time.monotonic() - t0 < 6:
            try:
                c.send_frame(OP_CONT, b"a", fin=False)
            except OSError:
                break
            try:
                f = c.recv_frame(timeout=0.3)
            except Exception:
                continue
            if f.opcode == OP_CLOSE:
                code = f.close_code
                break
        elapsed = time.monotonic() - t0
        assert code == 1008, "close %r after %.1fs" % (code, elapsed)
        assert elapsed < 4
    finally:
        c.close()


def test_finished_fragmented_message_is_fine(make_server):
    srv = make_server("--message-timeout", "1")
    c = RawWS(srv.ws_port)
    try:
        c.login("frag")
        c.send_frame(OP_TEXT, b'{"type":"say",', fin=False)
        time.sleep(0.3)
        c.send_frame(OP_CONT, b'"content":"whole"}', fin=True)
        while True:
            m = c.recv_json()
            if m["type"] == "say":
                assert m["content"] == "whole"
                break
    finally:
        c.close()


def test_partial_message_budget(make_server):
    """Unfinished messages from many clients share one budget: the client
    that would pass it is closed, the others keep theirs."""
    srv = make_server("--partial-budget", "200000", "--message-timeout", "30")
    clients = [RawWS(srv.ws_port) for _ in range(6)]
    try:
        for i, c in enumerate(clients):
            c.login("p%d" % i)
        part = b'{"type":"say","content":"ok"' + b" " * 40000
        closed = []
        for i, c in enumerate(clients):
            c.send_frame(OP_TEXT, part, fin=False)
            time.sleep(0.1)
        for i, c in enumerate(clients):
            try:
                f = c.recv_frame(timeout=0.5)
                while f.opcode != OP_CLOSE:
                    f = c.recv_frame(timeout=0.5)
                closed.append((i, f.close_code))
            except Exception:
                pass
        assert closed, "no client closed past a 200000-byte budget"
        assert all(code == 1008 for _, code in closed), closed
        assert len(closed) < len(clients), "everyone closed: %r" % closed
        # one that was kept finishes its message
        kept = [i for i in range(len(clients)) if i not in dict(closed)][0]
        clients[kept].send_frame(OP_CONT, b'}', fin=True)
        while True:
            m = clients[kept].recv_json(timeout=5)
            if m["type"] == "say":
                assert m["content"] == "ok"
                break
    finally:
        for c in clients:
            c.close()


def test_message_flood_costs_no_memory(server):
    """20 MB of large messages far beyond the rate limit, from a client that
    never reads: refused before any copy (with threads, before crossing to
    the hub), so the server's memory stays flat and others chat on."""
    other = RawWS(server.ws_port)
    flood = RawWS(server.ws_port, rcvbuf=4096)
    try:
        other.login("other")
        flood.login("flood")
        before = rss_kib(server.proc.pid)
        msg = encode_frame(OP_TEXT, b'{"type":"say","content":"x","pad":"' + b"p" * 60000 + b'"}')
        flood.sock.settimeout(0.5)
        sent = 0
        t0 = time.monotonic()
        while sent < 20 << 20 and time.monotonic() - t0 < 15:
            try:
                flood.sock.sendall(msg * 8)
                sent += 8 * len(msg)
            except (socket.timeout, OSError):
                break
        grown = rss_kib(server.proc.pid) - before
        print("flooded %d MB in %.1fs; RSS grew %d KB" % (sent >> 20, time.monotonic() - t0, grown))
        if not sanitized():
            assert grown < 30 * 1024, "RSS grew %d KB" % grown
        other.send_json({"type": "say", "content": "fine"})
        deadline = time.monotonic() + 10
        while True:
            m = other.recv_json(timeout=max(0.1, deadline - time.monotonic()))
            if m["type"] == "say" and m["content"] == "fine":
                break
    finally:
        flood.close()
        other.close()


def test_closed_connections_free_their_address(make_server):
    """With --max-conns-per-ip 1, 50 clients one after the other, each
    closing before the next: every one is let in (no count is left behind
    by a connection the chat's thread still held, nor by a room that came
    back)."""
    srv = make_server("--max-conns-per-ip", "1")
    for i in range(50):
        c = connect_when_free(srv.ws_port)
        c.login("again%d" % i)
        if i == 0:
            # a room with a history: coming back to it creates no room
            c.send_json({"type": "say", "content": "here"})
            while c.recv_json()["type"] != "say":
                pass
        c.send_close(1000)
        c.expect_close(reply=False)
        c.close()


def connect_when_free(port, within=2.0):
    """A WebSocket once the server has seen the last one's end (its EOF may
    still be on the way when we connect again)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return RawWS(port)
        except AssertionError as e:
            if "503" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
