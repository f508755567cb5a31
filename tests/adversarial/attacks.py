"""The attacks of issue 10 as functions, shared by the adversarial tests
and the soak (bench/soak/run.py). Each one is a client doing its worst
against the default limits; none of them checks anything."""

import socket
import threading
import time

from adv import MAX_SAY_CONTENT, HonestClient, LockedWS, raw_socket, say_frame, wait_for
from wsraw import (OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawConn, RawWS, encode_frame,
                   handshake_request)

PIPELINED_GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def get_flood(port, nbytes, keep_going, stall_limit=2.0, deadline=30.0):
    """Pipelined `GET /` on the web port from a socket that never reads:
    up to nbytes, while keep_going() and until the server stops taking them
    for stall_limit seconds. Returns (socket, bytes sent)."""
    s = raw_socket(port, rcvbuf=4096)
    chunk = PIPELINED_GET * (65536 // len(PIPELINED_GET))
    sent, stalled = 0, 0.0
    s.settimeout(0.25)
    end = time.monotonic() + deadline
    while sent < nbytes and stalled < stall_limit and time.monotonic() < end \
            and keep_going():
        try:
            sent += s.send(chunk)
            stalled = 0.0
        except socket.timeout:
            stalled += 0.25
        except OSError:
            break
    return s, sent


def fill_room(port, room, n, content=MAX_SAY_CONTENT, batch=20):
    """Posts n says in room by a poster that reads its echoes, in batches
    that stay under the default rate. Returns the last id."""
    poster = HonestClient(port, "poster", room)
    try:
        for done in range(0, n, batch):
            k = min(batch, n - done)
            before = len(poster.ids)
            for _ in range(k):
                poster.say(content)
            wait_for(lambda: len(poster.ids) >= before + k or not poster.alive, 30,
                     "the poster's echoes")
            assert poster.alive, "the poster was closed: %s" % poster.lost
            time.sleep(k / 40.0)        # the default rate is 50 a second
        return poster.ids[-1]
    finally:
        poster.stop()


def start_fragmented(ws, nbytes, piece=8192):
    """Opens a text message and sends nbytes of it in pieces, never the last
    one. Returns what the server took before refusing or stalling."""
    sent = 0
    first = True
    while sent < nbytes:
        op = OP_TEXT if first else OP_CONT
        frame = encode_frame(op, b"a" * piece, fin=False)
        if ws.send_best_effort(frame) < len(frame):
            break
        first = False
        sent += piece
    return sent


def flood(port, logged_in, stop, room="1", pad=60000, message=None):
    """One socket writing padded says (or the text message given, bytes)
    until stop is set or the server closes it; it reads nothing. Returns
    the bytes written."""
    ws = RawWS(port, rcvbuf=4096)
    if logged_in:
        ws.login("flooder", room_id=room)
    if message is None:
        frame = say_frame("x", pad=pad) * 16
    else:
        frame = encode_frame(OP_TEXT, message, mask_key=b"\x11\x22\x33\x44") * 4096
    sent = 0
    ws.sock.settimeout(0.5)
    while not stop.is_set():
        try:
            sent += ws.sock.send(frame)
        except socket.timeout:
            continue
        except OSError:
            break
    ws.close()
    return sent


def abort_upgrades(port, n):
    """n connections of each kind, all ended by a TCP reset: half a request;
    a whole request; a request with a login frame behind it; a request and
    a close without reading the answer."""
    req, _ = handshake_request("/")
    login = encode_frame(OP_TEXT, b'{"type":"login","name":"ghost"}')
    for _ in range(n):
        for data, reset in ((req[:len(req) // 2], True), (req, True),
                            (req + login, True), (req, False)):
            c = RawConn(port)
            c.send_raw(data)
            if reset:
                c.reset()
            else:
                c.close()


def drain(sock):
    """Reads and discards until the connection ends."""
    try:
        sock.settimeout(None)
        while sock.recv(1 << 20):
            pass
    except OSError:
        pass


def send_all_at_once(port, frames_per_socket, sockets, room):
    """Attackers that log in, then write all their says in one go. They
    read (and discard) what they get, so that the server has no reason to
    close them before it has taken all their says. Returns after every
    write ended (done or refused)."""
    attackers = []
    for i in range(sockets):
        a = LockedWS(port)
        a.login("attacker%d" % i, room_id=room)
        attackers.append(a)
    for a in attackers:
        threading.Thread(target=drain, args=(a.sock,), daemon=True).start()
    threads = [threading.Thread(target=a.sock.sendall, args=(frames_per_socket,))
               for a in attackers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return attackers


def pinger_in_room(port, room, stop):
    """Logs in, reads nothing (a 4 KB receive buffer) and sends a ping and a
    pong frame twice a second: activity, but no progress on its queue.
    Returns (socket, uid)."""
    p = LockedWS(port, rcvbuf=4096)
    uid, _ = p.login("pinger", room_id=room)

    def keepalive():
        while not stop.wait(0.5):
            try:
                p.send_raw(encode_frame(OP_PING, b"alive") + encode_frame(OP_PONG, b""))
            except OSError:
                return
    threading.Thread(target=keepalive, daemon=True).start()
    return p, uid


def slow_reader_in_room(port, room, stop, bytes_per_s):
    """Logs in and reads bytes_per_s, half of it every half second, with a
    pong frame each time to look alive: it makes progress, too slowly for
    its room. Returns (socket, uid)."""
    p = LockedWS(port, rcvbuf=bytes_per_s)
    uid, _ = p.login("slowpoke", room_id=room)

    def trickle():
        p.sock.settimeout(0.1)
        while not stop.wait(0.5):
            try:
                p.sock.recv(bytes_per_s // 2)
            except socket.timeout:
                pass
            except OSError:
                return
            try:
                p.send_raw(encode_frame(OP_PONG, b""))
            except OSError:
                return
    threading.Thread(target=trickle, daemon=True).start()
    return p, uid
