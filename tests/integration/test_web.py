"""The web port: the page, static-file safety and the /ws upgrade."""

import re

import pytest

from helpers import Client, async_test, check_login, check_say, close_all
from wsraw import RawConn, RawWS, accept_for, handshake_request, new_key


def get(port, path, extra=b""):
    with RawConn(port) as c:
        c.send_raw(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra +
                   b"Connection: close\r\n\r\n")
        return c.read_http_response()


def test_index_page(server):
    resp = get(server.http_port, "/")
    assert resp.status == 200, resp
    assert (resp.header("Content-Type") or "").lower().startswith("text/html"), resp
    assert resp.body.strip(), "empty page"
    assert b"<html" in resp.body.lower() or b"<!doctype html" in resp.body.lower(), resp.body[:200]
    cl = resp.header("Content-Length")
    if cl is not None:
        assert int(cl) == len(resp.body)


def test_index_page_http_1_0(server):
    with RawConn(server.http_port) as c:
        c.send_raw(b"GET / HTTP/1.0\r\n\r\n")
        resp = c.read_http_response()
    assert resp.status == 200, resp
    assert resp.body.strip()


def test_not_found(server):
    resp = get(server.http_port, "/nonexistent")
    assert resp.status == 404, resp


@pytest.mark.parametrize("path", [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/../../../../etc/passwd",
    "/....//....//etc/passwd",
    "//etc/passwd",
    "/%00/etc/passwd",
])
def test_path_traversal(server, path):
    resp = get(server.http_port, path)
    assert resp.status is not None and 400 <= resp.status < 500, resp
    assert b"root:" not in resp.body, "passwd content served for %s" % path


def test_no_traversal_to_data_dir(server):
    """Files of --data are not served."""
    (server.datadir / "secret.txt").write_text("top secret")
    for path in ("/secret.txt", "/data/secret.txt", "/../data/secret.txt"):
        resp = get(server.http_port, path)
        assert resp.status != 200 or b"top secret" not in resp.body, path


def test_post_to_page(server):
    with RawConn(server.http_port) as c:
        c.send_raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        resp = c.read_http_response()
    assert resp.status is not None and 400 <= resp.status < 500, resp


def test_upgrade_on_ws_path(server):
    key = new_key()
    data, _ = handshake_request(path="/ws", key=key)
    with RawConn(server.http_port) as c:
        c.send_raw(data)
        resp = c.read_http_response(read_body=False)
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Accept") == accept_for(key), resp


@pytest.mark.parametrize("path", ["/", "/index.html", "/wss", "/ws/x"])
def test_no_upgrade_on_other_paths(server, path):
    data, _ = handshake_request(path=path)
    with RawConn(server.http_port) as c:
        c.send_raw(data)
        resp = c.read_http_response(read_body=False)
    assert resp.status != 101, "web port upgraded on %s" % path


@async_test()
async def test_web_port_client_chats_with_ws_port_client(server):
    a = await Client.connect(server.ws_port)
    b = await Client.connect(server.http_port, path="/ws")
    try:
        await a.login("on-7272")
        users = await b.login("on-55151")
        assert [u["name"] for u in users] == ["on-7272", "on-55151"], users
        check_login(await a.recv(), uid=b.uid, name="on-55151")
        await b.say("oi, pessoal !")
        for c in (b, a):
            check_say(await c.recv(), from_uid=b.uid, to_uid="all", content="oi, pessoal !")
        await a.say("private", to_uid=b.uid)
        for c in (b, a):
            check_say(await c.recv(), from_uid=a.uid, to_uid=b.uid, content="private")
        await b.close()
        m = await a.recv()
        assert m["type"] == "logout" and m["uid"] == b.uid, m
    finally:
        await close_all([a, b])


def test_web_port_framing_rules(server):
    """The /ws endpoint applies the same RFC 6455 rules."""
    ws = RawWS(server.http_port, path="/ws")
    try:
        ws.send_frame(0x1, b'{"type":"login","name":"x"}', mask=False)
        code, _ = ws.expect_close()
        assert code == 1002
    finally:
        ws.close()


def test_page_and_ws_keepalive_sequence(server):
    """Two requests on one keep-alive connection (a browser does this)."""
    with RawConn(server.http_port) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = c.read_http_response()
        assert first.status == 200, first
        if first.header("Content-Length") is None or \
                (first.header("Connection") or "").lower() == "close":
            pytest.skip("server closes after each response")
        c.send_raw(b"GET /nonexistent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        second = c.read_http_response()
        assert second.status == 404, second


def metrics(port):
    """GET /metrics: {sample name with labels: value}, {family: type}."""
    resp = get(port, "/metrics")
    assert resp.status == 200, resp
    assert resp.header("Content-Type").startswith("text/plain; version=0.0.4"), resp
    values, types = {}, {}
    for line in resp.body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            name, v = line.rsplit(" ", 1)
            values[name] = float(v)
    for name in values:
        family = name.split("{")[0]
        # a histogram's samples are its family's _bucket, _sum and _count
        base = re.sub(r"_(bucket|sum|count)$", "", family)
        assert family in types or types.get(base) == "histogram", "no TYPE for %s" % name
    return values, types


@async_test()
async def test_metrics_follow_the_chat(server):
    before, types = metrics(server.http_port)
    assert types["tagarela_messages_in_total"] == "counter" and types["tagarela_users"] == "gauge"
    assert before["tagarela_users"] == 0 and before["tagarela_rooms"] == 0
    threads = int(before["tagarela_threads"])
    assert threads >= 1
    assert sorted(k for k in before if k.startswith("tagarela_thread_connections")) == \
        sorted('tagarela_thread_connections{thread="%d"}' % i for i in range(threads))
    a = await Client.connect(server.ws_port)
    try:
        await a.login("metrics")
        await a.say("counted")
        check_say(await a.recv(), from_uid=a.uid, content="counted")
        after, _ = metrics(server.http_port)
    finally:
        await close_all([a])
    assert after["tagarela_users"] == 1 and after["tagarela_rooms"] == 1
    assert after["tagarela_handshakes_total"] - before["tagarela_handshakes_total"] == 1
    assert after["tagarela_messages_in_total"] - before["tagarela_messages_in_total"] == 2
    # user_list, login, say (and the first /metrics answer): all written by now.
    assert after["tagarela_frames_out_total"] - before["tagarela_frames_out_total"] >= 4
    assert after["tagarela_bytes_out_total"] > before["tagarela_bytes_out_total"]
    assert after["tagarela_accepted_total"] - before["tagarela_accepted_total"] >= 2
    per_thread = sum(v for k, v in after.items() if k.startswith("tagarela_thread_connections"))
    assert per_thread == after["tagarela_connections"] >= 2


def test_healthz(server):
    resp = get(server.http_port, "/healthz")
    assert resp.status == 200 and resp.body == b"ok\n", resp
