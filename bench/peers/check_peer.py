#!/usr/bin/python3
"""check_peer.py -- does a benchmark peer speak tagarela's wire contract?

Starts the server named on the command line on a free port, with its
default limits, and runs the seed session (two clients; mynick logs in and
says "oi, pessoal !") and the contract's other rules against it: key order,
HTML escaping and <br />, private messages, rooms, logout, error codes and
the rate limit. The same checks run against tagarela itself, which is how we
know they are the contract and not one peer's reading of it.

    /usr/bin/python3 bench/peers/check_peer.py node-ws uws tagarela

Needs Debian's python3-websockets (10.x); tagarela is $TAGARELA_BIN or
build/tagarela. Ends with a "N passed, N failed" line; exit status 1 when
something failed.
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
KEYS = {
    "user_list": ["type", "user_list"],
    "login": ["type", "uid", "name", "time"],
    "say": ["type", "from_uid", "to_uid", "content", "time"],
    "logout": ["type", "uid", "time"],
    "error": ["type", "code", "message"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server):
    """Starts a server on a free port; returns (process, url, cleanup)."""
    port = free_port()
    tmp = None
    if server == "tagarela":
        tmp = tempfile.mkdtemp(prefix="check-peer-")
        binary = os.environ.get("TAGARELA_BIN", os.path.join(ROOT, "build", "tagarela"))
        cmd = [binary, "serve", "--ws", "127.0.0.1:%d" % port,
               "--http", "127.0.0.1:%d" % free_port(), "--data", tmp,
               "--history", "0"]     # the peers keep no history
    else:
        cmd = ["node", os.path.join(HERE, server, "server.js"), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited: %s" % (server, proc.stderr.read().decode()))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)

    def cleanup():
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return proc, "ws://127.0.0.1:%d/" % port, cleanup


class Client:
    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def open(cls, url):
        return cls(await websockets.connect(url, compression=None, max_size=None))

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def recv(self, timeout=2.0):
        msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        expected = KEYS.get(msg.get("type"))
        assert expected, "unknown message %r" % msg
        # The contract fixes the keys and their order; more may only follow.
        assert list(msg)[:len(expected)] == expected, "keys out of order: %r" % msg
        if "time" in msg:
            assert TIME_RE.match(msg["time"]), msg
        return msg

    async def nothing(self, timeout=0.3):
        try:
            msg = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError("unexpected message %r" % msg)

    async def login(self, name, **extra):
        await self.send(dict(type="login", name=name, **extra))
        users = await self.recv()
        assert users["type"] == "user_list", users
        me = await self.recv()
        assert me["type"] == "login" and me["uid"] == users["user_list"][-1]["uid"], me
        return users, me

    async def error(self, code):
        msg = await self.recv()
        assert msg["type"] == "error" and msg["code"] == code, "want %s: %r" % (code, msg)
        assert isinstance(msg["message"], str) and msg["message"], msg

    async def close(self):
        await self.ws.close()


async def seed_session(url):
    other = await Client.open(url)
    await other.login("visitante")
    me = await Client.open(url)
    await me.send({"type": "login", "name": "mynick"})
    users = await me.recv()
    assert [u["name"] for u in users["user_list"]] == ["visitante", "mynick"], users
    assert all(type(u["uid"]) is int and 0 < u["uid"] < 2 ** 32 for u in users["user_list"])
    assert list(users["user_list"][0]) == ["uid", "name"], users
    mine = await me.recv()
    theirs = await other.recv()
    assert mine["type"] == theirs["type"] == "login", (mine, theirs)
    assert mine["uid"] == theirs["uid"] == users["user_list"][1]["uid"], (mine, theirs)
    assert mine["name"] == "mynick", mine
    await me.send({"type": "say", "to_uid": "all", "content": "oi, pessoal !"})
    for c in (me, other):
        say = await c.recv()
        assert say["type"] == "say" and say["from_uid"] == mine["uid"], say
        assert say["to_uid"] == "all" and say["content"] == "oi, pessoal !", say
    await me.close()
    bye = await other.recv()
    assert bye["type"] == "logout" and bye["uid"] == mine["uid"], bye
    await other.close()


async def escaping(url):
    a = await Client.open(url)
    _, me = await a.login("  <i>O'Neil & \"co\"</i>\u00a0 ")
    assert me["name"] == "&lt;i&gt;O&#039;Neil &amp; &quot;co&quot;&lt;/i&gt;", me
    await a.send({"type": "say", "content": "a\r\nb\n\rc\nd\re\n\nf <br />"})
    say = await a.recv()
    assert say["content"] == "a<br />\r\nb<br />\n\rc<br />\nd<br />\re<br />\n<br />\nf &lt;br /&gt;", say
    assert say["to_uid"] == "all", say
    await a.close()


async def private_and_rooms(url):
    a, b, c, d = [await Client.open(url) for _ in range(4)]
    _, ma = await a.login("a", room_id=7)
    await b.send({"type": "login", "name": "b", "room_id": "7"})
    users = await b.recv()
    assert [u["name"] for u in users["user_list"]] == ["a", "b"], users
    mb = await b.recv()
    assert (await a.recv())["uid"] == mb["uid"]
    await c.login("c", room_id="7")
    await a.recv()
    await b.recv()
    await d.login("d", room_id="other")
    # Private say: to the target and echoed to the sender, to_uid a number.
    await a.send({"type": "say", "to_uid": str(mb["uid"]), "content": "psst"})
    for cl in (b, a):
        say = await cl.recv()
        assert say["to_uid"] == mb["uid"] and say["from_uid"] == ma["uid"], say
    await c.nothing()
    # To oneself: delivered once.
    await a.send({"type": "say", "to_uid": ma["uid"], "content": "me"})
    assert (await a.recv())["content"] == "me"
    await a.nothing()
    # Rooms do not leak.
    await a.send({"type": "say", "content": "room 7"})
    for cl in (a, b, c):
        assert (await cl.recv())["content"] == "room 7"
    await d.nothing()
    # Someone of another room is no_such_user.
    await d.send({"type": "say", "to_uid": mb["uid"], "content": "x"})
    await d.error("no_such_user")
    for cl in (a, b, c, d):
        await cl.close()


async def errors(url):
    a = await Client.open(url)
    await a.send({"type": "say", "content": "x"})
    await a.error("not_logged_in")
    for raw, code in (("{", "bad_json"), ("[1]", "bad_json"), ("42", "bad_json"),
                      ('{"name":"x"}', "bad_json"), ('{"type":"dance"}', "unknown_type"),
                      ('{"type":"login"}', "bad_name"), ('{"type":"login","name":" \\t "}', "bad_name"),
                      ('{"type":"login","name":"a\\u0001b"}', "bad_name"),
                      ('{"type":"login","name":"%s"}' % ("x" * 33), "bad_name"),
                      ('{"type":"login","name":"x","room_id":true}', "bad_json"),
                      ('{"type":"login","name":"x","room_id":""}', "bad_json"),
                      ('{"type":"login","name":"x","room_id":"%s"}' % ("r" * 65), "bad_json")):
        await a.send(raw)
        await a.error(code)
    await a.send(b"\x01\x02")
    await a.error("bad_json")
    await a.send({"type": "pong"})
    await a.nothing(0.2)
    await a.login("\U0001F600" * 32)         # 32 code points, 64 UTF-16 units
    await a.send({"type": "login", "name": "again"})
    await a.error("already_logged_in")
    for content, code in (("", "bad_content"), (5, "bad_content"),
                          ("\U0001F600" * 4097, "bad_content")):
        await a.send({"type": "say", "content": content})
        await a.error(code)
    await a.send({"type": "say", "content": "\U0001F600" * 4096})
    assert (await a.recv())["type"] == "say"
    for to, code in ((True, "bad_json"), (None, "bad_json"), ("nobody", "no_such_user"),
                     (0, "no_such_user"), (4294967296, "no_such_user")):
        await a.send({"type": "say", "to_uid": to, "content": "x"})
        await a.error(code)
    await a.close()


async def rate_limit(url):
    a = await Client.open(url)
    await a.login("flood")
    for i in range(150):
        await a.send({"type": "say", "content": str(i)})
    says = limited = 0
    while says + limited < 150:
        msg = await a.recv()
        if msg["type"] == "say":
            says += 1
        else:
            assert msg["code"] == "rate_limited", msg
            limited += 1
    # Default burst is 100 (the login took one token; a few refill meanwhile).
    assert 95 <= says <= 120 and limited > 0, (says, limited)
    await a.close()


async def ws_path(url):
    a = await Client.open(url + "ws")
    await a.login("via-ws-path")
    await a.close()


CHECKS = [seed_session, escaping, private_and_rooms, errors, rate_limit, ws_path]


def main(servers):
    passed = failed = 0
    for server in servers:
        proc, url, cleanup = start(server)
        try:
            for check in CHECKS:
                try:
                    asyncio.run(asyncio.wait_for(check(url), 20))
                    passed += 1
                    print("ok   %s %s" % (server, check.__name__))
                except Exception as e:      # report every check, then the total
                    failed += 1
                    print("FAIL %s %s: %r" % (server, check.__name__, e))
            if proc.poll() is not None:
                failed += 1
                print("FAIL %s died: %s" % (server, proc.stderr.read().decode()))
        finally:
            cleanup()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["node-ws", "uws"]))
