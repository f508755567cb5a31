"""Issue 10, bounded input: unfinished fragmented messages, floods of says
before login or past the rate, room creation, and connections aborted in
the middle of the upgrade. Default limits; honest clients in the room must
come through untouched."""

import threading
import time

import pytest

from adv import MB, HonestClient, HonestRoom, RssMonitor
from attacks import abort_upgrades, flood, start_fragmented
from wsraw import OP_PING, RawWS

# -- fragmented messages that never end ----------------------------------------------------

# How long a fragmented message may stay unfinished before the server gives
# up on it. The issue asks for a deadline without fixing it; 30 s is the
# order of the other timeouts (write, handshake) and keeps the test short.
FRAGMENT_DEADLINE = 30

# 200 sockets holding partial messages: within a global budget. 48 MB is the
# budget's order plus the honest room; today each socket may pin 1 MiB.
FRAGMENTS_RSS_BOUND = 48 * MB




def test_unfinished_fragmented_message_has_a_deadline(make_server):
    srv = make_server()
    with HonestRoom(srv.ws_port, readers=2, chatter_per_s=1) as room:
        room.begin()
        a = RawWS(srv.ws_port)
        uid, _ = a.login("fragmenter")
        start_fragmented(a, 32 * 1024)
        # control frames may come between fragments: the client looks alive
        deadline = time.monotonic() + FRAGMENT_DEADLINE + 10
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                a.send_frame(OP_PING, b"still here")
            except OSError:
                closed = True
            closed = closed or any(m.get("type") == "logout" and m.get("uid") == uid
                                   for m in room.clients[1].others)
            time.sleep(1.0)
        assert closed, ("a message left unfinished for %d s was not given up"
                        % (FRAGMENT_DEADLINE + 10))
        room.finish()
        a.close()


def test_partial_messages_from_200_sockets_stay_within_a_global_budget(make_server):
    srv = make_server()
    with HonestRoom(srv.ws_port, readers=3) as room, RssMonitor(srv.proc.pid) as mon:
        room.begin()
        attackers = []
        try:
            for i in range(200):
                if mon.over(FRAGMENTS_RSS_BOUND):
                    break
                a = RawWS(srv.ws_port)
                attackers.append(a)
                # up to just under the 1 MiB of today's --max-message
                start_fragmented(a, 1 * MB - 16 * 1024)
            time.sleep(1.0)
            mon.check(FRAGMENTS_RSS_BOUND, "%d sockets with unfinished messages" % len(attackers))
            room.finish()
        finally:
            for a in attackers:
                a.close()


# -- floods of says ---------------------------------------------------------------------

# Says padded to ~60 KB (under a 64 KiB --max-message), written as fast as
# the kernel takes them by sockets that read nothing, for a few seconds.
# With back-pressure from the hub and the rate check before any copy, the
# server holds a bounded amount per connection: 64 MB in all.
FLOOD_RSS_BOUND = 64 * MB
FLOOD_SECONDS = 6




def run_floods(srv, mon, kinds, bound):
    """A flooding socket per (logged in, message) of kinds (message None: a
    padded say) for FLOOD_SECONDS, or until the server's RSS passes bound.
    Returns the bytes they wrote."""
    stop = threading.Event()
    totals = []
    threads = [threading.Thread(target=lambda li=li, m=m: totals.append(
                   flood(srv.ws_port, li, stop, message=m)))
               for li, m in kinds]
    for t in threads:
        t.start()
    deadline = time.monotonic() + FLOOD_SECONDS
    while time.monotonic() < deadline and not mon.over(bound):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(10)
    time.sleep(0.5)
    return sum(totals)


def test_flood_of_says_before_login_and_past_the_rate_with_threads(make_server):
    """--threads 2: messages cross to the hub. Two sockets flood before any
    login, two logged-in ones far past the rate."""
    srv = make_server("--threads", "2")
    with HonestRoom(srv.ws_port, readers=3) as room, RssMonitor(srv.proc.pid) as mon:
        room.begin()
        sent = run_floods(srv, mon, [(False, None), (False, None), (True, None), (True, None)],
                          FLOOD_RSS_BOUND)
        mon.check(FLOOD_RSS_BOUND, "a flood of %.0f MB of says" % (sent / MB))
        room.finish()


# -- replies nobody reads -------------------------------------------------------------------

# Messages of a few bytes, each of which earns an error (bad_json, then
# rate_limited once the burst is spent), from sockets that read nothing. The
# server must neither queue a reply per message for a client that does not
# read them nor hold a copy of each on its way to the chat's thread: 100
# such sockets for a few seconds stay within 64 MB (before: +2 GB).
REPLY_FLOOD_RSS_BOUND = 64 * MB
REPLY_FLOODERS = 100


def test_tiny_messages_from_non_readers_earn_no_unbounded_replies(make_server):
    srv = make_server()
    with HonestRoom(srv.ws_port, readers=3) as room, RssMonitor(srv.proc.pid) as mon:
        room.begin()
        kinds = [(False, b"[]"), (True, b'{"type":"x"}')] * (REPLY_FLOODERS // 2)
        sent = run_floods(srv, mon, kinds, REPLY_FLOOD_RSS_BOUND)
        mon.check(REPLY_FLOOD_RSS_BOUND, "%d sockets sending %.0f MB of tiny messages"
                  % (REPLY_FLOODERS, sent / MB))
        room.finish()


# -- rooms ---------------------------------------------------------------------------------

ROOM_FLOOD = 150


def test_room_creation_flood_from_one_address_is_limited(make_server):
    srv = make_server()
    with HonestRoom(srv.ws_port, readers=2) as room:
        room.begin()
        created, refused = 0, []
        for i in range(ROOM_FLOOD):
            ws = RawWS(srv.ws_port)
            ws.send_json({"type": "login", "name": "roomer", "room_id": "flood-%d" % i})
            m = ws.recv_json()
            if m["type"] == "user_list":
                created += 1
                ws.send_json({"type": "say", "content": "filling room %d" % i})
            else:
                assert m["type"] == "error", m
                refused.append(m)
                # refused with an error, the connection kept
                ws.send_json({"type": "pong"})
                ws.send_json({"type": "login", "name": "roomer", "room_id": room.room})
                assert ws.recv_json()["type"] == "user_list"
            ws.close()
        # the contract lets one address use at least 10 new rooms a minute
        assert created >= 10, "only %d new rooms allowed" % created
        assert refused, "%d rooms created from one address in a few seconds" % created
        room.finish()


# -- the upgrade -------------------------------------------------------------------------------



def test_connections_aborted_mid_upgrade_leave_no_ghost(make_server):
    srv = make_server()
    with HonestRoom(srv.ws_port, readers=2) as room:
        room.begin()
        abort_upgrades(srv.ws_port, 50)
        time.sleep(1.0)
        room.finish()
        watcher = room.clients[1]
        logins = [m["uid"] for m in watcher.others if m.get("type") == "login"]
        logouts = [m["uid"] for m in watcher.others if m.get("type") == "logout"]
        assert sorted(logins) == sorted(logouts), \
            "aborted connections left users behind: %r" % (set(logins) - set(logouts))
        # a new client sees only the honest ones
        probe = HonestClient(srv.ws_port, "probe", room.room)
        probe.stop()
    # shutdown is prompt: nothing holds the loops
    t0 = time.monotonic()
    rc = srv.terminate(timeout=10)
    assert rc == 0, srv.describe()
    assert time.monotonic() - t0 < 3.0, "shutdown took %.1f s" % (time.monotonic() - t0)
