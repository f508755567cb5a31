"""The server on several event loops (--threads): connections spread over
the loops, one order of messages for everyone whatever loop they are on,
private messages and logouts across loops, a clean shutdown of every loop,
and bad values refused."""

import asyncio
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from helpers import Client, async_test, close_all
from server_proc import BIN
from wsraw import OP_TEXT, RawConn, RawWS, encode_frame, handshake_request


def stats(srv):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % srv.http_port, timeout=5) as r:
        return json.loads(r.read())


async def logged_in(port, n, prefix):
    clients = [await Client.connect(port) for _ in range(n)]
    for i, c in enumerate(clients):
        await c.login("%s%d" % (prefix, i))
    return clients


async def drain_until(c, pred, timeout=10.0):
    """Receives until pred(msg) is true; returns everything received."""
    got = []
    while True:
        m = await c.recv(timeout)
        got.append(m)
        if pred(m):
            return got


@async_test(timeout=90)
async def test_connections_spread_over_the_loops(make_server):
    srv = make_server("--threads", "2")
    clients = await logged_in(srv.ws_port, 20, "p")
    try:
        st = stats(srv)
        assert st["threads"] == 2, st
        assert st["users"] == 20, st
        per = st["connections_per_thread"]
        assert len(per) == 2 and sum(per) == st["connections"], st
        # The page's own /stats request is a connection too: 21 in all.
        assert min(per) >= 8, "connections not balanced: %r" % per
    finally:
        await close_all(clients)


@async_test(timeout=120)
async def test_everyone_sees_one_order_across_loops(make_server):
    """Three senders on different loops, interleaved: every client gets all
    messages, in one same order, with ids increasing by one."""
    srv = make_server("--threads", "2", "--rate", "100000", "--burst", "100000")
    clients = await logged_in(srv.ws_port, 12, "o")
    try:
        # Let every login broadcast arrive first.
        last = clients[-1].uid
        for c in clients[:-1]:
            await drain_until(c, lambda m: m["type"] == "login" and m["uid"] == last)
        senders = clients[:3]
        per_sender = 40

        async def send_all(c, k):
            for i in range(per_sender):
                await c.say("s%d-%d" % (k, i))

        await asyncio.gather(*[send_all(c, k) for k, c in enumerate(senders)])
        total = per_sender * len(senders)
        orders = []
        for c in clients:
            says = []
            while len(says) < total:
                m = await c.recv(10)
                if m["type"] == "say":
                    says.append(m)
            orders.append([(m["id"], m["content"]) for m in says])
        first = orders[0]
        ids = [i for i, _ in first]
        assert ids == list(range(ids[0], ids[0] + total)), ids
        for k in range(len(senders)):
            mine = [t for _, t in first if t.startswith("s%d-" % k)]
            assert mine == ["s%d-%d" % (k, i) for i in range(per_sender)], mine
        for o in orders[1:]:
            assert o == first
    finally:
        await close_all(clients)


@async_test(timeout=60)
async def test_private_messages_and_logout_cross_loops(make_server):
    srv = make_server("--threads", "2")
    clients = await logged_in(srv.ws_port, 6, "x")
    try:
        last = clients[-1].uid
        for c in clients[:-1]:
            await drain_until(c, lambda m: m["type"] == "login" and m["uid"] == last)
        # Every pair, so some pairs are surely on different loops.
        for a in clients:
            for b in clients:
                if a is b:
                    continue
                await a.say("to %s" % b.name, to_uid=b.uid)
                echo = await a.expect("say")
                got = await b.expect("say")
                assert echo["to_uid"] == got["to_uid"] == b.uid
                assert got["content"] == "to %s" % b.name
        for c in clients:
            await c.silent(0.2)
        gone = clients.pop()
        await gone.close()
        for c in clients:
            m = await c.expect("logout")
            assert m["uid"] == gone.uid
    finally:
        await close_all(clients)


@async_test(timeout=60)
async def test_sigterm_closes_every_loop_with_1001(make_server):
    srv = make_server("--threads", "3")
    clients = await logged_in(srv.ws_port, 9, "t")
    per = stats(srv)["connections_per_thread"]
    assert all(n >= 2 for n in per), per
    srv.proc.send_signal(15)
    codes = []
    for c in clients:
        try:
            while True:
                await c.recv_raw(5)
        except Exception:
            pass
        codes.append(c.close_code)
    assert codes == [1001] * len(clients), codes
    assert srv.proc.wait(10) == 0
    srv.stopped = True


@pytest.mark.parametrize("value", ["1.5", "-1", "x", "257"])
def test_bad_thread_counts_are_refused(tmp_path, value):
    p = subprocess.run([BIN, "serve", "--threads", value, "--ws", "127.0.0.1:0",
                        "--http", "127.0.0.1:0", "--data", str(tmp_path)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert "--threads" in p.stderr, p.stderr


def test_a_client_gone_before_its_login_reaches_the_chat(make_server):
    """Handshake, login and the end of the stream in one burst, many times
    over from several threads: the loop sees the end (and frees the
    address's count) while the chat's thread has not yet taken the new
    connection. The chat must not read what the loop freed (ASan catches it
    in make check-asan), and the server carries on."""
    srv = make_server("--threads", "2")
    login = encode_frame(OP_TEXT, json.dumps({"type": "login", "name": "gone"}).encode())

    def burst(n):
        for _ in range(n):
            req, _key = handshake_request()
            c = RawConn(srv.ws_port)
            c.send_raw(req + login)
            c.sock.shutdown(socket.SHUT_WR)
            c.close()

    threads = [threading.Thread(target=burst, args=(250,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The burst's ends may still be on their way (each counts against
    # --max-conns-per-ip until read): wait for the count to come down.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if stats(srv)["connections"] <= 1:
                break
        except urllib.error.HTTPError as e:     # 503: the address is over its count
            assert e.code == 503, e
        time.sleep(0.05)
    with RawWS(srv.ws_port) as ws:
        ws.send_json({"type": "login", "name": "still"})
        assert json.loads(ws.recv_frame().payload)["type"] == "user_list"
