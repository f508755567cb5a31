"""Issue 10, fair output: what the server owes a client that does not read
must not cost unbounded memory nor the connections of those who do.

Every test runs the server with its default limits and keeps honest clients
in the attacked room (adv.HonestRoom): they keep their connections and get
every say once, in order."""

import re
import subprocess
import threading
import time

import pytest

from adv import MAX_SAY_CONTENT, MB, HonestRoom, OwnServer, RssMonitor, say_frame, wait_for
from attacks import get_flood, pinger_in_room, send_all_at_once, slow_reader_in_room
from server_proc import BIN
from wsraw import RawConn


# -- the web port ----------------------------------------------------------------------

# One request at a time per connection and the page served from the embedded
# bytes: a pipelining client costs at most one answer in flight. 32 MB is
# the page, the socket buffers and the honest room's traffic, with room to
# spare; today each answer is a fresh copy (8 MB of requests: +1 GB).
GET_FLOOD_RSS_BOUND = 32 * MB


def test_pipelined_get_flood_from_a_client_that_never_reads(make_server):
    srv = make_server()
    with HonestRoom(srv.ws_port, readers=3) as room, RssMonitor(srv.proc.pid) as mon:
        room.begin()
        # 8 MB of requests, unless the server stops taking them (what it
        # should do: one answer at a time) or its memory is already over.
        flood, sent = get_flood(srv.http_port, 8 * MB,
                                lambda: not mon.over(GET_FLOOD_RSS_BOUND))
        time.sleep(1.0)
        # the web port still answers others
        with RawConn(srv.http_port) as other:
            other.send_raw(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert other.read_http_response(timeout=5).status == 200
        mon.check(GET_FLOOD_RSS_BOUND, "a flood of %d bytes of pipelined GETs" % sent)
        room.finish()
        flood.close()


# -- maximum-size says -------------------------------------------------------------------

# 300 says of ~40 KB once escaped are ~12 MB of distinct frames, shared by
# the room; the three attackers that do not read may each pin up to
# --outbound-cap (4 MB) before they are closed. 96 MB leaves room for the
# kernel's side and the allocator.
BIG_SAYS_RSS_BOUND = 96 * MB


# The three sockets, and ten: 1,000 says of ~33 KB at once, ~33 MB
# that every reader must take. A reader falls that far behind the burst
# for a moment and must still not be closed while it makes progress
# (before: every reader closed at four times --outbound-cap). 160 MB is
# the frames, shared, and the store's cache, with room for the allocator.
@pytest.mark.parametrize("sockets,bound", [(3, BIG_SAYS_RSS_BOUND), (10, 160 * MB)])
def test_max_size_says_from_many_sockets_keep_10_fast_readers(make_server, sockets, bound):
    srv = make_server()
    says = sockets * 100
    with HonestRoom(srv.ws_port, readers=10) as room, RssMonitor(srv.proc.pid) as mon:
        room.begin()
        seen, talked = len(room.clients[1].ids), room.sent
        frame = say_frame(MAX_SAY_CONTENT)
        attackers = send_all_at_once(srv.ws_port, frame * 100, sockets, "1")
        # the server reads each socket its share a turn, so the talker's end
        # marker may overtake says still in the attackers' sockets: wait for
        # them all (beside the talker's own) before ending
        wait_for(lambda: len(room.clients[1].ids) - seen >= says + room.sent - talked
                 or not room.clients[1].alive, 60, "the %d says to reach the room" % says)
        room.finish(timeout=90)
        mon.check(bound, "%d x 100 maximum-size says" % sockets)
        # the attackers read what they get: none of them had a reason to be
        # closed, so all their says were stored, and finish() checked that
        # every honest client got every id between the markers
        assert room.end_id - room.start_id >= says, \
            "only %d says stored: the attackers were closed before the server " \
            "took all their says" % (room.end_id - room.start_id - 1)
        for a in attackers:
            a.close()


# -- a client that never reads but keeps itself alive -------------------------------------



def logout_seen(room, uid):
    return any(m.get("type") == "logout" and m.get("uid") == uid
               for m in room.clients[1].others)


def pin_frames_then_wait_close(srv, close_within):
    """Honest says the pinger never reads: ~6 MB, which fills the kernel's
    send buffer (up to 4 MB on loopback) and leaves ~2 MB queued in the
    server, under --outbound-cap: only a write timeout can end it. The
    pinger must be logged out within close_within seconds after the last
    say, while the honest clients keep everything."""
    stop = threading.Event()
    with HonestRoom(srv.ws_port, readers=3, chatter_per_s=0) as room:
        pinger, uid = pinger_in_room(srv.ws_port, "1", stop)
        try:
            room.begin()
            # 150 says of ~40 KB, at 25 a second (under the default rate)
            for i in range(150):
                room.talker.say(MAX_SAY_CONTENT)
                time.sleep(0.04)
            t0 = time.monotonic()
            wait_for(lambda: logout_seen(room, uid), close_within,
                     "the non-reading pinger to be closed")
            elapsed = time.monotonic() - t0
            room.finish()
            return elapsed
        finally:
            stop.set()
            pinger.close()


def test_non_reader_that_pings_is_closed_after_the_write_timeout(tmp_path):
    # An explicit short timeout keeps the test short; the default is checked
    # by the two tests below.
    with OwnServer(tmp_path / "srv", "--write-timeout", "3") as srv:
        elapsed = pin_frames_then_wait_close(srv, close_within=10)
        assert elapsed <= 10


def test_write_timeout_default_is_documented():
    out = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True,
                         timeout=10)
    text = out.stdout + out.stderr
    # the option's line and its continuation lines (indented, no option)
    m = re.search(r"--write-timeout\s+\S+[^\n]*?(?:\n {8,}[^-\s][^\n]*?)*\(default (\d+)\)", text)
    assert m, "serve --help does not document --write-timeout and its default:\n" + text
    assert 10 <= int(m.group(1)) <= 60, "write timeout default %s s" % m.group(1)


@pytest.mark.slow
def test_non_reader_that_pings_is_closed_by_the_default_write_timeout(make_server):
    srv = make_server()
    elapsed = pin_frames_then_wait_close(srv, close_within=50)
    assert elapsed <= 50


# -- a client that reads, too slowly ---------------------------------------------------------

# A reader that takes 64 KB a second, with a pong each time, in a room that
# gets ~1.5 MB a second: it makes some progress, so the write timeout does
# not end it, but it must not stay behind its room up to the hard cap (64
# MB of frames pinned) either. (The kernel reports room to write only once
# half its send buffer has drained, so to the server it makes no progress
# for seconds: the grace ends it.)
SLOW_READER_DEADLINE = 25


def test_reader_too_slow_for_its_room_is_closed(make_server):
    srv = make_server()
    stop = threading.Event()
    with HonestRoom(srv.ws_port, readers=3, chatter_per_s=0) as room:
        slow, uid = slow_reader_in_room(srv.ws_port, "1", stop, 64 * 1024)
        try:
            room.begin()
            t0 = time.monotonic()
            while not logout_seen(room, uid) and time.monotonic() - t0 < SLOW_READER_DEADLINE:
                room.talker.say(MAX_SAY_CONTENT)
                time.sleep(1 / 45)
            elapsed = time.monotonic() - t0
            assert logout_seen(room, uid), \
                "a reader far behind its room still connected after %.0f s" % elapsed
            room.finish()
        finally:
            stop.set()
            slow.close()
