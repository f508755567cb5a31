"""Load, back-pressure and rate limits."""

import asyncio
import json
import socket
import time

import pytest

from helpers import (Client, async_test, check_error, check_logout,
                     check_say, close_all)
from wsraw import OP_PING, OP_TEXT, Closed, RawConn, RawWS, encode_frame, handshake_request


# -- many clients --------------------------------------------------------------------

@async_test(timeout=60)
async def test_200_concurrent_logins(server):
    n = 200
    clients = list(await asyncio.gather(*[Client.connect(server.ws_port) for _ in range(n)]))
    try:
        async def login(i, c):
            await c.send({"type": "login", "name": "user%03d" % i})
            ul = await c.recv(timeout=20)
            assert ul["type"] == "user_list", ul
            return ul["user_list"]

        lists = await asyncio.gather(*[login(i, c) for i, c in enumerate(clients)])
        # each one's own entry is last; uids are unique
        mine = [ul[-1] for ul in lists]
        for i, (u, ul) in enumerate(zip(mine, lists)):
            assert u["name"] == "user%03d" % i, (i, u)
            clients[i].uid = u["uid"]
        uids = [u["uid"] for u in mine]
        assert len(set(uids)) == n, "duplicate uids among 200 clients"
        # logins are atomic: the lists have sizes 1..200, each one a prefix
        # of the join order
        sizes = sorted(len(ul) for ul in lists)
        assert sizes == list(range(1, n + 1)), sizes[:10]
        order = max(lists, key=len)
        order_uids = [u["uid"] for u in order]
        assert sorted(order_uids) == sorted(uids)
        for ul in lists:
            assert [u["uid"] for u in ul] == order_uids[:len(ul)], "inconsistent user_list"

        # every client then sees its own login and the logins of all later
        # joiners: together with its user_list, the whole room
        async def drain(i, c, ul):
            expected = n - len(ul) + 1
            seen = []
            for k in range(expected):
                m = await c.recv(timeout=20)
                assert m["type"] == "login", (i, m)
                seen.append(m["uid"])
                if k == 0:      # its own login: its session follows
                    assert (await c.recv(timeout=20))["type"] == "session", i
            assert seen == order_uids[len(ul) - 1:], (i, "login broadcasts out of order")
            return set(u["uid"] for u in ul) | set(seen)

        views = await asyncio.gather(*[drain(i, c, ul) for i, (c, ul) in enumerate(zip(clients, lists))])
        for v in views:
            assert v == set(uids)

        # one say reaches all 200
        await clients[17].say("to everyone")
        msgs = await asyncio.gather(*[c.recv(timeout=20) for c in clients])
        for m in msgs:
            check_say(m, from_uid=clients[17].uid, to_uid="all", content="to everyone")
    finally:
        await close_all(clients)


def test_260_connections_from_one_address(server):
    """Default limits let at least 256 connections come from one address."""
    conns = []
    try:
        for i in range(260):
            conns.append(RawWS(server.ws_port))
        # all of them are usable
        for i in (0, 128, 259):
            uid, _ = conns[i].login("c%d" % i)
            assert uid
    finally:
        for c in conns:
            c.close()


def test_max_conns_per_ip(make_server):
    srv = make_server("--max-conns-per-ip", "3")
    conns = [RawWS(srv.ws_port) for _ in range(3)]
    try:
        extra = RawConn(srv.ws_port)
        req, _ = handshake_request()
        try:
            extra.send_raw(req)
            resp = extra.read_http_response(timeout=3)
            assert resp.status != 101, "4th connection accepted with --max-conns-per-ip 3"
            assert 400 <= resp.status < 600, resp
        except (Closed, ConnectionResetError, BrokenPipeError):
            pass                                    # refused by closing: fine
        finally:
            extra.close()
        # the 3 are fine
        uid, _ = conns[0].login("first")
        # when one leaves, a new one may come in
        conns.pop().close()
        deadline = time.monotonic() + 3
        while True:
            try:
                conns.append(RawWS(srv.ws_port))
                break
            except (AssertionError, Closed, OSError):
                assert time.monotonic() < deadline, "slot not freed after a close"
                time.sleep(0.1)
    finally:
        for c in conns:
            c.close()


# -- a client that does not read --------------------------------------------------------

@async_test(timeout=90)
async def test_slow_reader_is_dropped_fast_clients_unaffected(make_server):
    srv = make_server("--outbound-cap", "65536", "--rate", "100000", "--burst", "100000")
    a = await Client.connect(srv.ws_port)
    b = await Client.connect(srv.ws_port)
    slow = RawWS(srv.ws_port, rcvbuf=4096)
    try:
        await a.login("fast-a")
        slow_uid, _ = slow.login("slow")          # then it never reads again
        await b.login("fast-b")
        await a.expect("login")                   # slow
        await a.expect("login")                   # b

        content = "m" * 2000
        sent = 0
        got = {"a": 0, "b": 0}
        slow_gone = {"a": False, "b": False}
        window = 20

        async def reader(name, c):
            while True:
                m = await c.recv(timeout=5)     # no stalls: every message within 5s
                if m["type"] == "logout":
                    check_logout(m, uid=slow_uid)
                    slow_gone[name] = True
                    continue
                assert m["type"] == "say", m
                seq = int(m["content"].split(":", 1)[0])
                assert seq == got[name], "%s: message %d arrived, expected %d" % (name, seq, got[name])
                got[name] += 1

        def check_readers():
            for r in readers:
                if r.done():
                    r.result()          # re-raises the reader's failure
                    raise AssertionError("reader stopped")

        t0 = time.monotonic()
        # keep talking until both fast clients saw the slow one's logout,
        # then 100 more; at most 8000 messages (16 MB)
        stop_at = None
        max_msgs = 8000
        readers = [asyncio.ensure_future(reader("a", a)), asyncio.ensure_future(reader("b", b))]
        try:
            while True:
                if stop_at is None and slow_gone["a"] and slow_gone["b"]:
                    stop_at = sent + 100
                if sent == (stop_at if stop_at is not None else max_msgs):
                    break
                # flow control like a well-behaved fast client: small window
                while sent - min(got.values()) >= window:
                    await asyncio.sleep(0.001)
                    check_readers()
                await a.say("%d:%s" % (sent, content))
                sent += 1
            deadline = time.monotonic() + 20
            while min(got.values()) < sent:
                assert time.monotonic() < deadline, "fast clients stalled: %r of %d" % (got, sent)
                await asyncio.sleep(0.01)
                check_readers()
        finally:
            for r in readers:
                if not r.done():
                    r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        elapsed = time.monotonic() - t0
        print("slow reader: %d messages sent, logout after; %.2fs" % (sent, elapsed))
        assert slow_gone["a"] and slow_gone["b"], \
            "slow reader not dropped after %d messages of 2 KB (%.1fs)" % (sent, elapsed)
        assert got == {"a": sent, "b": sent}
        # the slow socket ends (EOF/RST) once drained
        slow.sock.setblocking(True)
        closed, drained = slow.wait_closed(15)
        assert closed, "slow reader's socket still open after its logout (drained %d bytes)" % drained
        # the server still serves everyone else
        await b.say("after")
        check_say(await a.recv(), from_uid=b.uid, content="after")
    finally:
        slow.close()
        await close_all([a, b])


# -- rate limiting ---------------------------------------------------------------------

async def burst(c, n, prefix="b"):
    for i in range(n):
        await c.say("%s%d" % (prefix, i))
    replies = [await c.recv(timeout=5) for _ in range(n)]
    return replies


@async_test(timeout=30)
async def test_burst_150_default(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("burster")
        await asyncio.sleep(0.2)                 # the login's token comes back
        replies = await burst(c, 150)
        kinds = [m["type"] for m in replies]
        assert set(kinds) <= {"say", "error"}, kinds
        for m in replies[:20]:
            assert m["type"] == "say", "first 20 messages must pass: %r" % m
        says = [m for m in replies if m["type"] == "say"]
        errors = [m for m in replies if m["type"] == "error"]
        for m in errors:
            check_error(m, "rate_limited")
        assert errors, "150 messages at once: no rate_limited error (default burst is 100)"
        assert len(says) >= 100, "only %d of 150 passed; the default burst is 100" % len(says)
        # what passed passed in order
        nums = [int(m["content"][1:]) for m in says]
        assert nums == sorted(nums)
        # the connection stays open and recovers
        await asyncio.sleep(1.0)
        await c.say("recovered")
        check_say(await c.recv(), content="recovered")
    finally:
        await c.close()


@async_test(timeout=30)
async def test_rate_and_burst_options(make_server):
    srv = make_server("--rate", "5", "--burst", "5")
    c = await Client.connect(srv.ws_port)
    try:
        await c.login("limited")
        await asyncio.sleep(1.1)                 # the login's token comes back
        replies = await burst(c, 10)
        ok = [m for m in replies if m["type"] == "say"]
        bad = [m for m in replies if m["type"] == "error"]
        for m in bad:
            check_error(m, "rate_limited")
        assert 5 <= len(ok) <= 6, "with --burst 5, %d of 10 passed" % len(ok)
        assert all(m["type"] == "say" for m in replies[:5])
        await asyncio.sleep(1.3)                 # refills to the burst of 5
        replies = await burst(c, 5, "r")
        assert all(m["type"] == "say" for m in replies), replies
    finally:
        await c.close()


async def sustained(c, rate, seconds):
    n = int(rate * seconds)
    t0 = time.monotonic()
    replies = []

    async def read():
        for _ in range(n):
            replies.append(await c.recv(timeout=5))

    reader = asyncio.ensure_future(read())
    for i in range(n):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await c.say("s%d" % i)
    await asyncio.wait_for(reader, 10)
    return replies


@async_test(timeout=30)
async def test_sustained_20_per_second_default(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("steady")
        replies = await sustained(c, 20, 3)
        errors = [m for m in replies if m["type"] != "say"]
        assert not errors, errors[:3]
    finally:
        await c.close()


@async_test(timeout=30)
async def test_sustained_below_rate_small_burst(make_server):
    """20 msgs/s against --rate 25 --burst 5: the bucket refills steadily."""
    srv = make_server("--rate", "25", "--burst", "5")
    c = await Client.connect(srv.ws_port)
    try:
        await c.login("steady")
        replies = await sustained(c, 20, 3)
        errors = [m for m in replies if m["type"] != "say"]
        assert not errors, errors[:3]
    finally:
        await c.close()


@async_test(timeout=30)
async def test_rate_limit_is_per_connection(make_server):
    srv = make_server("--rate", "5", "--burst", "5")
    a = await Client.connect(srv.ws_port)
    b = await Client.connect(srv.ws_port)
    try:
        await a.login("a")
        await b.login("b")
        await a.recv()
        for i in range(8):
            await a.say("a%d" % i)
        # a is limited; b is not affected
        await b.say("b-ok")
        seen_b = False
        for _ in range(20):
            m = await b.recv(timeout=3)
            if m["type"] == "say" and m["content"] == "b-ok":
                seen_b = True
                break
        assert seen_b
    finally:
        await close_all([a, b])


def test_churn_leaves_no_ghosts(server):
    """300 clients log in and leave (close frame, FIN, RST) in quick
    succession; afterwards the room holds only the live clients."""
    keeper = RawWS(server.ws_port)
    try:
        keeper_uid, _ = keeper.login("keeper")
        for i in range(300):
            c = RawWS(server.ws_port)
            c.send_json({"type": "login", "name": "churn%d" % i})
            if i % 3 == 0:
                c.reset()
            elif i % 3 == 1:
                c.close()
            else:
                c.send_close(1000)
                c.close()
        time.sleep(0.5)
        last = RawWS(server.ws_port)
        try:
            uid, users = last.login("last")
            assert [u["uid"] for u in users] == [keeper_uid, uid], \
                "ghost users left: %r" % users[:5]
        finally:
            last.close()
        # the keeper saw each login it was told about matched by a logout
        logins, logouts = set(), set()
        deadline = time.monotonic() + 10
        while True:
            try:
                m = keeper.recv_json(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if m["type"] == "login":
                logins.add(m["uid"])
            elif m["type"] == "logout":
                logouts.add(m["uid"])
            if m["type"] == "login" and m["uid"] == uid:
                break
        assert logins - {uid} == logouts, "logins without logout: %r" % (logins - {uid} - logouts)
    finally:
        keeper.close()


@pytest.mark.parametrize("what", ["pings", "says"])
def test_flooder_that_never_reads_is_closed(make_server, what):
    """A client that sends a lot and never reads what it causes (pongs or
    its own echoes) hits the outbound cap and is closed; others are fine."""
    srv = make_server("--outbound-cap", "65536", "--rate", "1000000", "--burst", "1000000")
    other = RawWS(srv.ws_port)
    flood = RawWS(srv.ws_port, rcvbuf=4096)
    try:
        other_uid, _ = other.login("other")
        flood_uid, _ = flood.login("flood")
        m = other.recv_json()
        assert m["type"] == "login" and m["uid"] == flood_uid
        if what == "pings":
            frame = encode_frame(OP_PING, b"p" * 125)
        else:
            frame = encode_frame(OP_TEXT, json.dumps(
                {"type": "say", "to_uid": flood_uid, "content": "f" * 4000}).encode())
        batch = frame * 50
        flood.sock.settimeout(0.5)
        sent, blocked_since, outcome = 0, None, None
        t0 = time.monotonic()
        while outcome is None:
            try:
                flood.sock.sendall(batch)
                sent += len(batch)
                blocked_since = None
            except socket.timeout:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 3:
                    outcome = "server stopped reading"
            except OSError:
                outcome = "closed"
            if sent > 300 * 1024 * 1024 or time.monotonic() - t0 > 20:
                outcome = "kept reading"
        print("flood of %s: %s after %d MB, %.1fs" % (what, outcome, sent >> 20, time.monotonic() - t0))
        assert outcome != "kept reading", \
            "server accepted %d MB from a client that reads nothing" % (sent >> 20)
        if outcome == "closed":
            deadline = time.monotonic() + 10
            while True:
                m = other.recv_json(timeout=max(0.01, deadline - time.monotonic()))
                if m["type"] == "logout":
                    assert m["uid"] == flood_uid, m
                    break
        other.send_json({"type": "say", "content": "calm again"})
        m = other.recv_json()
        assert m["type"] == "say" and m["content"] == "calm again", m
    finally:
        flood.close()
        other.close()


def test_rst_during_broadcast(server):
    """Clients vanishing with RST while the server broadcasts to them: no
    crash (SIGPIPE, use after free), the rest carry on."""
    speaker = RawWS(server.ws_port)
    try:
        speaker.login("speaker")
        victims = []
        for i in range(30):
            v = RawWS(server.ws_port)
            v.send_json({"type": "login", "name": "v%d" % i})
            victims.append(v)
        payload = encode_frame(OP_TEXT, json.dumps({"type": "say", "content": "x" * 3000}).encode())
        for i, v in enumerate(victims):
            speaker.send_raw(payload)
            v.reset()
        time.sleep(0.3)
        speaker.send_json({"type": "say", "content": "done"})
        deadline = time.monotonic() + 10
        while True:
            m = speaker.recv_json(timeout=max(0.01, deadline - time.monotonic()))
            if m["type"] == "say" and m["content"] == "done":
                break
        last = RawWS(server.ws_port)
        try:
            _, users = last.login("last")
            assert [u["name"] for u in users] == ["speaker", "last"], users
        finally:
            last.close()
    finally:
        speaker.close()
