"""The operator's controls under /admin/ on the web port (issue 14): off
without --admin-token, the bearer token, the JSON API (rooms, users, kick,
bans, delete), its errors, its log lines, and the token's reload."""

import http.client
import json
import signal
import time

import pytest
import websockets

from helpers import Client, async_test, close_all
from test_operating import scrape, wait_for
from wsraw import RawWS, handshake_request

TOKEN = "tok-0123456789abcdef-operator"


def request(port, method, path, body=None, token=TOKEN, raw_body=None, headers=None):
    """(status, headers dict (lower-case names), parsed JSON body or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    text = r.read().decode()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    if hdrs.get("content-type") == "application/json":
        return r.status, hdrs, json.loads(text)
    return r.status, hdrs, text


@pytest.fixture
def token_file(tmp_path):
    p = tmp_path / "admin.token"
    p.write_text(TOKEN + "\n")
    return p


def admin_server(make_server, token_file, *args):
    return make_server("--admin-token", token_file, "--log-format", "json", *args)


async def two_in_room(srv):
    """ana and bob logged in to room 1, ana having heard bob arrive."""
    a = await Client.connect(srv.ws_port)
    await a.login("ana")
    b = await Client.connect(srv.ws_port)
    await b.login("bob")
    await a.expect("login")
    return a, b


def log_events(srv, event):
    out = []
    for line in srv.stderr(1 << 20).splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("event") == event:
                out.append(e)
    return out


# ---- on, off, and the token ---------------------------------------------------------

def test_admin_is_off_without_a_token(server):
    for method, path in (("GET", "/admin/rooms"), ("POST", "/admin/kick"), ("GET", "/admin/")):
        status, _, _ = request(server.http_port, method, path, body={"uid": 1})
        assert status == 404, (method, path)


def test_a_wrong_or_missing_token_is_401(make_server, token_file):
    srv = admin_server(make_server, token_file)
    for tok in (None, "", TOKEN + "x", TOKEN[:-1], "Basic " + TOKEN):
        status, hdrs, body = request(srv.http_port, "GET", "/admin/rooms", token=tok)
        assert status == 401, tok
        assert hdrs["www-authenticate"].startswith("Bearer"), hdrs
        assert "token" in body["error"]
    status, _, body = request(srv.http_port, "GET", "/admin/rooms")
    assert status == 200 and body["rooms"] == [], body
    assert log_events(srv, "admin_denied")
    assert TOKEN not in srv.stderr(1 << 20)


def test_behind_a_trusted_proxy_the_log_names_the_operator(make_server, token_file):
    srv = admin_server(make_server, token_file, "--trusted-proxy", "127.0.0.1")
    fwd = {"X-Forwarded-For": "198.51.100.7"}
    assert request(srv.http_port, "GET", "/admin/rooms", headers=fwd)[0] == 200
    assert request(srv.http_port, "GET", "/admin/rooms", token="wrong-token-xxxxxxxx", headers=fwd)[0] == 401
    assert wait_for(lambda: log_events(srv, "admin_denied"))
    assert log_events(srv, "admin")[0]["admin"] == "198.51.100.7"
    assert log_events(srv, "admin_denied")[0]["addr"] == "198.51.100.7"
    # from an untrusted peer the header is not believed
    srv2 = admin_server(make_server, token_file)
    assert request(srv2.http_port, "GET", "/admin/rooms", headers=fwd)[0] == 200
    assert log_events(srv2, "admin")[0]["admin"] == "127.0.0.1"


def test_bad_token_files_are_refused_at_start(tmp_path):
    import subprocess
    from server_proc import BIN
    short = tmp_path / "short"
    short.write_text("abc\n")
    for path, says in ((short, "fewer than 16"), (tmp_path / "none", "cannot read")):
        r = subprocess.run([BIN, "serve", "--admin-token", str(path), "--check-config"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and says in r.stderr, r.stderr


def test_methods_json_and_sizes_are_checked(make_server, token_file):
    srv = admin_server(make_server, token_file)
    p = srv.http_port
    status, hdrs, body = request(p, "POST", "/admin/rooms", body={})
    assert status == 405 and hdrs["allow"] == "GET", (status, hdrs)
    status, hdrs, _ = request(p, "GET", "/admin/kick")
    assert status == 405 and hdrs["allow"] == "POST"
    status, hdrs, _ = request(p, "PUT", "/admin/bans", body={})
    assert status == 405 and hdrs["allow"] == "GET, POST"
    status, _, body = request(p, "POST", "/admin/kick", raw_body="{not json")
    assert status == 400 and body["error"] == "the body is not valid JSON"
    status, _, body = request(p, "POST", "/admin/kick", raw_body="[1]")
    assert status == 400 and "object" in body["error"]
    status, _, body = request(p, "POST", "/admin/kick", body={"uid": "x"})
    assert status == 400 and "uid" in body["error"]
    status, _, body = request(p, "POST", "/admin/bans", body={"address": "999.1.1.1", "seconds": 5})
    assert status == 400 and "address" in body["error"]
    status, _, body = request(p, "POST", "/admin/bans", body={"name": "x", "seconds": 0})
    assert status == 400 and "seconds" in body["error"]
    status, _, body = request(p, "POST", "/admin/delete", body={"room": "", "id": 1})
    assert status == 400 and "room" in body["error"]
    status, _, body = request(p, "GET", "/admin/users?limit=5000")
    assert status == 400
    status, _, _ = request(p, "POST", "/admin/kick", raw_body="x" * 5000)
    assert status == 413
    status, _, body = request(p, "GET", "/admin/nothing")
    assert status == 404 and "error" in body
    status, _, _ = request(p, "DELETE", "/admin/bans/12345")
    assert status == 404
    assert srv.alive()


# ---- lists ------------------------------------------------------------------------

@async_test()
async def test_rooms_and_users_are_listed_in_pages(make_server, token_file):
    srv = admin_server(make_server, token_file)
    clients = []
    for i, room in enumerate(["r1", "r1", "r2"]):
        c = await Client.connect(srv.ws_port)
        await c.login("user%d" % i, room_id=room)
        clients.append(c)
    await clients[0].say("hello")
    await clients[0].expect("login")            # user1's arrival
    await clients[0].expect("say")
    status, _, body = request(srv.http_port, "GET", "/admin/rooms")
    assert status == 200 and body["total"] == 2, body
    rooms = {r["id"]: r for r in body["rooms"]}
    assert rooms["r1"]["members"] == 2 and rooms["r1"]["last_id"] == 1
    assert rooms["r2"]["members"] == 1 and rooms["r2"]["last_id"] == 0
    status, _, body = request(srv.http_port, "GET", "/admin/users")
    assert status == 200 and body["total"] == 3
    users = {u["uid"]: u for u in body["users"]}
    assert set(users) == {c.uid for c in clients}
    u = users[clients[2].uid]
    assert u["name"] == "user2" and u["room"] == "r2" and u["address"] == "127.0.0.1"
    assert abs(u["since"] / 1000 - time.time()) < 30
    seen = []
    for offset in range(0, 4):
        status, _, body = request(srv.http_port, "GET", "/admin/users?offset=%d&limit=1" % offset)
        assert status == 200 and body["limit"] == 1
        seen += [x["uid"] for x in body["users"]]
    assert sorted(seen) == sorted(users), "pages of one cover every user once"
    await close_all(clients)


# ---- kick ---------------------------------------------------------------------------

@pytest.mark.parametrize("threads", ["1", "2"])
@async_test()
async def test_kick_reaches_the_user_with_its_reason(make_server, token_file, threads):
    srv = admin_server(make_server, token_file, "--threads", threads)
    a, b = await two_in_room(srv)
    status, _, body = request(srv.http_port, "POST", "/admin/kick",
                              body={"uid": b.uid, "reason": "spam, é"})
    assert status == 200 and body == {"kicked": b.uid}
    msg = await b.recv()
    assert msg == {"type": "error", "code": "kicked", "message": "spam, é"}, msg
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        await b.recv()
    assert b.ws.close_code == 1008 and "kicked" in b.ws.close_reason
    out = await a.expect("logout")
    assert out["uid"] == b.uid
    status, _, body = request(srv.http_port, "POST", "/admin/kick", body={"uid": b.uid})
    assert status == 404 and body["error"] == "no such user"
    ev = [e for e in log_events(srv, "admin") if e["action"] == "kick"]
    assert ev[0]["admin"] == "127.0.0.1" and ev[0]["target"] == "uid:%d" % b.uid
    assert ev[0]["status"] == "200" and ev[1]["status"] == "404"
    await close_all([a])


# ---- bans ---------------------------------------------------------------------------

def handshake_status(port, path="/"):
    ws = RawWS(port, path=path, handshake=False)
    req, _ = handshake_request(path)
    ws.send_raw(req)
    status = ws.read_http_response(read_body=False).status
    ws.close()
    return status


@async_test()
async def test_a_banned_address_is_refused_at_the_handshake(make_server, token_file):
    srv = admin_server(make_server, token_file)
    held = await Client.connect(srv.ws_port)
    await held.login("stays")
    status, _, body = request(srv.http_port, "POST", "/admin/bans",
                              body={"address": "127.0.0.0/8", "seconds": 600, "reason": "flood"})
    assert status == 200 and body["id"] >= 1
    ban_id = body["id"]
    assert handshake_status(srv.ws_port) == 403
    assert handshake_status(srv.http_port, "/ws") == 403
    # the web page and the API stay reachable; connections already open stay
    assert request(srv.http_port, "GET", "/admin/bans")[0] == 200
    await held.say("still here")
    assert (await held.expect("say"))["content"] == "still here"
    status, _, body = request(srv.http_port, "GET", "/admin/bans")
    assert body["bans"] == [{"id": ban_id, "kind": "address", "address": "127.0.0.0/8",
                             "reason": "flood", "until": body["bans"][0]["until"]}]
    assert request(srv.http_port, "DELETE", "/admin/bans/%d" % ban_id)[0] == 200
    assert handshake_status(srv.ws_port) == 101
    assert request(srv.http_port, "GET", "/admin/bans")[2]["bans"] == []
    assert any(e.get("addr") == "127.0.0.1" for e in log_events(srv, "banned"))
    await close_all([held])


@async_test()
async def test_a_ban_ends_at_its_time(make_server, token_file):
    srv = admin_server(make_server, token_file)
    status, _, _ = request(srv.http_port, "POST", "/admin/bans", body={"address": "127.0.0.1", "seconds": 1})
    assert status == 200
    assert handshake_status(srv.ws_port) == 403
    assert wait_for(lambda: handshake_status(srv.ws_port) == 101, timeout=5)
    assert request(srv.http_port, "GET", "/admin/bans")[2]["bans"] == []


@async_test()
async def test_a_banned_name_cannot_log_in(make_server, token_file):
    srv = admin_server(make_server, token_file)
    status, _, body = request(srv.http_port, "POST", "/admin/bans", body={"name": " Troll ", "seconds": 600})
    assert status == 200
    for name in ("Troll", "troll", "  TROLL"):
        c = await Client.connect(srv.ws_port)
        await c.send({"type": "login", "name": name})
        err = await c.error("banned")
        assert err["message"], err
        await c.close()
    ok = await Client.connect(srv.ws_port)
    await ok.login("Trolley")
    await ok.close()
    # names are never logged, not even the operator's ban of one
    assert "Troll" not in srv.stderr(1 << 20)
    assert [e["target"] for e in log_events(srv, "admin")] == ["name"]


@async_test()
async def test_bans_are_kept_across_sighup_and_restart(make_server, token_file, tmp_path):
    data = tmp_path / "shared-data"
    srv = admin_server(make_server, token_file, "--data", data)
    request(srv.http_port, "POST", "/admin/bans", body={"name": "mallory", "seconds": 600, "reason": "r"})
    request(srv.http_port, "POST", "/admin/bans", body={"address": "2001:db8::1", "seconds": 600})
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: log_events(srv, "reloaded"))
    bans = request(srv.http_port, "GET", "/admin/bans")[2]["bans"]
    assert [b["kind"] for b in bans] == ["name", "address"]
    assert srv.terminate() == 0
    srv2 = admin_server(make_server, token_file, "--data", data)
    assert request(srv2.http_port, "GET", "/admin/bans")[2]["bans"] == bans
    c = await Client.connect(srv2.ws_port)
    await c.send({"type": "login", "name": "Mallory"})
    await c.error("banned")
    await c.close()


# ---- delete -------------------------------------------------------------------------

async def history_of(port, name, room="1"):
    c = await Client.connect(port)
    await c.login(name, room_id=room)
    msg = await c.recv()
    await c.close()
    assert msg["type"] == "history", msg
    return msg["messages"]


@pytest.mark.parametrize("threads", ["1", "2"])
@async_test()
async def test_delete_reaches_the_room_and_leaves_the_history(make_server, token_file, threads):
    srv = admin_server(make_server, token_file, "--threads", threads)
    a, b = await two_in_room(srv)
    ids = []
    for text in ("one", "two", "three"):
        await a.say(text)
        ids.append((await a.expect("say"))["id"])
        assert (await b.expect("say"))["content"] == text
    other = await Client.connect(srv.ws_port)       # another room hears nothing
    await other.login("olga", room_id="elsewhere")
    status, _, body = request(srv.http_port, "POST", "/admin/delete", body={"room": "1", "id": ids[1]})
    assert status == 200 and body == {"deleted": ids[1]}
    assert await a.recv() == {"type": "delete", "id": ids[1]}
    assert await b.recv() == {"type": "delete", "id": ids[1]}
    await other.silent(0.3)
    hist = await history_of(srv.ws_port, "carl")
    assert [m["id"] for m in hist] == [ids[0], ids[2]]
    await b.expect("login")
    await b.expect("logout")
    # numbers name the same room as strings; twice is 404
    status, _, _ = request(srv.http_port, "POST", "/admin/delete", body={"room": 1, "id": ids[1]})
    assert status == 404
    status, _, _ = request(srv.http_port, "POST", "/admin/delete", body={"room": "nowhere", "id": 1})
    assert status == 404
    # a room with nobody in it: deleted from the history all the same
    status, _, _ = request(srv.http_port, "POST", "/admin/delete", body={"room": 1, "id": ids[0]})
    assert status == 200
    assert [m["id"] for m in await history_of(srv.ws_port, "dora")] == [ids[2]]
    ev = [e for e in log_events(srv, "admin") if e["action"] == "delete"]
    assert ev[0]["target"] == "room:1/id:%d" % ids[1] and ev[0]["status"] == "200"
    await close_all([a, b, other])


# ---- the token's reload -----------------------------------------------------------

def test_sighup_reads_the_token_again(make_server, token_file):
    srv = admin_server(make_server, token_file)
    assert request(srv.http_port, "GET", "/admin/rooms")[0] == 200
    token_file.write_text("a-brand-new-token-0123456789\n")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: log_events(srv, "reloaded"))
    assert request(srv.http_port, "GET", "/admin/rooms")[0] == 401
    assert request(srv.http_port, "GET", "/admin/rooms", token="a-brand-new-token-0123456789")[0] == 200
    assert "a-brand-new-token" not in srv.stderr(1 << 20)


# ---- /metrics: the latency histograms ---------------------------------------------

HISTOGRAMS = ("tagarela_delivery_seconds", "tagarela_history_append_seconds",
              "tagarela_history_commit_seconds")


def buckets(values, name):
    """[(le, cumulative count)] in the order of le, +Inf last."""
    out = []
    for key, v in values.items():
        if key.startswith(name + '_bucket{le="'):
            le = key[len(name) + 12:-2]
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


@pytest.mark.parametrize("threads", ["1", "2"])
@async_test()
async def test_latency_histograms_count_after_traffic(make_server, threads):
    srv = make_server("--threads", threads)
    before, types = scrape(srv.http_port)
    for name in HISTOGRAMS:
        assert types[name] == "histogram", name
        assert before[name + "_count"] == 0 and before[name + "_sum"] == 0
        b = buckets(before, name)
        assert len(b) == 17 and b[-1][0] == float("inf")
    a, b = await two_in_room(srv)
    for i in range(10):
        await a.say("m%d" % i)
        await a.expect("say")
        await b.expect("say")
    after = wait_for(lambda: (lambda v: v if v["tagarela_history_append_seconds_count"] == 10 else None)(
        scrape(srv.http_port)[0]))
    assert after, scrape(srv.http_port)[0]
    # each say was written to both: its last write is one observation
    assert after["tagarela_delivery_seconds_count"] >= 10
    assert 1 <= after["tagarela_history_commit_seconds_count"] <= 10 + 4
    for name in HISTOGRAMS:
        bs = buckets(after, name)
        counts = [c for _, c in bs]
        assert counts == sorted(counts), "buckets are cumulative: %r" % bs
        assert bs[-1][1] == after[name + "_count"]
        assert 0 < after[name + "_sum"] < after[name + "_count"] * 10
    await close_all([a, b])
