"""Identity (issue 10, item 4; the contract's Identity section) against the
real binary with its default limits: the session message and its token,
continuing an identity with it, private history by identity and never by
name (the impostor), tokens stored hashed, a database of the previous
version migrated, identities across a restart and their expiry, and
operator-signed logins (--auth-key, JWT HS256)."""

import asyncio
import base64
import hashlib
import hmac
import json
import sqlite3
import subprocess
import time

from helpers import Client, async_test, check_error, check_session, close_all
from server_proc import BIN, Server

TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
SECRET = b"an operator secret of 32 bytes!!"


def mint(claims, key=SECRET, header=None):
    """A JWT as docs/identity.md mints one: stdlib only."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key, ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


async def login_raw(c, msg):
    """Sends a login; returns (user_list, login, session) or an error."""
    await c.send(dict({"type": "login"}, **msg))
    first = await c.recv()
    if first["type"] == "error":
        return first
    assert first["type"] == "user_list", first
    me = await c.expect("login")
    session = await c.recv()
    check_session(session, me["uid"])
    c.uid, c.name, c.token = me["uid"], me["name"], session["token"]
    return first, me, session


async def history_of(c):
    msg = await c.expect("history")
    return msg["messages"]


async def private_pair(port, names=("alice", "bob"), extra_a=None, extra_b=None):
    """alice says one public and one private message to bob; returns both
    clients (still connected) and the two messages as sent."""
    a = await Client.connect(port)
    b = await Client.connect(port)
    await a.login(names[0], extra=extra_a)
    await b.login(names[1], extra=extra_b)
    await a.expect("login")
    await a.say("hello all")
    public = await a.expect("say")
    await b.expect("say")
    await a.say("for bob only", to_uid=b.uid)
    private = await a.expect("say")
    assert await b.expect("say") == private
    return a, b, public, private


@async_test()
async def test_session_follows_the_login_broadcast_then_history(server):
    a = await Client.connect(server.ws_port)
    await a.login("ana")
    await a.say("one")
    await a.expect("say")
    b = await Client.connect(server.ws_port)
    ul, me, session = await login_raw(b, {"name": "bia", "last_id": 0})
    assert list(session.keys()) == ["type", "uid", "token"]
    token = session["token"]
    assert len(token) >= 22 and set(token) <= TOKEN_CHARS, token   # >= 128 bits, URL-safe
    assert [m["content"] for m in await history_of(b)] == ["one"]
    # the session went to the new client alone
    assert (await a.expect("login"))["uid"] == b.uid
    await a.silent(0.3)
    await close_all([a, b])


@async_test()
async def test_token_continues_the_identity_and_names_are_display_names(server):
    a = await Client.connect(server.ws_port)
    await a.login("ana")
    tokens = {a.token}
    await a.close()
    b = await Client.connect(server.ws_port)
    await b.login("another name", extra={"token": a.token})
    assert b.token == a.token
    # two identities may share one name
    c = await Client.connect(server.ws_port)
    d = await Client.connect(server.ws_port)
    await c.login("twin")
    await d.login("twin")
    assert c.token != d.token and c.uid != d.uid
    tokens |= {c.token, d.token}
    assert len(tokens) == 3
    await close_all([b, c, d])


@async_test()
async def test_unknown_malformed_or_huge_tokens_start_a_new_identity(server):
    a = await Client.connect(server.ws_port)
    await a.login("ana")
    known = a.token
    bad = ["A" * len(known), known[:-1], known + "A", known + "=", "", "x" * 50000, 42, None,
           [known], {"token": known}]
    for tok in bad:
        c = await Client.connect(server.ws_port)
        await c.login("c", extra={"token": tok})
        assert c.token != known and set(c.token) <= TOKEN_CHARS
        await c.close()
    await a.close()


@async_test()
async def test_impostor_gets_no_private_message_and_the_owner_does(server):
    a, b, public, private = await private_pair(server.ws_port)
    bob_token = b.token
    await close_all([a, b])
    # an impostor: bob's name, last_id 0, history_names, no token
    imp = await Client.connect(server.ws_port)
    await imp.login("bob", extra={"last_id": 0, "history_names": True})
    got = await history_of(imp)
    assert [m["content"] for m in got] == ["hello all"], got
    # ... nor with a guessed token
    imp2 = await Client.connect(server.ws_port)
    await imp2.login("bob", extra={"last_id": 0, "token": "A" * len(bob_token)})
    assert [m["content"] for m in await history_of(imp2)] == ["hello all"]
    # bob with his token, under any name, gets it (and the names on request)
    own = await Client.connect(server.ws_port)
    await own.login("robert", extra={"last_id": 0, "history_names": True, "token": bob_token})
    got = await history_of(own)
    assert got[0] == dict(public, from_name="alice")
    assert got[1] == dict(private, from_name="alice", to_name="bob")
    # without last_id too (the ordinary history)
    own2 = await Client.connect(server.ws_port)
    await own2.login("bob", extra={"token": bob_token})
    assert await history_of(own2) == [public, private]
    await close_all([imp, imp2, own, own2])


@async_test()
async def test_clients_without_token_have_no_private_history(server):
    a, b, public, private = await private_pair(server.ws_port)
    await close_all([a, b])
    for name in ("alice", "bob"):
        c = await Client.connect(server.ws_port)
        await c.login(name)
        assert await history_of(c) == [public]
        await c.close()


@async_test()
async def test_tokens_are_stored_hashed(server):
    a, b, public, private = await private_pair(server.ws_port)
    tokens = [a.token, b.token]
    await close_all([a, b])
    db = server.datadir / "tagarela.db"
    con = sqlite3.connect(str(db))
    try:
        keys = {bytes(r[0]) for r in con.execute("SELECT key FROM identities")}
        row = con.execute("SELECT from_ident, to_ident FROM messages WHERE to_uid != 0").fetchone()
    finally:
        con.close()
    for t in tokens:
        assert hashlib.sha256(t.encode()).digest() in keys
    assert row[0] and row[1] and row[0] != row[1]
    raw = b"".join(p.read_bytes() for p in server.datadir.iterdir() if p.name.startswith("tagarela.db"))
    for t in tokens:
        assert t.encode() not in raw, "a token in the clear on disk"


@async_test(timeout=60)
async def test_identity_survives_a_restart(tmp_path):
    srv = Server(tmp_path / "s").start()
    try:
        a, b, public, private = await private_pair(srv.ws_port)
        token = b.token
        await close_all([a, b])
        assert srv.terminate() == 0
        srv = Server(tmp_path / "s").start()
        c = await Client.connect(srv.ws_port)
        await c.login("bob", extra={"token": token, "last_id": 0})
        assert c.token == token
        assert await history_of(c) == [public, private]
        await c.close()
    finally:
        srv.terminate()


@async_test(timeout=60)
async def test_unused_identities_expire_with_the_history_age(make_server):
    # 0.00003 days: 2.6 s; the retention pass runs every second
    srv = make_server("--keep-days", "0.00003")
    a = await Client.connect(srv.ws_port)
    await a.login("ana")
    await a.close()
    kept = await Client.connect(srv.ws_port)
    await kept.login("kept")
    token = kept.token
    for _ in range(3):      # in use: kept alive by each login
        await asyncio.sleep(1.2)
        await kept.close()
        kept = await Client.connect(srv.ws_port)
        await kept.login("kept", extra={"token": token})
        assert kept.token == token
    await kept.close()
    await asyncio.sleep(5)
    c = await Client.connect(srv.ws_port)
    await c.login("ana", extra={"token": a.token})
    assert c.token != a.token
    await c.close()
    con = sqlite3.connect(str(srv.datadir / "tagarela.db"))
    try:
        n = con.execute("SELECT count(*) FROM identities").fetchone()[0]
    finally:
        con.close()
    assert n == 1, "only the identity just made is left"


OLD_SCHEMA = """
CREATE TABLE rooms (room TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE messages (room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,
  from_uid INTEGER NOT NULL, to_uid INTEGER NOT NULL, from_name TEXT, to_name TEXT,
  json TEXT NOT NULL, PRIMARY KEY (room, id)) WITHOUT ROWID;
CREATE INDEX messages_ts ON messages(ts);
"""


@async_test(timeout=60)
async def test_database_of_the_previous_version_is_migrated(tmp_path):
    """Private rows written before identities belong to no one now (they were
    matched by name); public rows are unchanged; ids go on."""
    data = tmp_path / "s" / "data"
    data.mkdir(parents=True)
    now = int(time.time())
    pub = {"type": "say", "from_uid": 11, "to_uid": "all", "content": "old public",
           "time": "2026-01-01 10:00:00", "id": 1}
    priv = {"type": "say", "from_uid": 11, "to_uid": 12, "content": "old private",
            "time": "2026-01-01 10:00:01", "id": 2}
    con = sqlite3.connect(str(data / "tagarela.db"))
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO rooms VALUES('1', 2)")
    con.execute("INSERT INTO messages VALUES('1',1,?,11,0,'alice',NULL,?)",
                (now, json.dumps(pub, separators=(",", ":"))))
    con.execute("INSERT INTO messages VALUES('1',2,?,11,12,'alice','bob',?)",
                (now, json.dumps(priv, separators=(",", ":"))))
    con.commit()
    con.close()
    srv = Server(tmp_path / "s").start()
    try:
        for name in ("bob", "alice"):
            c = await Client.connect(srv.ws_port)
            await c.login(name, extra={"last_id": 0, "history_names": True})
            got = await history_of(c)
            assert [m["content"] for m in got] == ["old public"], got
            assert got[0]["from_name"] == "alice"
            await c.close()
        c = await Client.connect(srv.ws_port)
        await c.login("carol")
        await history_of(c)
        await c.say("new")
        assert (await c.expect("say"))["id"] == 3
        await c.close()
    finally:
        assert srv.terminate() == 0
    con = sqlite3.connect(str(data / "tagarela.db"))
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(messages)")]
        assert "from_ident" in cols and "to_ident" in cols
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    # and it opens again, already migrated
    srv = Server(tmp_path / "s").start()
    assert srv.terminate() == 0


# -- operator-signed names: --auth-key -----------------------------------------

def run_serve(tmp_path, *args):
    return subprocess.run([BIN, "serve", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--data", str(tmp_path / "d")] + list(args),
                          capture_output=True, text=True, timeout=20)


def test_auth_key_file_must_be_readable_and_not_empty(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    newline = tmp_path / "newline"
    newline.write_bytes(b"\n")
    huge = tmp_path / "huge"
    huge.write_bytes(b"k" * 5000)
    for path in (tmp_path / "missing", empty, newline, tmp_path, huge):
        r = run_serve(tmp_path, "--auth-key", str(path))
        assert r.returncode == 2, (path, r)
        assert "--auth-key" in r.stderr and str(path) in r.stderr, r.stderr
        assert "listening" not in r.stdout


def signed_server(make_server, tmp_path, key=SECRET):
    f = tmp_path / "auth.key"
    f.write_bytes(key + b"\n")      # the final line break is not part of the key
    return make_server("--auth-key", str(f))


@async_test()
async def test_signed_login_required_and_connection_kept(make_server, tmp_path):
    srv = signed_server(make_server, tmp_path)
    c = await Client.connect(srv.ws_port)
    exp = int(time.time()) + 600
    bad = [
        None,
        "not a jwt",
        mint({"sub": "u1", "exp": exp}, key=b"wrong key"),
        mint({"sub": "u1", "exp": int(time.time()) - 120}),                 # expired
        mint({"sub": "u1"}),                                                 # no exp
        mint({"sub": "u1", "exp": exp, "nbf": int(time.time()) + 600}),      # not yet
        mint({"sub": "u1", "exp": exp}, header={"alg": "none"}).rsplit(".", 1)[0] + ".",
        mint({"sub": "u1", "exp": exp}, header={"alg": "HS512"}),
        mint({"exp": exp}),                                                  # no sub
        mint({"sub": "u1", "exp": exp, "rooms": ["2"]}),                     # not room 1
        "A" * 20000,
    ]
    for tok in bad:
        msg = {"name": "ana"}
        if tok is not None:
            msg["token"] = tok
        err = await login_raw(c, msg)
        check_error(err, "bad_token")
    # the same connection, a good token: the name is the token's
    good = mint({"sub": "u1", "name": "Ana Paula", "exp": exp, "rooms": ["2", 1]})
    ul, me, session = await login_raw(c, {"name": "ignored", "token": good})
    assert me["name"] == "Ana Paula"
    assert session["token"] == good
    # no name claim: the sub is the name
    d = await Client.connect(srv.ws_port)
    ul, me, session = await login_raw(d, {"token": mint({"sub": "bia", "exp": exp}), "room_id": 1})
    assert me["name"] == "bia"
    await close_all([c, d])


@async_test()
async def test_signed_private_history_follows_the_sub(make_server, tmp_path):
    srv = signed_server(make_server, tmp_path)
    exp = int(time.time()) + 600
    a, b, public, private = await private_pair(
        srv.ws_port, names=("x", "y"),
        extra_a={"token": mint({"sub": "alice-1", "name": "alice", "exp": exp})},
        extra_b={"token": mint({"sub": "bob-7", "name": "bob", "exp": exp})})
    await close_all([a, b])
    # someone else signed in under the name bob: nothing of bob's
    imp = await Client.connect(srv.ws_port)
    await login_raw(imp, {"token": mint({"sub": "mallory", "name": "bob", "exp": exp}), "last_id": 0})
    assert [m["content"] for m in await history_of(imp)] == ["hello all"]
    # bob, with a fresh token: his history
    own = await Client.connect(srv.ws_port)
    await login_raw(own, {"token": mint({"sub": "bob-7", "exp": exp, "iat": 1}), "last_id": 0})
    assert await history_of(own) == [public, private]
    await close_all([imp, own])


@async_test(timeout=60)
async def test_keep_identities_bounds_the_table(make_server):
    # 0.0002 days: 17 s of age, so nothing expires by age here; the
    # retention pass runs every ~4 s and applies the count bound
    srv = make_server("--keep-days", "0.0002", "--keep-identities", "2")
    tokens = []
    for i in range(5):
        c = await Client.connect(srv.ws_port)
        await c.login("u%d" % i)
        tokens.append(c.token)
        await c.close()
        await asyncio.sleep(1.1)    # distinct last-use seconds: a clear order
    con = sqlite3.connect(str(srv.datadir / "tagarela.db"))
    try:
        deadline = time.monotonic() + 15
        while con.execute("SELECT count(*) FROM identities").fetchone()[0] > 2:
            assert time.monotonic() < deadline, "the bound was never applied"
            await asyncio.sleep(0.5)
    finally:
        con.close()
    # the most recently used are the ones kept (checked first: the logins
    # with forgotten tokens make new identities, which a later pass may
    # keep instead)
    for i, tok in reversed(list(enumerate(tokens))):
        c = await Client.connect(srv.ws_port)
        await c.login("again", extra={"token": tok})
        assert (c.token == tok) == (i >= 3), i
        await c.close()
