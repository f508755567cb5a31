"""Issue 10, history and identity: a resume of many maximum-size messages
arrives whole without giant frames nor unbounded memory, and private
history goes to identities (a `session` token), never to a matching name."""

import json
import time

import pytest

from adv import MB, HonestClient, HonestRoom, RssMonitor, wait_for
from attacks import fill_room
from wsraw import RawWS

# History comes in chunks under the server's budget; a single chunk above
# half the default --outbound-cap would be the giant frame this forbids.
HISTORY_CHUNK_MAX = 2 * MB

# 100 resumes of ~12 MB each: bounded memory per connection (a chunk or
# two in flight each), 128 MB in all. Today: +939 MB.
RESUME_100_RSS_BOUND = 128 * MB




def history_ids(client):
    return [m["id"] for chunk in client.history for m in chunk]


def check_resume(client, last_id):
    """The client got every id 1..last_id in history chunks, each chunk in
    increasing order and under the budget; its connection is kept."""
    assert client.alive, "%s lost its connection: %s" % (client.name, client.lost)
    for chunk in client.history:
        ids = [m["id"] for m in chunk]
        assert ids == sorted(set(ids)), "a history chunk out of order: %r" % ids[:20]
    got = set(history_ids(client))
    missing = sorted(set(range(1, last_id + 1)) - got)
    assert not missing, "%s: %d ids missing from history, first %r" % (
        client.name, len(missing), missing[:10])
    assert max(client.history_sizes) <= HISTORY_CHUNK_MAX, \
        "a history message of %d bytes" % max(client.history_sizes)


def resumed(client, last_id):
    return (not client.alive) or set(range(1, last_id + 1)) <= set(history_ids(client))


def test_resume_of_300_maximum_size_messages_arrives_whole(make_server):
    srv = make_server()
    last = fill_room(srv.ws_port, "big", 300)
    assert last >= 300
    with HonestRoom(srv.ws_port, room="big", readers=3) as room, \
            RssMonitor(srv.proc.pid) as mon:
        room.begin()
        c = HonestClient(srv.ws_port, "resumer", "big", {"last_id": 0})
        try:
            wait_for(lambda: resumed(c, last), 60, "the resume of %d messages" % last)
            check_resume(c, last)
            assert len(c.history) >= 2, "%d history messages" % len(c.history)
        finally:
            c.stop()
        room.finish()
        mon.check(RESUME_100_RSS_BOUND, "one resume of %d messages" % last)


def test_100_resumes_at_once_stay_within_bounded_memory(make_server):
    srv = make_server()
    last = fill_room(srv.ws_port, "big", 300)
    with HonestRoom(srv.ws_port, room="big", readers=3) as room, \
            RssMonitor(srv.proc.pid) as mon:
        room.begin()
        names = ["resumer%d" % i for i in range(100)]
        clients = HonestClient.login_all(srv.ws_port, names, "big", {"last_id": 0})
        try:
            wait_for(lambda: all(resumed(c, last) for c in clients), 120,
                     "100 resumes of %d messages" % last)
            for c in clients:
                check_resume(c, last)
        finally:
            for c in clients:
                c.stop()
        room.finish()
        mon.check(RESUME_100_RSS_BOUND, "100 resumes of %d messages at once" % last)


# -- identity ------------------------------------------------------------------------------

def recv_until(ws, type_, timeout=3.0):
    """Skips messages until one of type_ (or fails at the deadline)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            m = ws.recv_json(max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        if m.get("type") == type_:
            return m
        seen.append(m.get("type"))
    raise AssertionError("no %s message (got %r)" % (type_, seen))


def login(port, name, **extra):
    ws = RawWS(port)
    msg = {"type": "login", "name": name}
    msg.update(extra)
    ws.send_json(msg)
    ul = ws.recv_json()
    assert ul["type"] == "user_list", ul
    me = ws.recv_json()
    assert me["type"] == "login", me
    return ws, me["uid"]


def exchange_private_messages(port):
    """bob and ana trade private says; bob (who kept his session token, if
    the server gives one) leaves. Returns (ana, bob's token or None, the
    contents of the private says)."""
    bob, bob_uid = login(port, "bob")
    token = None
    try:
        token = recv_until(bob, "session", timeout=2.0)["token"]
    except AssertionError:
        pass
    ana, ana_uid = login(port, "ana")
    secrets = ["for bob only", "for ana only"]
    ana.send_json({"type": "say", "to_uid": bob_uid, "content": secrets[0]})
    recv_until(bob, "say")
    bob.send_json({"type": "say", "to_uid": ana_uid, "content": secrets[1]})
    recv_until(ana, "say")
    bob.close()
    return ana, token, secrets


def history_of(ws, timeout=3.0):
    """Every say in the history messages until a quiet moment."""
    items = [m for m in recv_until(ws, "history", timeout)["messages"]]
    while True:
        try:
            m = ws.recv_json(0.5)
        except TimeoutError:
            return items
        if m.get("type") == "history":
            items.extend(m["messages"])


def test_impostor_with_the_name_gets_no_private_message(make_server):
    srv = make_server()
    ana, _, secrets = exchange_private_messages(srv.ws_port)
    try:
        impostor, _ = login(srv.ws_port, "bob", last_id=0, history_names=True)
        items = history_of(impostor)
        leaked = [m for m in items if m.get("to_uid") != "all"
                  or m.get("content") in secrets]
        assert not leaked, "the impostor got private messages: %s" % json.dumps(leaked)[:300]
        impostor.close()
    finally:
        ana.close()


def test_owner_presenting_the_session_token_gets_private_history(make_server):
    srv = make_server()
    ana, token, secrets = exchange_private_messages(srv.ws_port)
    try:
        assert token, "bob got no session message after his login"
        bob, _ = login(srv.ws_port, "bob", last_id=0, history_names=True, token=token)
        contents = [m["content"] for m in history_of(bob) if m.get("to_uid") != "all"]
        assert contents == secrets, "bob's private history: %r" % contents
        bob.close()
    finally:
        ana.close()
