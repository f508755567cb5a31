"""Shared helpers: an asyncio test runner (no pytest-asyncio on Debian 12),
a chat client on top of the `websockets` library (10.x API), and checks of
the contract's message shapes."""

import asyncio
import datetime
import functools
import json
import re

import websockets
import websockets.exceptions

from wsraw import parse_json_strict

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")

USER_LIST_KEYS = ["type", "user_list"]
USER_KEYS = ["uid", "name"]
LOGIN_KEYS = ["type", "uid", "name", "time"]
SAY_KEYS = ["type", "from_uid", "to_uid", "content", "time"]
LOGOUT_KEYS = ["type", "uid", "time"]
ERROR_KEYS = ["type", "code", "message"]


def async_test(timeout=30):
    """Runs an async test function in a fresh event loop with an overall
    deadline, so a missing message can never hang the suite."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            async def main():
                return await asyncio.wait_for(fn(*args, **kwargs), timeout)
            return asyncio.run(main())
        return wrapper
    return deco


def check_keys(obj, expected):
    """The contract fixes these keys in this order; extra keys may only be
    appended after them."""
    keys = list(obj.keys())
    assert keys[:len(expected)] == expected, \
        "keys %r, expected %r (in this order) in %r" % (keys, expected, obj)


def check_uid(uid):
    assert type(uid) is int, "uid must be a JSON integer: %r" % (uid,)
    assert 0 < uid < 2 ** 32, "uid out of range: %r" % (uid,)


def check_time(t, now=None, slack=5.0):
    assert isinstance(t, str) and TIME_RE.match(t), "bad time %r" % (t,)
    parsed = datetime.datetime.strptime(t, "%Y-%m-%d %H:%M:%S")
    now = now or datetime.datetime.now()
    delta = abs((parsed - now.replace(microsecond=0)).total_seconds())
    assert delta <= slack, "time %r is %.0fs away from local time %s" % (t, delta, now)


def check_user_list(msg):
    assert msg["type"] == "user_list", msg
    check_keys(msg, USER_LIST_KEYS)
    assert isinstance(msg["user_list"], list), msg
    for u in msg["user_list"]:
        check_keys(u, USER_KEYS)
        check_uid(u["uid"])
        assert isinstance(u["name"], str), u
    uids = [u["uid"] for u in msg["user_list"]]
    assert len(uids) == len(set(uids)), "duplicate uids in %r" % msg


def check_login(msg, uid=None, name=None):
    assert msg["type"] == "login", msg
    check_keys(msg, LOGIN_KEYS)
    check_uid(msg["uid"])
    if uid is not None:
        assert msg["uid"] == uid, msg
    if name is not None:
        assert msg["name"] == name, msg
    check_time(msg["time"])


def check_say(msg, from_uid=None, to_uid=None, content=None):
    assert msg["type"] == "say", msg
    check_keys(msg, SAY_KEYS)
    check_uid(msg["from_uid"])
    if from_uid is not None:
        assert msg["from_uid"] == from_uid, msg
    if to_uid is not None:
        assert msg["to_uid"] == to_uid and type(msg["to_uid"]) is type(to_uid), \
            "to_uid %r, expected %r" % (msg["to_uid"], to_uid)
    if content is not None:
        assert msg["content"] == content, "content %r, expected %r" % (
            msg["content"][:200], content[:200])
    check_time(msg["time"])


def check_logout(msg, uid=None):
    assert msg["type"] == "logout", msg
    check_keys(msg, LOGOUT_KEYS)
    check_uid(msg["uid"])
    if uid is not None:
        assert msg["uid"] == uid, msg
    check_time(msg["time"])


def check_error(msg, code=None):
    assert msg["type"] == "error", "expected an error, got %r" % (msg,)
    check_keys(msg, ERROR_KEYS)
    assert isinstance(msg["code"], str) and isinstance(msg["message"], str), msg
    if code is not None:
        if isinstance(code, (tuple, list, set)):
            assert msg["code"] in code, "error code %r, expected one of %r" % (
                msg["code"], code)
        else:
            assert msg["code"] == code, "error code %r, expected %r (%r)" % (
                msg["code"], code, msg)


def check_session(msg, uid):
    """The session message that follows a login: this client's uid and a
    token to continue its identity with. Returns the token."""
    check_keys(msg, ["type", "uid", "token"])
    assert msg["type"] == "session" and msg["uid"] == uid, msg
    assert isinstance(msg["token"], str) and msg["token"], msg
    return msg["token"]


class Client:
    """A chat client on the websockets library. Every receive has a timeout."""

    def __init__(self, ws):
        self.ws = ws
        self.uid = None
        self.name = None
        self.token = None

    @classmethod
    async def connect(cls, port, path="/", compression=None, timeout=5, **kw):
        kw.setdefault("ping_interval", None)   # the server pings; we only answer
        kw.setdefault("max_size", 16 * 1024 * 1024)
        kw.setdefault("close_timeout", 2)
        ws = await asyncio.wait_for(
            websockets.connect("ws://127.0.0.1:%d%s" % (port, path),
                               compression=compression, open_timeout=timeout, **kw),
            timeout + 1)
        return cls(ws)

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def recv_raw(self, timeout=3.0):
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def recv(self, timeout=3.0):
        """Next JSON message (text, one object). {"type":"ping"} is skipped."""
        while True:
            data = await self.recv_raw(timeout)
            assert isinstance(data, str), "server sent a binary message %r" % data[:100]
            obj = parse_json_strict(data)
            assert isinstance(obj, dict), "server sent a non-object %r" % data[:200]
            if obj.get("type") == "ping":
                continue
            return obj

    async def expect(self, type_, timeout=3.0):
        msg = await self.recv(timeout)
        assert msg.get("type") == type_, "expected %s, got %r" % (type_, msg)
        return msg

    async def error(self, code=None, timeout=3.0):
        msg = await self.recv(timeout)
        check_error(msg, code)
        return msg

    async def silent(self, seconds=0.3):
        """Asserts nothing arrives within `seconds`."""
        try:
            msg = await asyncio.wait_for(self.ws.recv(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError("unexpected message %r" % (msg[:300],))

    async def login(self, name, room_id=None, extra=None):
        """Logs in and consumes the user_list and our own login broadcast.
        Returns the user_list (a list of {uid, name})."""
        msg = {"type": "login", "name": name}
        if room_id is not None:
            msg["room_id"] = room_id
        if extra:
            msg.update(extra)
        await self.send(msg)
        ul = await self.recv()
        assert ul["type"] == "user_list", "login answered with %r" % ul
        check_user_list(ul)
        me = await self.recv()
        check_login(me)
        assert ul["user_list"] and ul["user_list"][-1]["uid"] == me["uid"], \
            "new client must be last in user_list: %r vs %r" % (ul, me)
        assert ul["user_list"][-1]["name"] == me["name"], (ul, me)
        self.uid, self.name = me["uid"], me["name"]
        self.token = check_session(await self.recv(), me["uid"])
        return ul["user_list"]

    async def say(self, content, to_uid=None):
        msg = {"type": "say"}
        if to_uid is not None:
            msg["to_uid"] = to_uid
        msg["content"] = content
        await self.send(msg)

    async def close(self, code=1000):
        try:
            await asyncio.wait_for(self.ws.close(code), 5)
        except Exception:
            pass

    @property
    def close_code(self):
        return self.ws.close_code


async def connect_many(port, n, path="/"):
    return list(await asyncio.gather(*[Client.connect(port, path) for _ in range(n)]))


async def close_all(clients):
    await asyncio.gather(*[c.close() for c in clients], return_exceptions=True)


ConnectionClosed = websockets.exceptions.ConnectionClosed


def sanitized():
    """True for a server built with ASan, which keeps freed memory in
    quarantine: its RSS says nothing of the server's own bounds."""
    from server_proc import BIN
    with open(BIN, "rb") as f:
        return b"__asan_init" in f.read()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
