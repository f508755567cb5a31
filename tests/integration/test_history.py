"""History (issue 5): ids per room, replay after login, resume with last_id,
private messages replayed to their parties only, retention, restarts, a
SIGKILL in the middle of traffic, and refusing a damaged database."""

import asyncio
import os
import sqlite3
import subprocess
import time

import pytest

from helpers import Client, async_test, check_say, close_all
from server_proc import BIN, Server


def say_ids(msgs):
    return [m["id"] for m in msgs]


async def recv_until_history(c, timeout=3.0):
    msg = await c.recv(timeout)
    assert msg["type"] == "history", "expected history, got %r" % (msg,)
    assert list(msg.keys()) == ["type", "messages"], msg
    for m in msg["messages"]:
        check_say(m)
        assert list(m.keys())[-1] == "id", m
    return msg["messages"]


async def post(c, contents, to_uid=None):
    """Says each content and returns the echoes the sender received."""
    got = []
    for text in contents:
        await c.say(text, to_uid)
        got.append(await c.expect("say"))
    return got


def db_rows(server, room="1"):
    db = sqlite3.connect(str(server.datadir / "tagarela.db"))
    try:
        return db.execute("SELECT id FROM messages WHERE room=? ORDER BY id", (room,)).fetchall()
    finally:
        db.close()


@async_test()
async def test_ids_increase_per_room_and_are_the_last_key(server):
    a = await Client.connect(server.ws_port)
    b = await Client.connect(server.ws_port)
    await a.login("ana", room_id="r1")
    await b.login("bia", room_id="r2")
    ra = await post(a, ["one", "two", "three"])
    rb = await post(b, ["uno"])
    assert say_ids(ra) == [1, 2, 3]
    assert say_ids(rb) == [1]
    for m in ra + rb:
        assert list(m.keys()) == ["type", "from_uid", "to_uid", "content", "time", "id"], m
    await close_all([a, b])


@async_test()
async def test_login_replays_the_last_n_messages_in_order(make_server):
    srv = make_server("--history", "5")
    a = await Client.connect(srv.ws_port)
    await a.login("ana")
    sent = await post(a, ["m%d" % i for i in range(8)])
    b = await Client.connect(srv.ws_port)
    await b.login("bia")
    hist = await recv_until_history(b)
    assert [m["content"] for m in hist] == ["m3", "m4", "m5", "m6", "m7"]
    assert hist == sent[3:], "history must hold the messages exactly as they were sent"
    await close_all([a, b])


@async_test()
async def test_no_history_message_for_an_empty_room(server):
    a = await Client.connect(server.ws_port)
    await a.login("ana")
    await a.silent(0.3)
    await a.close()


@async_test()
async def test_last_id_gives_exactly_the_messages_after_it(server):
    a = await Client.connect(server.ws_port)
    await a.login("ana")
    sent = await post(a, ["m%d" % i for i in range(6)])
    b = await Client.connect(server.ws_port)
    await b.login("bia", extra={"last_id": 4})
    assert await recv_until_history(b) == sent[4:]
    c = await Client.connect(server.ws_port)
    await c.login("caio", extra={"last_id": 6})
    assert await recv_until_history(c) == [], "asked with last_id: answered even when empty"
    await close_all([a, b, c])


@async_test()
async def test_resume_is_capped(make_server):
    srv = make_server("--resume-cap", "3")
    a = await Client.connect(srv.ws_port)
    await a.login("ana")
    sent = await post(a, ["m%d" % i for i in range(7)])
    b = await Client.connect(srv.ws_port)
    await b.login("bia", extra={"last_id": 0})
    assert await recv_until_history(b) == sent[-3:]
    await close_all([a, b])


@async_test()
async def test_reconnect_with_last_id_misses_nothing(server):
    a = await Client.connect(server.ws_port)
    b = await Client.connect(server.ws_port)
    await a.login("ana")
    await b.login("bia")
    await a.expect("login")
    first = await post(a, ["before"])
    assert (await b.expect("say"))["id"] == first[0]["id"]
    last_seen = first[0]["id"]
    await b.close()
    await a.expect("logout")
    while_away = await post(a, ["away %d" % i for i in range(5)])
    b2 = await Client.connect(server.ws_port)
    await b2.login("bia", extra={"last_id": last_seen})
    assert await recv_until_history(b2) == while_away
    await close_all([a, b2])


@async_test()
async def test_private_messages_replayed_only_to_their_parties(server):
    a = await Client.connect(server.ws_port)
    b = await Client.connect(server.ws_port)
    await a.login("ana")
    await b.login("bia")
    await a.expect("login")
    await post(a, ["public"])
    await b.expect("say")
    await a.say("secret", to_uid=b.uid)
    echo = await a.expect("say")
    assert (await b.expect("say")) == echo
    c = await Client.connect(server.ws_port)
    await c.login("caio")
    hist = await recv_until_history(c)
    assert [m["content"] for m in hist] == ["public"], "a third party must not see it"
    await b.close()
    # the name alone is no one's: only the identity (its token) unlocks it
    b2 = await Client.connect(server.ws_port)
    await b2.login("bia")
    hist = await recv_until_history(b2)
    assert [m["content"] for m in hist] == ["public"]
    b3 = await Client.connect(server.ws_port)
    await b3.login("bia", extra={"token": b.token})
    assert b3.token == b.token
    hist = await recv_until_history(b3)
    assert [m["content"] for m in hist] == ["public", "secret"]
    a2 = await Client.connect(server.ws_port)
    await a2.login("ana", room_id="elsewhere")
    await a2.silent(0.3)
    await close_all([a, c, b2, b3, a2])


@async_test()
async def test_history_names_on_request(server):
    """"history_names": true in the login adds the parties' names after the
    last key; without it the items are the messages exactly as sent."""
    a = await Client.connect(server.ws_port)
    b = await Client.connect(server.ws_port)
    await a.login("<ana>")
    await b.login("bia")
    await a.expect("login")
    public = (await post(a, ["oi"]))[0]
    await b.expect("say")
    await a.say("psst", to_uid=b.uid)
    private = await a.expect("say")
    await b.expect("say")
    await close_all([a, b])
    plain = await Client.connect(server.ws_port)
    await plain.login("bia", extra={"token": b.token})
    assert await recv_until_history(plain) == [public, private]
    named = await Client.connect(server.ws_port)
    await named.send({"type": "login", "name": "bia", "history_names": True, "token": b.token})
    await named.expect("user_list")
    await named.expect("login")
    await named.expect("session")
    msg = await named.expect("history")
    items = msg["messages"]
    assert list(items[0].keys()) == list(public.keys()) + ["from_name"]
    assert items[0] == dict(public, from_name="&lt;ana&gt;")
    assert list(items[1].keys()) == list(private.keys()) + ["from_name", "to_name"]
    assert items[1] == dict(private, from_name="&lt;ana&gt;", to_name="bia")
    await close_all([plain, named])


@async_test(timeout=60)
async def test_history_and_ids_survive_a_restart(tmp_path):
    srv = Server(tmp_path / "s").start()
    try:
        a = await Client.connect(srv.ws_port)
        await a.login("ana")
        sent = await post(a, ["m1", "m2"])
        await a.close()
        assert srv.terminate() == 0
        srv = Server(tmp_path / "s").start()
        b = await Client.connect(srv.ws_port)
        await b.login("bia")
        assert await recv_until_history(b) == sent
        more = await post(b, ["m3"])
        assert more[0]["id"] == 3
        await b.close()
    finally:
        srv.terminate()


@async_test(timeout=60)
async def test_count_retention_bounds_the_database(make_server):
    srv = make_server("--keep-messages", "5")
    a = await Client.connect(srv.ws_port)
    await a.login("ana")
    sent = await post(a, ["m%d" % i for i in range(30)])
    rows = db_rows(srv)
    assert [r[0] for r in rows] == [26, 27, 28, 29, 30]
    b = await Client.connect(srv.ws_port)
    await b.login("bia", extra={"last_id": 0})
    assert await recv_until_history(b) == sent[-5:]
    await close_all([a, b])


@async_test(timeout=120)
async def test_the_wal_is_checkpointed_while_serving(make_server):
    """Checkpoints run beside the loop (on their own thread): 24 MB of
    messages must not leave a 24 MB write-ahead log behind."""
    # 24 MB in one room: past the room's default byte bound, which is not
    # what this test is about
    srv = make_server("--rate", "100000", "--burst", "100000", "--max-content", "4096",
                      "--history-room-bytes", "64000000")
    a = await Client.connect(srv.ws_port)
    await a.login("ana")
    body = "x" * 4000
    for burst in range(30):
        for i in range(200):
            await a.say("%d %s" % (i, body))
        for i in range(200):
            await a.expect("say", timeout=10)
    await asyncio.sleep(1.0)
    wal = srv.datadir / "tagarela.db-wal"
    size = wal.stat().st_size if wal.exists() else 0
    assert size < 16 * 1024 * 1024, "WAL is %d bytes: never checkpointed" % size
    assert len(db_rows(srv)) == 6000
    await close_all([a])


@async_test(timeout=60)
async def test_age_retention_forgets_old_messages(make_server):
    srv = make_server("--keep-days", "0.00002")    # about 1.7 s
    a = await Client.connect(srv.ws_port)
    await a.login("ana")
    await post(a, ["old1", "old2"])
    deadline = time.monotonic() + 10
    while db_rows(srv) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    assert db_rows(srv) == []
    fresh = await post(a, ["new"])
    assert fresh[0]["id"] == 3, "ids are never reused, even after a purge"
    await a.close()


async def chatter(port, name, stop, received):
    c = await Client.connect(port)
    await c.login(name)
    i = 0
    try:
        while not stop.is_set():
            await c.say("%s-%d" % (name, i))
            i += 1
            while True:
                try:
                    m = await c.recv(0.02)
                except asyncio.TimeoutError:
                    break
                if m["type"] == "say":
                    received[m["id"]] = m
    except Exception:
        pass                    # the server is killed under us


async def listener(port, name, stop, received):
    c = await Client.connect(port)
    await c.login(name)
    try:
        while not stop.is_set():
            m = await c.recv(5)
            if m["type"] == "say":
                received[m["id"]] = m
    except Exception:
        pass


# With 80 listeners every message goes to more connections than
# COALESCE_MIN_CONNS: the writes (and the commits) are grouped over a
# millisecond or two, and still nothing is written before it is committed.
@pytest.mark.parametrize("listeners", [0, 80])
@async_test(timeout=90)
async def test_sigkill_loses_no_message_any_client_received(tmp_path, listeners):
    srv = Server(tmp_path / "s", ["--rate", "1000", "--burst", "1000"]).start()
    received = {}
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(listener(srv.ws_port, "l%d" % i, stop, received))
             for i in range(listeners)]
    await asyncio.sleep(0.5 + listeners / 100)
    tasks += [asyncio.ensure_future(chatter(srv.ws_port, "c%d" % i, stop, received))
              for i in range(4)]
    await asyncio.sleep(2.0)
    srv.proc.kill()              # SIGKILL: no chance to flush or close
    srv.proc.wait(5)
    srv.stopped = True
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(received) > 20, "the clients should have exchanged messages"

    db = sqlite3.connect(str(tmp_path / "s" / "data" / "tagarela.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

    srv2 = Server(tmp_path / "s", ["--resume-cap", "100000"]).start()
    try:
        c = await Client.connect(srv2.ws_port)
        await c.login("checker", extra={"last_id": 0})
        hist = {m["id"]: m for m in await recv_until_history(c, timeout=10)}
        missing = [i for i in received if i not in hist]
        assert not missing, "received by a client but lost: ids %r" % missing[:10]
        for i, m in received.items():
            assert hist[i] == m
        top = max(hist)
        await c.say("after the crash")
        after = await c.expect("say")
        assert after["id"] == top + 1, "ids continue without reuse"
        await c.close()
    finally:
        assert srv2.terminate() == 0

    db = sqlite3.connect(str(tmp_path / "s" / "data" / "tagarela.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def run_serve(*args, timeout=10):
    return subprocess.run([BIN, "serve", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0"] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def test_a_damaged_database_stops_the_server(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "tagarela.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    r = run_serve("--data", str(data))
    assert r.returncode != 0
    assert "tagarela.db" in r.stderr, r.stderr


def test_an_unusable_data_directory_stops_the_server(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_serve("--data", str(blocker / "data"))
    assert r.returncode != 0
    assert "data directory" in r.stderr, r.stderr
