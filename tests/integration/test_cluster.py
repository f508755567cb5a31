"""Cluster mode (docs/cluster.md): several `tagarela serve --redis URL` on
one real redis-server are one chat. Presence, order and ids, private says,
identities and history across nodes; a node killed, Redis restarted, a
node started late, two shards, a unix socket, bad URLs."""

import asyncio
import signal
import time
import urllib.error
import urllib.request

import pytest

from helpers import Client, async_test, check_error, check_logout, check_say, close_all
from redis_proc import Redis


@pytest.fixture
def make_redis(tmp_path):
    servers = []

    def make(unix=False):
        r = Redis(tmp_path / ("redis%d" % len(servers)), unix=unix)
        servers.append(r)
        return r.start()

    yield make
    for r in servers:
        r.stop(kill=True)


@pytest.fixture
def redis(make_redis):
    return make_redis()


@pytest.fixture
def make_node(make_server):
    """make_node(redis_or_list, *options): a server in the cluster."""
    def make(redis, *args):
        urls = [r.url for r in (redis if isinstance(redis, list) else [redis])]
        return make_server("--redis", ",".join(urls), *args)
    return make


def healthz(node):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % node.http_port, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def wait_healthz(node, status, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        got = (await asyncio.get_running_loop().run_in_executor(None, healthz, node))[0]
        if got == status:
            return
        assert time.monotonic() < deadline, "healthz stayed %d, want %d" % (got, status)
        await asyncio.sleep(0.1)


async def login(node, name, room=None, extra=None):
    c = await Client.connect(node.ws_port)
    ul = await c.login(name, room, extra)
    return c, ul


async def two_nodes(redis, make_node, room=None):
    """Two nodes (the second with two threads), ana on the first and bia on
    the second in room, ana having seen bia come in."""
    n0, n1 = make_node(redis), make_node(redis, "--threads", "2")
    a, _ = await login(n0, "ana", room)
    b, _ = await login(n1, "bia", room)
    await a.expect("login")
    return n0, n1, a, b


async def recv_until(c, pred, timeout=5.0):
    """Messages until pred(msg) holds; returns them all (the last matched)."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no matching message in %.1fs; got %r" % (timeout, got)
        msg = await c.recv(timeout=left)
        got.append(msg)
        if pred(msg):
            return got


async def says(c, n, timeout=10.0):
    """The next n says (other messages skipped)."""
    out, other = [], []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, "%d of %d says in %.0fs; also got %r" % (len(out), n, timeout, other)
        msg = await c.recv(timeout=left)
        assert msg["type"] != "error", msg
        (out if msg["type"] == "say" else other).append(msg)
    return out


@async_test(timeout=60)
async def test_presence_across_three_nodes(redis, make_node):
    nodes = [make_node(redis), make_node(redis, "--threads", "2"), make_node(redis)]
    a, ul = await login(nodes[0], "ana")
    assert [u["name"] for u in ul] == ["ana"]
    b, ul = await login(nodes[1], "bia")
    assert ul == [{"uid": a.uid, "name": "ana"}, {"uid": b.uid, "name": "bia"}]
    msg = await a.expect("login")
    assert msg["uid"] == b.uid and msg["name"] == "bia"
    c, ul = await login(nodes[2], "caio")
    assert [u["uid"] for u in ul] == [a.uid, b.uid, c.uid], "join order on every node"
    for x in (a, b):
        assert (await x.expect("login"))["uid"] == c.uid
    assert len({a.uid, b.uid, c.uid}) == 3
    # another room stays apart
    d, ul = await login(nodes[1], "davi", "outra")
    assert [u["name"] for u in ul] == ["davi"]
    await b.close()
    for x in (a, c):
        check_logout(await x.recv(), b.uid)
    await d.silent(0.3)
    await close_all([a, c, d])


@async_test(timeout=60)
async def test_one_order_and_gap_free_ids_across_nodes(redis, make_node):
    nodes = [make_node(redis), make_node(redis, "--threads", "2"), make_node(redis)]
    clients = []
    for i, n in enumerate(nodes):
        c, _ = await login(n, "u%d" % i, "ordem")
        clients.append(c)
    for c in clients[:-1]:          # the later logins
        await recv_until(c, lambda m: m["type"] == "login" and m["uid"] == clients[-1].uid)
    per = 40

    async def send_all(c, i):
        for k in range(per):
            await c.say("%d-%d" % (i, k))

    await asyncio.gather(*[send_all(c, i) for i, c in enumerate(clients)])
    seen = [await says(c, per * len(clients)) for c in clients]
    ids = [m["id"] for m in seen[0]]
    assert ids == list(range(1, per * len(clients) + 1)), "gap-free, increasing: %r" % ids
    for s in seen[1:]:
        assert [(m["id"], m["content"]) for m in s] == [(m["id"], m["content"]) for m in seen[0]]
    for i in range(len(clients)):     # each sender's says in its own order
        mine = [m["content"] for m in seen[0] if m["from_uid"] == clients[i].uid]
        assert mine == ["%d-%d" % (i, k) for k in range(per)]
    await close_all(clients)


@async_test(timeout=60)
async def test_private_say_to_another_node(redis, make_node):
    n0, n1 = make_node(redis), make_node(redis)
    a, _ = await login(n0, "ana")
    b, _ = await login(n1, "bia")
    c, _ = await login(n1, "caio")
    await recv_until(a, lambda m: m.get("uid") == c.uid)
    await recv_until(b, lambda m: m.get("uid") == c.uid)
    await a.say("só pra ti", to_uid=b.uid)
    got = await b.recv()
    check_say(got, from_uid=a.uid, to_uid=b.uid, content="só pra ti")
    echo = await a.recv()
    assert echo == got
    await c.silent(0.5)
    await a.say("ninguém", to_uid=12345)
    await a.error("no_such_user")
    await close_all([a, b, c])


@async_test(timeout=60)
async def test_token_and_private_history_on_another_node(redis, make_node):
    n0, n1, a, b = await two_nodes(redis, make_node)
    await a.say("segredo", to_uid=b.uid)
    await a.say("público")
    await says(b, 2)
    token = a.token
    await a.close()
    # a continues its identity on the other node: its private say comes back
    a2, _ = await login(n1, "ana", None, {"token": token, "last_id": 0})
    assert a2.token == token
    hist = await a2.expect("history")
    assert [m["content"] for m in hist["messages"]] == ["segredo", "público"]
    # a stranger on the first node sees the public one only
    x, _ = await login(n0, "ana")
    hist = await x.expect("history")
    assert [m["content"] for m in hist["messages"]] == ["público"]
    await close_all([a2, b, x])


@async_test(timeout=60)
async def test_history_resume_on_another_node(redis, make_node):
    n0, n1 = make_node(redis), make_node(redis, "--threads", "2")
    a, _ = await login(n0, "ana", "h")
    for k in range(10):
        await a.say("m%d" % k)
    got = await says(a, 10)
    assert [m["id"] for m in got] == list(range(1, 11))
    b, _ = await login(n1, "bia", "h", {"last_id": 4})
    hist = await b.expect("history")
    assert [m["id"] for m in hist["messages"]] == list(range(5, 11))
    assert [m["content"] for m in hist["messages"]] == ["m%d" % k for k in range(4, 10)]
    await a.say("ao vivo")
    live = await says(b, 1)
    assert live[0]["id"] == 11
    await close_all([a, b])


@async_test(timeout=90)
async def test_node_killed_mid_traffic(redis, make_node):
    n0, n1, a, b = await two_nodes(redis, make_node, "k")
    for k in range(5):
        await b.say("antes %d" % k)
    got = await says(a, 5)
    last_seen = got[-1]["id"]
    n0.kill()                       # SIGKILL: no goodbye
    n0.stopped = True
    for k in range(5):
        await b.say("depois %d" % k)
    t0 = time.monotonic()
    msgs = await recv_until(b, lambda m: m["type"] == "logout" and m["uid"] == a.uid, timeout=16)
    assert time.monotonic() - t0 < 15, "logout of a dead node's user within 15 s"
    # a reconnects to the other node and loses nothing
    a2, _ = await login(n1, "ana", "k", {"last_id": last_seen, "token": a.token})
    hist = await a2.expect("history")
    assert [m["content"] for m in hist["messages"]] == ["depois %d" % k for k in range(5)]
    assert [m["id"] for m in hist["messages"]] == list(range(last_seen + 1, last_seen + 6))
    await close_all([a2, b])


@async_test(timeout=90)
async def test_redis_restart_mid_traffic(redis, make_node):
    n0, n1, a, b = await two_nodes(redis, make_node, "r")
    e, _ = await login(n1, "eva", "r")        # leaves while Redis is away
    for x in (a, b):
        await recv_until(x, lambda m: m["type"] == "login" and m["uid"] == e.uid)
    for k in range(3):
        await a.say("antes %d" % k)
    assert [m["id"] for m in await says(b, 3)] == [1, 2, 3]
    await says(a, 3)
    redis.stop(kill=True)
    await wait_healthz(n0, 503)
    status, body = healthz(n1)
    assert status == 503 and "Redis" in body
    await a.say("no escuro")
    check_error(await a.recv(), "unavailable")
    await e.close()
    check_logout(await b.recv(), e.uid)         # on its own node, at once
    await b.silent(0.3)
    redis.start()
    await wait_healthz(n0, 200)
    await wait_healthz(n1, 200)
    # the other node hears of the logout Redis missed
    check_logout(await a.recv(timeout=5), e.uid)
    # the nodes carry on, without a restart, with the same users
    await b.say("de volta")
    for x in (a, b):
        got = await says(x, 1)
        assert got[0]["id"] == 4 and got[0]["content"] == "de volta", "no id lost or reused"
    c, ul = await login(n1, "caio", "r")
    assert [u["uid"] for u in ul] == [a.uid, b.uid, c.uid]
    hist = await c.expect("history")
    assert [m["id"] for m in hist["messages"]] == [1, 2, 3, 4]
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % n0.http_port, timeout=3) as r:
        assert "tagarela_redis_up 1" in r.read().decode()
    await close_all([a, b, c])


@async_test(timeout=60)
async def test_node_started_late(redis, make_node):
    n0, n1 = make_node(redis), make_node(redis)
    a, _ = await login(n0, "ana")
    b, _ = await login(n1, "bia")
    await a.say("olá")
    n2 = make_node(redis)
    c, ul = await login(n2, "caio")
    assert [u["uid"] for u in ul] == [a.uid, b.uid, c.uid]
    hist = await c.expect("history")
    assert [m["content"] for m in hist["messages"]] == ["olá"]
    await close_all([a, b, c])


@async_test(timeout=60)
async def test_sigterm_logs_users_out_at_once(redis, make_node):
    n0, n1, a, b = await two_nodes(redis, make_node)
    t0 = time.monotonic()
    n0.proc.send_signal(signal.SIGTERM)
    check_logout(await b.recv(timeout=3), a.uid)
    assert time.monotonic() - t0 < 4, "at once, not when the heartbeat expires (5 s)"
    assert n0.proc.wait(10) == 0
    n0.stopped = True
    await close_all([a, b])


@async_test(timeout=60)
async def test_two_shards(make_redis, make_node):
    r0, r1 = make_redis(), make_redis()
    n0, n1 = make_node([r0, r1]), make_node([r0, r1])
    rooms = ["sala%d" % i for i in range(8)]
    pairs = []
    for room in rooms:
        a, _ = await login(n0, "a", room)
        b, _ = await login(n1, "b", room)
        await a.expect("login")
        pairs.append((a, b))
    for a, b in pairs:
        await a.say("oi")
        assert (await says(b, 1))[0]["id"] == 1
    streams = [r.command("KEYS", "tg:{r*}:s").count(b"tg:{r") for r in (r0, r1)]
    assert sum(streams) == len(rooms) and all(streams), "rooms spread over both: %r" % streams
    assert b"tg:nodes" in r0.command("KEYS", "tg:nodes") and b"tg:nodes" not in r1.command("KEYS", "tg:nodes")
    await close_all([c for p in pairs for c in p])


@async_test(timeout=60)
async def test_unix_socket_url(make_redis, make_node):
    r = make_redis(unix=True)
    n0, n1 = make_node(r), make_node(r)
    a, _ = await login(n0, "ana")
    b, _ = await login(n1, "bia")
    await a.say("pelo socket")
    assert (await says(b, 1))[0]["content"] == "pelo socket"
    await close_all([a, b])


@pytest.mark.parametrize("url,why", [
    ("http://127.0.0.1:6379", "unknown scheme"),
    ("redis://", "no host"),
    ("redis://127.0.0.1:99999", "bad port"),
    ("redis://127.0.0.1:6379/x", "bad database"),
    ("unix://relative.sock", "absolute"),
])
def test_bad_url_is_a_clear_error(tmp_path, url, why):
    import subprocess
    from server_proc import BIN
    p = subprocess.run([BIN, "serve", "--redis", url, "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0",
                        "--data", str(tmp_path)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and why in p.stderr, p.stderr


def test_unreachable_redis_is_a_clear_error(tmp_path):
    import subprocess
    from redis_proc import free_port
    from server_proc import BIN
    p = subprocess.run([BIN, "serve", "--redis", "redis://127.0.0.1:%d" % free_port(), "--ws", "127.0.0.1:0",
                        "--http", "127.0.0.1:0", "--data", str(tmp_path)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "cannot reach Redis" in p.stderr, p.stderr


@pytest.fixture
def haproxy(tmp_path):
    """haproxy -f contrib/haproxy/tagarela.cfg in front of the given nodes."""
    import os
    import subprocess
    from redis_proc import free_port
    from server_proc import REPO
    procs = []

    def start(nodes):
        port = free_port()
        env = dict(os.environ, TAGARELA_PROXY_BIND="127.0.0.1:%d" % port)
        for i, n in enumerate(nodes):
            env["TAGARELA_NODE%d" % (i + 1)] = "127.0.0.1:%d" % n.http_port
        log = open(tmp_path / "haproxy.log", "wb")
        p = subprocess.Popen(["haproxy", "-db", "-f", str(REPO / "contrib/haproxy/tagarela.cfg")],
                             env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        procs.append(p)
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=2) as r:
                    if r.status == 200:
                        return port
            except OSError:
                pass
            assert p.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "haproxy.log").read_text()
            time.sleep(0.05)

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


async def is_closed(c, timeout=3.0):
    """True once c's connection is gone (its node died); False if it stays."""
    from helpers import ConnectionClosed
    try:
        while True:
            await c.recv(timeout=timeout)
    except ConnectionClosed:
        return True
    except asyncio.TimeoutError:
        return False


@async_test(timeout=90)
async def test_haproxy_node_taken_out_clients_lose_nothing(redis, make_node, haproxy):
    n0, n1 = make_node(redis), make_node(redis)
    port = haproxy([n0, n1])
    clients = []
    for i in range(4):
        c = await Client.connect(port, "/ws")
        await c.login("c%d" % i, "px")
        clients.append(c)
    for i, c in enumerate(clients):
        await c.say("antes %d" % i)
    for c in clients:
        assert [m["id"] for m in await says(c, 4)] == [1, 2, 3, 4]
    n0.kill()
    n0.stopped = True
    closed = await asyncio.gather(*[is_closed(c, timeout=2.0) for c in clients])
    assert 0 < sum(closed) < 4, "leastconn put clients on both nodes: %r" % closed
    alive = [c for c, x in zip(clients, closed) if not x]
    for i, c in enumerate(alive):       # the chat goes on meanwhile
        await c.say("durante %d" % i)
    for c in alive:
        await says(c, len(alive))
    back = []
    for c, x in zip(clients, closed):
        if not x:
            continue
        c2 = await Client.connect(port, "/ws")
        await c2.login(c.name, "px", {"last_id": 4, "token": c.token})
        hist = await c2.expect("history")
        assert [m["id"] for m in hist["messages"]] == list(range(5, 5 + len(alive)))
        back.append(c2)
    everyone = alive + back
    await back[0].say("depois")
    for c in everyone:
        assert (await says(c, 1))[0]["id"] == 5 + len(alive)
    await close_all(everyone)


@async_test(timeout=60)
async def test_hung_redis_refuses_says_then_recovers(redis, make_node):
    n0, n1, a, b = await two_nodes(redis, make_node, "z")
    redis.proc.send_signal(signal.SIGSTOP)      # Redis hangs: no answer, no close
    try:
        await a.say("no vácuo")
        check_error(await a.recv(timeout=6), "unavailable")
        await wait_healthz(n0, 503)
        await b.silent(0.2)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    await wait_healthz(n0, 200)
    await wait_healthz(n1, 200)
    await a.say("acordou")
    for x in (a, b):
        got = (await says(x, 1))[0]
        assert got["content"] == "acordou"
    await close_all([a, b])


@async_test(timeout=60)
async def test_retention_by_count_and_age(redis, make_node):
    # count: the stream keeps the newest --keep-messages
    n0 = make_node(redis, "--keep-messages", "5")
    a, _ = await login(n0, "ana", "n")
    for k in range(8):
        await a.say("m%d" % k)
    await says(a, 8)
    b, _ = await login(n0, "bia", "n", {"last_id": 0})
    hist = await b.expect("history")
    assert [m["id"] for m in hist["messages"]] == [4, 5, 6, 7, 8]
    await close_all([a, b])
    # age: a node trims what is older than --keep-days (here about 2 s)
    n1 = make_node(redis, "--keep-days", "0.00002")
    c, _ = await login(n1, "caio", "velha")
    await c.say("logo some")
    await says(c, 1)
    deadline = time.monotonic() + 10
    while True:
        d, _ = await login(n1, "davi", "velha", {"last_id": 0})
        hist = await d.expect("history")
        await d.close()
        if not hist["messages"]:
            break
        assert time.monotonic() < deadline, "never trimmed"
        await asyncio.sleep(0.5)
    await c.say("nova")
    assert (await says(c, 1))[0]["id"] == 2, "ids go on after a trim"
    await c.close()


def test_bench_spreads_clients_over_nodes(redis, make_node):
    import json
    import subprocess
    from server_proc import BIN
    fast = ("--rate", "1000000", "--burst", "1000000", "--history", "0")
    nodes = [make_node(redis, *fast), make_node(redis, *fast)]
    urls = ["ws://127.0.0.1:%d/" % n.ws_port for n in nodes]
    p = subprocess.run([BIN, "bench", "--json", "-q", "-n", "20", "-s", "4", "-d", "1", "--room", "b",
                        urls[0], urls[1]], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["server_url"] == ",".join(urls)
    assert r["sent"] > 0 and r["lost"] == 0 and r["dups"] == 0
    assert r["deliveries"] == r["expected_deliveries"] == r["sent"] * 20
    for n in nodes:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % n.http_port, timeout=3) as m:
            text = m.read().decode()
        accepted = [l for l in text.splitlines() if l.startswith("tagarela_accepted_total ")]
        assert int(accepted[0].split()[1]) >= 10, "half the clients on each node"


@async_test(timeout=60)
async def test_redis_back_without_its_data_gives_no_id_twice(redis, make_node):
    import shutil
    n0, n1, a, b = await two_nodes(redis, make_node, "sem")
    for k in range(3):
        await a.say("m%d" % k)
    await says(b, 3)
    await says(a, 3)
    redis.stop(kill=True)
    shutil.rmtree(redis.dir / "appendonlydir")    # a Redis run without its AOF
    redis.start()
    await wait_healthz(n0, 200)
    await wait_healthz(n1, 200)
    await a.say("depois")
    for x in (a, b):
        got = (await says(x, 1))[0]
        assert got["id"] == 4, "the counter came back up to the last id the nodes saw"
    # the users still connected were announced again: a newcomer sees them
    c, ul = await login(n1, "caio", "sem")
    assert {u["uid"] for u in ul} == {a.uid, b.uid, c.uid}
    await close_all([a, b, c])


@async_test(timeout=60)
async def test_node_started_after_a_death_shows_no_ghosts(redis, make_node):
    n0 = make_node(redis)
    a, _ = await login(n0, "fantasma", "g")
    n0.kill()
    n0.stopped = True
    deadline = time.monotonic() + 10
    while b"tg:hb:" in redis.command("KEYS", "tg:hb:*"):    # its heartbeat expires
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    n1 = make_node(redis)
    b, ul = await login(n1, "vivo", "g")
    assert [u["name"] for u in ul] == ["vivo"]
    await close_all([a, b])


@async_test(timeout=90)
async def test_redis_restart_during_a_flood(redis, make_node):
    """Says keep coming while Redis restarts: each is delivered (stored,
    same order and gap-free ids everywhere) or refused, none is lost."""
    n0, n1, a, b = await two_nodes(redis, make_node, "f")
    sent, stop = [], asyncio.Event()

    async def flood():
        k = 0
        while not stop.is_set():
            await a.say("f%d" % k)
            sent.append("f%d" % k)
            k += 1
            await asyncio.sleep(0.02)

    async def restart():
        await asyncio.sleep(0.5)
        redis.stop(kill=True)
        await asyncio.sleep(0.5)
        redis.start()
        await wait_healthz(n0, 200)
        await wait_healthz(n1, 200)
        await asyncio.sleep(0.5)
        stop.set()

    async def collect(c, out, errors):
        """Until the flood is over and the client has heard nothing for 2 s."""
        quiet = 0
        while not (stop.is_set() and quiet >= 4):
            try:
                msg = await c.recv(timeout=0.5)
            except asyncio.TimeoutError:
                quiet += 1
                continue
            quiet = 0
            if msg["type"] == "say":
                out.append(msg)
            elif msg["type"] == "error":
                assert msg["code"] == "unavailable", msg
                errors.append(msg)

    got_a, got_b, errors, none = [], [], [], []
    await asyncio.gather(flood(), restart(), collect(a, got_a, errors), collect(b, got_b, none))
    assert not none
    assert errors, "some says fell in the outage"
    ids = [m["id"] for m in got_b]
    assert ids == list(range(1, len(ids) + 1)), "gap-free: %r" % ids
    assert [(m["id"], m["content"]) for m in got_a] == [(m["id"], m["content"]) for m in got_b]
    contents = [m["content"] for m in got_b]
    assert len(set(contents)) == len(contents)
    assert len(contents) + len(errors) in (len(sent), len(sent) + 1), \
        "every say delivered or refused (%d sent, %d delivered, %d refused)" % (
            len(sent), len(contents), len(errors))
    c, _ = await login(n1, "caio", "f", {"last_id": 0})
    hist = []
    while True:
        h = await c.expect("history")
        hist += h["messages"]
        if not h.get("more"):
            break
    assert [m["content"] for m in hist] == contents, "delivered is stored"
    await close_all([a, b, c])


@async_test(timeout=60)
async def test_each_login_sees_every_earlier_one_in_order(redis, make_node):
    """Logins one after the other, each on the next node: every user_list
    holds all the earlier users, in the order they came."""
    nodes = [make_node(redis), make_node(redis, "--threads", "2"), make_node(redis)]
    clients, uids = [], []
    for i in range(18):
        c, ul = await login(nodes[i % 3], "u%d" % i, "fila")
        uids.append(c.uid)
        assert [u["uid"] for u in ul] == uids, "login %d on node %d" % (i, i % 3)
        clients.append(c)
    await close_all(clients)


@async_test(timeout=60)
async def test_admin_api_with_users_of_other_nodes(redis, make_node, tmp_path):
    """/admin/users lists another node's users (no address); kicking one is
    that node's operator's to do; deleting a message is not in cluster mode."""
    from test_admin import TOKEN, request
    token = tmp_path / "admin.token"
    token.write_text(TOKEN + "\n")
    n0 = make_node(redis, "--admin-token", token)
    n1 = make_node(redis, "--admin-token", token)
    a, _ = await login(n0, "ana")
    b, _ = await login(n1, "bia")
    await a.expect("login")
    loop = asyncio.get_running_loop()
    status, _, body = await loop.run_in_executor(None, request, n0.http_port, "GET", "/admin/users")
    assert status == 200, body
    users = {u["uid"]: u for u in body["users"]}
    assert set(users) == {a.uid, b.uid}
    assert users[b.uid]["address"] == "-" and users[a.uid]["address"] != "-"
    status, _, body = await loop.run_in_executor(None, request, n0.http_port, "POST", "/admin/kick",
                                                 {"uid": b.uid, "reason": "x"})
    assert status == 404, body
    await b.silent(0.3)
    status, _, body = await loop.run_in_executor(None, request, n1.http_port, "POST", "/admin/kick",
                                                 {"uid": b.uid, "reason": "fora"})
    assert status == 200, body
    check_error(await b.recv(), "kicked")
    got = await recv_until(a, lambda m: m["type"] == "logout")
    check_logout(got[-1], b.uid)            # the kicked user left the whole chat
    await close_all([a, b])


@async_test(timeout=60)
async def test_compressed_and_plain_clients_on_two_nodes(redis, make_node):
    n0, n1 = make_node(redis), make_node(redis)
    a = await Client.connect(n0.ws_port, compression="deflate")
    await a.login("ana")
    b, _ = await login(n1, "bia")
    await a.expect("login")
    await a.say("comprimido " * 20)
    await b.say("simples " * 20)
    seen = [[(m["id"], m["content"]) for m in await says(x, 2)] for x in (a, b)]
    assert seen[0] == seen[1], "one order for both"
    assert sorted(c for _, c in seen[0]) == sorted(["comprimido " * 20, "simples " * 20])
    await close_all([a, b])
