"""permessage-deflate (RFC 7692): the negotiation, compressed messages both
ways, their close codes, the bounds on inflation, one compression per
broadcast whatever its audience, and --no-deflate."""

import asyncio
import json
import os
import struct
import time
import urllib.request
import zlib

import pytest

from helpers import Client, async_test, check_say, close_all, rss_kib, sanitized
from wsraw import (OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, Frame, RawWS,
                   apply_mask, encode_frame, handshake_request, new_key)
from test_handshake import request

OFFER = "Sec-WebSocket-Extensions: "
EXT = "Sec-WebSocket-Extensions"


def answer(port, offer, path="/"):
    data, _ = handshake_request(path=path, key=new_key(), extra=[OFFER + offer] if offer else [])
    resp = request(port, data)
    assert resp.status == 101, resp
    return resp.header(EXT)


def stats(server):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % server.http_port, timeout=5) as r:
        return json.loads(r.read())["deflate"]


# -- negotiation -------------------------------------------------------------------------------

SNCT = "permessage-deflate; server_no_context_takeover"


@pytest.mark.parametrize("offer,want", [
    ("permessage-deflate", SNCT),
    # a client that lets us choose gets a 4 KiB window (docs/deflate.md)
    ("permessage-deflate; client_max_window_bits", SNCT + "; client_max_window_bits=12"),
    ("permessage-deflate; client_max_window_bits=15", SNCT + "; client_max_window_bits=12"),
    ("permessage-deflate; client_max_window_bits=10", SNCT + "; client_max_window_bits=10"),
    ("permessage-deflate; server_no_context_takeover", SNCT),
    ("permessage-deflate; client_no_context_takeover", SNCT + "; client_no_context_takeover"),
    ("permessage-deflate; server_max_window_bits=9", SNCT + "; server_max_window_bits=9"),
    ('permessage-deflate; server_max_window_bits="12"', SNCT + "; server_max_window_bits=12"),
    # declined offers, then a good one
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover",
     SNCT + "; client_no_context_takeover"),
    ("x-webkit-deflate-frame, permessage-deflate; foo, permessage-deflate", SNCT),
    # declined, none left
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; client_max_window_bits=0x0f", None),
    ("permessage-deflate; unknown_param", None),
    ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
    ("permessage-deflate; server_no_context_takeover=yes", None),
    ("x-webkit-deflate-frame", None),
    ("permessage-deflate;;", None),
], ids=lambda v: (v or "none")[:60])
def test_negotiation(server, offer, want):
    assert answer(server.ws_port, offer) == want


def test_offer_in_two_header_lines(server):
    data, _ = handshake_request(key=new_key(), extra=[
        OFFER + "permessage-deflate; bad_one", OFFER + "permessage-deflate; client_max_window_bits=11"])
    resp = request(server.ws_port, data)
    assert resp.header(EXT) == SNCT + "; client_max_window_bits=11"


def test_web_port_negotiates_too(server):
    data, _ = handshake_request(path="/ws", key=new_key(), extra=[OFFER + "permessage-deflate"])
    assert request(server.http_port, data).header(EXT) == SNCT


@pytest.mark.parametrize("opts", [("--no-deflate",), ("--deflate", "off")])
def test_no_deflate(make_server, opts):
    srv = make_server(*opts)
    assert answer(srv.ws_port, "permessage-deflate; client_max_window_bits") is None
    assert stats(srv)["handshakes"] == 0


def test_deflate_memory_full_asks_for_no_context(make_server):
    """Past --deflate-memory, new clients are asked to keep no context."""
    srv = make_server("--deflate-memory", "50000")
    first = DeflateWS(srv.ws_port)           # 7400 + 4096 bytes counted
    try:
        assert first.agreed == SNCT + "; client_max_window_bits=12"
        # 11,496 held + a worst case 40,168 > 50,000: the next one keeps none
        assert answer(srv.ws_port, "permessage-deflate; client_max_window_bits") == \
            SNCT + "; client_no_context_takeover; client_max_window_bits=12"
        first.send_close(1000)
        assert first.expect_close(reply=False)[0] == 1000
    finally:
        first.close()
    # its context is given back when it goes (its loop may be another one)
    deadline = time.monotonic() + 5
    while answer(srv.ws_port, "permessage-deflate") != SNCT:
        assert time.monotonic() < deadline, "the closed client's context is still counted"
        time.sleep(0.05)


def test_deflate_off_in_config_file(make_server, tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text("deflate off\n")
    srv = make_server("--config", conf)
    assert answer(srv.ws_port, "permessage-deflate") is None


def test_deflate_option_value_checked(make_server, tmp_path):
    from server_proc import BIN
    import subprocess
    r = subprocess.run([BIN, "serve", "--deflate", "maybe", "--check-config"],
                       capture_output=True, timeout=10)
    assert r.returncode != 0
    assert b"--deflate wants on or off" in r.stderr


# -- a raw client that speaks permessage-deflate -----------------------------------------------

class DeflateWS(RawWS):
    """RawWS with permessage-deflate: server frames may carry RSV1, and are
    inflated (the server keeps no context, so each on its own)."""

    def __init__(self, port, offer="permessage-deflate; client_max_window_bits", **kw):
        super().__init__(port, handshake=False, **kw)
        resp = self.handshake(extra=[OFFER + offer] if offer else [])
        self.agreed = resp.header(EXT)
        self.compressed_seen = 0
        self.plain_seen = 0

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        b0, b1 = self.read_exact(2, deadline)
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF
        n = b1 & 0x7F
        assert not b1 & 0x80, "server frames must not be masked"
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
        payload = self.read_exact(n, deadline)
        assert rsv in (0, 4), "RSV2/RSV3 from the server: %d" % rsv
        if rsv == 4:
            assert self.agreed, "RSV1 without permessage-deflate agreed"
            assert opcode in (OP_TEXT, 2) and fin, "RSV1 on frame opcode %d fin %r" % (opcode, fin)
            d = zlib.decompressobj(-15)
            payload = d.decompress(payload + b"\x00\x00\xff\xff")
            self.compressed_seen += 1
        elif opcode in (OP_TEXT, 2):
            self.plain_seen += 1
        return Frame(fin, 0, opcode, payload, False)


def deflate_raw(data, z=None):
    """Compressed as a client does: raw deflate, sync flush, tail removed.
    z: a compressobj kept across messages (context takeover)."""
    z = z or zlib.compressobj(6, zlib.DEFLATED, -15)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def say_json(content):
    return json.dumps({"type": "say", "content": content}).encode()


def test_server_frames_compressed_once_and_readable(server):
    ws = DeflateWS(server.ws_port)
    try:
        assert ws.agreed == SNCT + "; client_max_window_bits=12"
        ws.login("raw")
        before = stats(server)
        big = "compress me please " * 200
        ws.send_frame(OP_TEXT, say_json(big))
        msg = ws.recv_json()
        assert msg["type"] == "say" and msg["content"] == big
        assert ws.compressed_seen >= 1
        after = stats(server)
        assert after["compressions"] == before["compressions"] + 1
        assert after["deliveries"] == before["deliveries"] + 1
    finally:
        ws.close()


def test_compressed_client_messages_with_context_takeover(server):
    """The client keeps its context across messages (the default) and
    fragments some: every message reads back whole."""
    ws = DeflateWS(server.ws_port)
    try:
        ws.login("ctx")
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        for i in range(6):
            content = ("message number %d, " % i) * (10 + 40 * i)
            data = deflate_raw(say_json(content), z)
            if i % 2:
                # fragmented: RSV1 on the first frame only, a ping between
                third = max(1, len(data) // 3)
                ws.send_frame(OP_TEXT, data[:third], fin=False, rsv=4)
                ws.send_frame(OP_PING, b"between")
                ws.send_frame(OP_CONT, data[third:2 * third], fin=False)
                ws.send_frame(OP_CONT, data[2 * third:], fin=True)
            else:
                ws.send_frame(OP_TEXT, data, rsv=4)
            msg = ws.recv_json()
            assert msg["type"] == "say" and msg["content"] == content, msg
        assert stats(server)["inflated"] >= 6
        # an uncompressed message is still fine on the same connection
        ws.send_frame(OP_TEXT, say_json("plain"))
        assert ws.recv_json()["content"] == "plain"
    finally:
        ws.close()


@pytest.mark.parametrize("offer,agreed,wbits,keep", [
    ("client_no_context_takeover", "client_no_context_takeover", 15, False),
    # the client's 512-byte window, its context kept
    ("client_max_window_bits=9", "client_max_window_bits=9", 9, True),
])
def test_client_parameters(server, offer, agreed, wbits, keep):
    ws = DeflateWS(server.ws_port, offer="permessage-deflate; " + offer)
    try:
        assert ws.agreed == SNCT + "; " + agreed
        ws.login("p")
        z = zlib.compressobj(6, zlib.DEFLATED, -wbits)
        for i in range(3):
            content = "".join("%05d " % (j * 7919 % 99991) for j in range(300)) + "again " * 20
            data = deflate_raw(say_json(content), z if keep else zlib.compressobj(6, zlib.DEFLATED, -wbits))
            ws.send_frame(OP_TEXT, data, rsv=4)
            assert ws.recv_json()["content"] == content
    finally:
        ws.close()


def test_small_server_window(server):
    """server_max_window_bits=9: messages up to 512 bytes come compressed
    (and read with a 512-byte window), longer ones uncompressed."""
    ws = DeflateWS(server.ws_port, offer="permessage-deflate; server_max_window_bits=9")
    try:
        assert ws.agreed == SNCT + "; server_max_window_bits=9"
        ws.login("s9")
        for content, compressed in (("x" * 300, True), ("y" * 2000, False)):
            c0, p0 = ws.compressed_seen, ws.plain_seen
            ws.send_frame(OP_TEXT, say_json(content))
            assert ws.recv_json()["content"] == content
            assert (ws.compressed_seen - c0, ws.plain_seen - p0) == ((1, 0) if compressed else (0, 1))
    finally:
        ws.close()


# -- protocol errors ---------------------------------------------------------------------------

def close_code_after(ws, frames):
    for f in frames:
        ws.send_raw(f)
    code, _ = ws.expect_close()
    return code


@pytest.mark.parametrize("case,code", [
    ("rsv1_ping", 1002),
    ("rsv1_continuation", 1002),
    ("rsv2", 1002),
    ("rsv3", 1002),
    ("bad_deflate_data", 1007),
    ("compressed_bad_utf8", 1007),
])
def test_protocol_errors(server, case, code):
    ws = DeflateWS(server.ws_port)
    try:
        assert ws.agreed
        frames = {
            "rsv1_ping": [encode_frame(OP_PING, deflate_raw(b"hi"), rsv=4)],
            "rsv1_continuation": [encode_frame(OP_TEXT, deflate_raw(b"hel"), fin=False, rsv=4),
                                  encode_frame(OP_CONT, b"lo", rsv=4)],
            "rsv2": [encode_frame(OP_TEXT, b"x", rsv=2)],
            "rsv3": [encode_frame(OP_TEXT, b"x", rsv=1)],
            "bad_deflate_data": [encode_frame(OP_TEXT, b"\xff\xff\xff\xff\x00\x11", rsv=4)],
            "compressed_bad_utf8": [encode_frame(OP_TEXT, deflate_raw(b"caf\xc3("), rsv=4)],
        }[case]
        assert close_code_after(ws, frames) == code
    finally:
        ws.close()


def test_rsv1_without_negotiation(server):
    ws = DeflateWS(server.ws_port, offer=None)
    try:
        assert ws.agreed is None
        assert close_code_after(ws, [encode_frame(OP_TEXT, deflate_raw(b"{}"), rsv=4)]) == 1002
    finally:
        ws.close()


def test_zip_bomb(make_server):
    """64 MiB of zeros in 64 KiB: closed with 1009 at --max-message, and the
    server's memory does not follow the inflated size."""
    srv = make_server("--max-message", "65536")
    bomb = deflate_raw(b"\0" * (64 << 20))
    assert len(bomb) < 100000
    before = rss_kib(srv.proc.pid)
    for fragmented in (False, True):
        ws = DeflateWS(srv.ws_port)
        try:
            if fragmented:
                frames = [encode_frame(OP_TEXT, bomb[:10], fin=False, rsv=4)]
                frames += [encode_frame(OP_CONT, bomb[i:i + 4096], fin=False)
                           for i in range(10, len(bomb), 4096)]
                frames.append(encode_frame(OP_CONT, b""))
            else:
                frames = [encode_frame(OP_TEXT, bomb, rsv=4)]
            for f in frames:
                ws.send_best_effort(f)
            code, reason = ws.expect_close()
            assert code == 1009, (code, reason)
        finally:
            ws.close()
    grown = rss_kib(srv.proc.pid) - before
    if not sanitized():
        assert grown < 8 * 1024, "RSS grew by %d KiB for a 64 KiB limit" % grown


# -- python3-websockets: compression on and off in one room ------------------------------------

@async_test(timeout=60)
async def test_mixed_room_websockets(server):
    """Deflate and plain clients in the same room each get every message;
    each broadcast is compressed once however many deflate clients hear it."""
    deflaters = [await Client.connect(server.ws_port, compression="deflate") for _ in range(4)]
    plains = [await Client.connect(server.ws_port, compression=None) for _ in range(3)]
    everyone = deflaters + plains
    try:
        for c in deflaters:
            assert c.ws.response_headers.get(EXT, "").startswith(SNCT)
        for c in plains:
            assert c.ws.response_headers.get(EXT) is None
        for i, c in enumerate(everyone):
            await c.login("m%d" % i, room_id="mixed")
            for other in everyone[:i]:
                assert (await other.recv())["type"] == "login"
        contents = ["short", "a longer message that repeats, repeats, repeats " * 20,
                    "\u00e9\u00e8 unicode \U0001F600 " * 50, "x" * 4000]
        for k, content in enumerate(contents):
            sender = everyone[k % len(everyone)]
            before = stats(server)
            await sender.say(content)
            for c in everyone:
                check_say(await c.recv(), from_uid=sender.uid, content=content)
            after = stats(server)
            compressed = after["compressions"] - before["compressions"]
            # every say's JSON is past the 64-byte threshold: one compression each
            assert compressed == 1, (content[:20], before, after)
            delivered = (after["deliveries"] + after["uncompressed_deliveries"]
                         - before["deliveries"] - before["uncompressed_deliveries"])
            assert delivered == len(deflaters)
            if compressed:
                assert after["deliveries"] - before["deliveries"] == len(deflaters)
    finally:
        await close_all(everyone)
