"""Storage and history hardening (issue 10, items 3 and 5), against the real
binary with its DEFAULT limits unless a test says otherwise:

- a long history (300 maximum-size messages) comes in pieces under 64 KiB,
  each marked "more": true but the last, and the connection stays open;
  100 such resumes at once all complete and the server's RSS stays bounded;
- a long user list comes in pieces the same way;
- a say that cannot be stored (the database locked, or its disk full)
  reaches nobody and its sender gets "unavailable"; ids are never reused,
  also after a restart;
- bytes kept per room and in all are bounded; rooms one address brings up
  a minute are bounded (too_many_rooms);
- a database of the previous schema is converted and replays every say
  byte for byte.
"""

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time

import pytest

from helpers import Client, async_test, check_error, close_all, rss_kib, sanitized

# Contract: 64 KiB of JSON at most in one history or user_list message.
BUDGET = 64 * 1024
# A maximum-size say: 4096 code points that each escape to 6 bytes.
BIG = '"' * 4096
ID_RE = re.compile(rb'"id":(\d+)[,}]')


async def post_many(c, n, content=BIG):
    """Says n times, each after the previous one's echo (the rate limit's
    burst is 100, then 50 a second). Returns the ids."""
    ids = []
    for _ in range(n):
        await c.say(content)
        while True:
            m = await c.recv(10)
            if m["type"] == "say" and m["from_uid"] == c.uid:
                ids.append(m["id"])
                break
            assert m["type"] != "error", m
    return ids


async def fill_room(port, n, room_id=None):
    """n maximum-size says in a room, by one client per 100 (the rate
    limit's burst), each closed before the next comes. Returns the ids."""
    ids = []
    for k in range(0, n, 100):
        c = await Client.connect(port)
        await c.login("poster%d" % k, room_id=room_id)
        ids += await post_many(c, min(100, n - k))
        await c.close()
    return ids


async def read_history_pieces(c, timeout=30.0):
    """Reads a login's history pieces, raw. Returns (ids, piece sizes)."""
    ids, sizes = [], []
    deadline = time.monotonic() + timeout
    while True:
        raw = await c.recv_raw(max(0.1, deadline - time.monotonic()))
        data = raw.encode()
        if data.startswith((b'{"type":"ping"', b'{"type":"login"', b'{"type":"logout"',
                            b'{"type":"session"')):
            continue                    # live news may come between pieces
        assert data.startswith(b'{"type":"history","messages":['), data[:200]
        sizes.append(len(data))
        ids.extend(int(x) for x in ID_RE.findall(data))
        if data.endswith(b'],"more":true}'):
            continue
        assert data.endswith(b"]}"), data[-100:]
        return ids, sizes


async def login_raw(c, name, timeout=3.0, **extra):
    """Logs in and reads the user_list, our login broadcast and session."""
    await c.send(dict({"type": "login", "name": name}, **extra))
    ul = await c.expect("user_list", timeout)
    me = await c.expect("login", timeout)
    await c.expect("session", timeout)
    c.uid = me["uid"]
    return ul


@async_test(timeout=120)
async def test_resume_of_300_maximum_messages_comes_in_pieces(server):
    sent = await fill_room(server.ws_port, 300)
    assert sent == list(range(1, 301))
    b = await Client.connect(server.ws_port)
    await login_raw(b, "bia", last_id=0)
    ids, sizes = await read_history_pieces(b)
    assert ids == sent, "every message once, in increasing id order"
    assert len(sizes) > 1 and max(sizes) <= BUDGET, sizes
    # the connection is kept and works
    await b.say("still here")
    m = await b.expect("say")
    assert m["content"] == "still here" and m["id"] == 301
    # pieces parse as the contract's history, the last without "more"
    c = await Client.connect(server.ws_port)
    await login_raw(c, "cid", last_id=250)
    pieces = []
    while True:
        m = await c.expect("history", timeout=10)
        pieces.append(m)
        if "more" not in m:
            break
        assert list(m.keys()) == ["type", "messages", "more"] and m["more"] is True
    assert [x["id"] for p in pieces for x in p["messages"]] == list(range(251, 302))
    assert pieces[0]["messages"][0]["content"] == "&quot;" * 4096
    await close_all([b, c])


@async_test(timeout=300)
async def test_100_resumes_at_once_complete_with_bounded_memory(server):
    sent = await fill_room(server.ws_port, 300)
    clients = [await Client.connect(server.ws_port) for _ in range(100)]
    base = rss_kib(server.proc.pid)
    peak = [base]
    done = asyncio.Event()

    async def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(server.proc.pid))
            await asyncio.sleep(0.05)

    async def resume(i, c):
        await login_raw(c, "r%d" % i, timeout=60, last_id=0)
        ids, sizes = await read_history_pieces(c, timeout=240)
        assert ids == sent
        assert max(sizes) <= BUDGET
        return len(sizes)

    sampler = asyncio.ensure_future(sample())
    try:
        pieces = await asyncio.gather(*[resume(i, c) for i, c in enumerate(clients)])
    finally:
        done.set()
        await sampler
    assert all(c.close_code is None for c in clients), "nobody was closed"
    growth_mib = (peak[0] - base) / 1024
    print("100 resumes of 300 messages: %d pieces each, RSS %d MiB -> peak %d MiB (+%.1f MiB)"
          % (pieces[0], base // 1024, peak[0] // 1024, growth_mib))
    # 100 x 7.4 MB of history: one piece at a time per connection keeps
    # the growth to the pieces in flight and SQLite's cache (5 MiB measured).
    # A sanitizer's build keeps freed memory in quarantine: not measurable.
    if not sanitized():
        assert growth_mib < 64, "RSS grew by %.1f MiB" % growth_mib
    await close_all(clients)


@async_test(timeout=120)
async def test_long_user_list_comes_in_pieces(server):
    # 320 members whose names escape to 192 bytes each: about 70 KB of list
    name = '"' * 32
    members = []
    for i in range(0, 320, 40):
        batch = [await Client.connect(server.ws_port) for _ in range(40)]
        for c in batch:
            await login_raw(c, name)
        members += batch
    late = await Client.connect(server.ws_port)
    await late.send({"type": "login", "name": "late"})
    entries, pieces, me = [], 0, None
    while True:
        m = await late.recv(10)
        if m["type"] == "login":
            me = m
            continue
        if m["type"] == "session":
            continue
        assert m["type"] == "user_list", m
        pieces += 1
        entries += m["user_list"]
        if "more" not in m:
            break
        assert list(m.keys()) == ["type", "user_list", "more"] and m["more"] is True
    assert pieces > 1
    assert me is not None and entries[-1]["uid"] == me["uid"]
    assert [e["uid"] for e in entries[:-1]] == [c.uid for c in members]
    # an ordinary room keeps the seed's single message
    other = await Client.connect(server.ws_port)
    ul = await other.login("solo", room_id="small")
    assert len(ul) == 1
    await close_all(members + [late, other])


def hold_write_lock(db_path):
    """Takes the database's write lock from outside, as another process
    (a backup, an operator's sqlite3 shell) might."""
    db = sqlite3.connect(str(db_path), timeout=5, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    return db


@async_test(timeout=60)
async def test_say_that_cannot_be_stored_reaches_nobody(make_server):
    srv = make_server()
    a = await Client.connect(srv.ws_port)
    b = await Client.connect(srv.ws_port)
    await a.login("ana")
    await b.login("bia")
    await a.expect("login")             # bia's
    ids = await post_many(a, 3, "fine")
    for _ in ids:
        await b.expect("say")
    lock = hold_write_lock(srv.datadir / "tagarela.db")
    try:
        t0 = time.monotonic()
        await a.say("lost")
        check_error(await a.recv(5), "unavailable")
        assert time.monotonic() - t0 < 1.0, "the loop waited for the lock"
        await b.silent(0.5)
        await a.silent(0.2)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await a.say("after")
    m = await b.expect("say")
    assert m["content"] == "after" and m["id"] == ids[-1] + 1
    assert (await a.expect("say"))["id"] == m["id"]
    await close_all([a, b])
    # after a restart ids go on after every id a client saw
    assert srv.terminate() == 0
    srv2 = make_server("--data", str(srv.datadir))
    c = await Client.connect(srv2.ws_port)
    await c.login("cid")
    await c.expect("history")
    await c.say("later")
    assert (await c.expect("say"))["id"] == m["id"] + 1
    await c.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MiB tmpfs (needs root and a kernel that lets us mount);
    skipped elsewhere."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                           capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())
    try:
        yield str(disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@async_test(timeout=120)
async def test_failed_commit_on_a_full_disk(make_server, tiny_disk):
    data = os.path.join(tiny_disk, "data")
    srv = make_server("--data", data)
    a = await Client.connect(srv.ws_port)
    b = await Client.connect(srv.ws_port)
    await a.login("ana")
    await b.login("bia")
    await a.expect("login")
    seen = await post_many(a, 2, "before")
    for _ in seen:
        await b.expect("say")
    # fill the disk to the last block
    filler = os.path.join(tiny_disk, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        with open(filler, "ab") as f:
            while True:
                f.write(b"\0" * 512)
                f.flush()
    except OSError:
        pass
    refused = 0
    for i in range(20):
        await a.say(BIG)
        m = await a.recv(5)
        if m["type"] == "error":
            check_error(m, "unavailable")
            refused += 1
            break
        assert m["type"] == "say"
        seen.append(m["id"])
        assert (await b.expect("say"))["id"] == m["id"]
    assert refused, "a full disk never refused a say"
    await b.silent(0.5)
    os.unlink(filler)
    await a.say("after")
    m = await a.expect("say", timeout=5)
    assert m["id"] == seen[-1] + 1, (m["id"], seen)
    assert (await b.expect("say"))["id"] == m["id"]
    seen.append(m["id"])
    await close_all([a, b])
    assert srv.terminate() == 0
    srv2 = make_server("--data", data)
    c = await Client.connect(srv2.ws_port)
    await login_raw(c, "cid", last_id=0)
    ids, _ = await read_history_pieces(c)
    assert ids == seen, "the history holds what was delivered, nothing else"
    await c.say("later")
    assert (await c.expect("say"))["id"] == seen[-1] + 1
    await c.close()


def room_bytes(srv):
    db = sqlite3.connect(str(srv.datadir / "tagarela.db"))
    try:
        rows = db.execute("SELECT room, sum(size), count(*) FROM messages GROUP BY room").fetchall()
        kept = dict(db.execute("SELECT room, bytes FROM rooms").fetchall())
    finally:
        db.close()
    return {r: (b, n) for r, b, n in rows}, kept


@async_test(timeout=60)
async def test_bytes_kept_per_room_and_in_all_are_bounded(make_server):
    srv = make_server("--history-room-bytes", "20000", "--history-bytes", "30000")
    a = await Client.connect(srv.ws_port)
    await a.login("ana", room_id="one")
    ids = await post_many(a, 10, "x" * 4000)
    used, kept = room_bytes(srv)
    assert used["one"][0] <= 20000 and used["one"][1] == 4, used
    assert kept["one"] == used["one"][0], "the room's count matches its rows"
    b = await Client.connect(srv.ws_port)
    await login_raw(b, "bia", room_id="one", last_id=0)
    got, _ = await read_history_pieces(b)
    assert got == ids[-4:], "the oldest went first"
    await asyncio.sleep(1.1)            # "oldest" counts in seconds
    c = await Client.connect(srv.ws_port)
    await c.login("cid", room_id="two")
    await post_many(c, 5, "y" * 4000)
    used, kept = room_bytes(srv)
    assert sum(v[0] for v in used.values()) <= 30000, used
    # 4067 bytes a row: 4 fit a room, 7 fit in all
    assert used["two"][1] == 4 and used["one"][1] == 3, "the oldest of all went first"
    assert kept == {r: v[0] for r, v in used.items()}
    await close_all([a, b, c])


@async_test(timeout=60)
async def test_rooms_per_minute_per_address(server):
    clients = []
    for i in range(30):                         # the default: 30 a minute
        c = await Client.connect(server.ws_port)
        await c.login("u%d" % i, room_id="r%d" % i)
        clients.append(c)
    extra = await Client.connect(server.ws_port)
    await extra.send({"type": "login", "name": "x", "room_id": "r-new"})
    check_error(await extra.recv(), "too_many_rooms")
    # the connection is kept; a room that is up costs nothing new
    await extra.login("x", room_id="r0")
    await extra.say("hi")
    assert (await extra.expect("say"))["content"] == "hi"
    await close_all(clients + [extra])


@async_test(timeout=30)
async def test_rooms_per_minute_can_be_lifted(make_server):
    srv = make_server("--rooms-per-minute", "0")
    for i in range(40):
        c = await Client.connect(srv.ws_port)
        await c.login("u", room_id="r%d" % i)
        await c.close()


V1_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE rooms (room TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE messages (
  room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,
  from_uid INTEGER NOT NULL, to_uid INTEGER NOT NULL,
  from_name TEXT, to_name TEXT, json TEXT NOT NULL,
  PRIMARY KEY (room, id)) WITHOUT ROWID;
CREATE INDEX messages_ts ON messages(ts);
"""


def v1_say(from_uid, to_uid, content, ts, id_):
    """A say as version 1 stored it: the JSON the server sent (escaped)."""
    esc = (content.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
           .replace('"', "&quot;").replace("'", "&#039;"))
    esc = re.sub(r"(\r\n|\n\r|\n|\r)", r"<br />\1", esc)
    t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
    to = '"all"' if to_uid == 0 else str(to_uid)
    return ('{"type":"say","from_uid":%d,"to_uid":%s,"content":%s,"time":"%s","id":%d}'
            % (from_uid, to, json.dumps(esc, ensure_ascii=False), t, id_))


@async_test(timeout=60)
async def test_version_1_database_is_converted(make_server, tmp_path):
    data = tmp_path / "old"
    data.mkdir()
    db = sqlite3.connect(str(data / "tagarela.db"))
    db.executescript(V1_SCHEMA)
    ts = 1407865830
    contents = ["oi, pessoal !", "<b>&amp;</b> \"q\" 'a'", "two\nlines\r\nand\rmore\n\r!",
                "<br /> typed by hand", "ção 😀 \\ \u2028", "x" * 4096]
    rows = []
    for i, text in enumerate(contents, 1):
        js = v1_say(100 + i, 0, text, ts + i, i)
        rows.append(("1", i, ts + i, 100 + i, 0, "ana", None, js))
    rows.append(("1", 7, ts + 7, 101, 102, "ana", "bia",
                 v1_say(101, 102, "secret", ts + 7, 7)))
    db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?)", rows)
    db.execute("INSERT INTO rooms VALUES ('1', 9)")
    db.commit()
    db.close()
    env = dict(os.environ, TZ="UTC")
    srv = make_server("--data", str(data), env=env)
    c = await Client.connect(srv.ws_port)
    await login_raw(c, "bia", last_id=0)
    raw = (await c.recv_raw()).encode()
    # the private row kept no identities in version 1 (it was matched by
    # name, which anyone can take): it stays stored and is replayed to no one
    public = [r for r in rows if r[4] == 0]
    want = b'{"type":"history","messages":[' + b",".join(r[7].encode() for r in public) + b"]}"
    assert raw == want, "replayed byte for byte"
    # converted: raw content kept, the version recorded, bytes counted
    db = sqlite3.connect(str(data / "tagarela.db"))
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        got = [r[0] for r in db.execute("SELECT content FROM messages ORDER BY id")]
        assert got == contents + ["secret"]
        total = db.execute("SELECT sum(size) FROM messages").fetchone()[0]
        assert db.execute("SELECT bytes FROM rooms WHERE room='1'").fetchone()[0] == total
        assert not db.execute("SELECT name FROM sqlite_master WHERE name='messages_v1'").fetchall()
    finally:
        db.close()
    # ids go on after the room's last id
    await c.say("new")
    assert (await c.expect("say"))["id"] == 10
    await c.close()
