"""RFC 6455 framing rules, with a raw client that can break them."""

import json
import struct
import time

import pytest

from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                   Closed, RawWS, close_payload, encode_frame)

LOGIN = b'{"type":"login","name":"frames"}'


@pytest.fixture
def ws(server):
    c = RawWS(server.ws_port)
    yield c
    c.close()


def assert_fails_with(ws, code):
    got, reason = ws.expect_close()
    assert got == code, "expected close %d, got %r (reason %r)" % (code, got, reason)


def assert_alive(ws, name="alive"):
    """The connection still works: a login is answered."""
    ws.send_json({"type": "login", "name": name})
    ul = ws.recv_json()
    assert ul["type"] == "user_list", ul
    me = ws.recv_json()
    assert me["type"] == "login" and me["name"] == name, me
    session = ws.recv_json()
    assert session["type"] == "session" and session["uid"] == me["uid"], session
    return me["uid"]


def say_msg(content, ensure_ascii=True):
    return json.dumps({"type": "say", "to_uid": "all", "content": content},
                      ensure_ascii=ensure_ascii).encode()


# -- framing errors -> 1002 --------------------------------------------------

def test_unmasked_client_frame(ws):
    ws.send_frame(OP_TEXT, LOGIN, mask=False)
    assert_fails_with(ws, 1002)


@pytest.mark.parametrize("rsv", [4, 2, 1, 7])
def test_reserved_bits(ws, rsv):
    ws.send_frame(OP_TEXT, LOGIN, rsv=rsv)
    assert_fails_with(ws, 1002)


def test_reserved_bit_on_ping(ws):
    ws.send_frame(OP_PING, b"x", rsv=4)
    assert_fails_with(ws, 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x7, 0xB, 0xC, 0xF])
def test_reserved_opcode(ws, opcode):
    ws.send_frame(opcode, b"hello")
    assert_fails_with(ws, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_too_long(ws, opcode):
    payload = struct.pack("!H", 1000) + b"x" * 124 if opcode == OP_CLOSE else b"x" * 126
    ws.send_frame(opcode, payload)
    assert_fails_with(ws, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame(ws, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"abc"
    ws.send_frame(opcode, payload, fin=False)
    assert_fails_with(ws, 1002)


def test_continuation_without_start(ws):
    ws.send_frame(OP_CONT, LOGIN, fin=True)
    assert_fails_with(ws, 1002)


def test_continuation_without_start_not_final(ws):
    ws.send_frame(OP_CONT, LOGIN[:5], fin=False)
    assert_fails_with(ws, 1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_fragmented_message(ws, opcode):
    ws.send_frame(OP_TEXT, LOGIN[:10], fin=False)
    ws.send_frame(opcode, LOGIN, fin=True)
    assert_fails_with(ws, 1002)


def test_64bit_length_with_top_bit_set(ws):
    head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x01\x02\x03\x04"
    ws.send_raw(head + b"abcd")
    code, _ = ws.expect_close()
    assert code in (1002, 1009), code


def test_huge_advertised_length(ws):
    """A header announcing 1 TiB: refused at once, nothing allocated."""
    head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\x01\x02\x03\x04"
    ws.send_raw(head + b"abcd")
    assert_fails_with(ws, 1009)


# -- ping / pong -------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(256))[:125], b"\x00\xff\xfe"])
def test_ping_answered_with_same_payload(ws, payload):
    ws.send_ping(payload)
    f = ws.recv_frame()
    assert f.opcode == OP_PONG and f.fin, f
    assert f.payload == payload


def test_unsolicited_pong_ignored(ws):
    ws.send_frame(OP_PONG, b"whatever")
    assert_alive(ws)


def test_ping_between_fragments(ws):
    ws.send_frame(OP_TEXT, LOGIN[:7], fin=False)
    ws.send_ping(b"mid-message")
    f = ws.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"mid-message", f
    ws.send_frame(OP_CONT, LOGIN[7:20], fin=False)
    ws.send_frame(OP_PONG, b"unsolicited")      # also allowed between fragments
    ws.send_frame(OP_CONT, LOGIN[20:], fin=True)
    ul = ws.recv_json()
    assert ul["type"] == "user_list" and ul["user_list"][-1]["name"] == "frames", ul


# -- fragmentation -----------------------------------------------------------

def test_login_in_three_fragments(ws):
    ws.send_frame(OP_TEXT, LOGIN[:5], fin=False)
    ws.send_frame(OP_CONT, LOGIN[5:17], fin=False)
    ws.send_frame(OP_CONT, LOGIN[17:], fin=True)
    ul = ws.recv_json()
    assert ul["type"] == "user_list", ul
    me = ws.recv_json()
    assert me["type"] == "login" and me["name"] == "frames", me


def test_empty_fragments(ws):
    ws.send_frame(OP_TEXT, b"", fin=False)
    ws.send_frame(OP_CONT, LOGIN, fin=False)
    ws.send_frame(OP_CONT, b"", fin=True)
    assert ws.recv_json()["type"] == "user_list"


def test_many_small_fragments(ws):
    msg = LOGIN
    ws.send_frame(OP_TEXT, msg[:1], fin=False)
    for i in range(1, len(msg) - 1):
        ws.send_frame(OP_CONT, msg[i:i + 1], fin=False)
    ws.send_frame(OP_CONT, msg[-1:], fin=True)
    assert ws.recv_json()["type"] == "user_list"


def test_frame_bytes_trickled(ws):
    """Header and payload arrive one byte per TCP segment."""
    data = encode_frame(OP_TEXT, LOGIN)
    for i in range(len(data)):
        ws.send_raw(data[i:i + 1])
        time.sleep(0.002)
    assert ws.recv_json()["type"] == "user_list"


def test_many_frames_in_one_write(ws):
    data = encode_frame(OP_TEXT, LOGIN)
    for i in range(3):
        data += encode_frame(OP_TEXT, say_msg("m%d" % i))
    ws.send_raw(data)
    assert ws.recv_json()["type"] == "user_list"
    assert ws.recv_json()["type"] == "login"
    assert ws.recv_json()["type"] == "session"
    for i in range(3):
        m = ws.recv_json()
        assert m["type"] == "say" and m["content"] == "m%d" % i, m


def test_multibyte_char_split_across_fragments(ws):
    name = "jo\u00e3o \u732a\U0001F600"
    data = json.dumps({"type": "login", "name": name}, ensure_ascii=False).encode()
    # cut inside the 2-byte, then inside the 3-byte and inside the 4-byte char
    cuts = [data.index("\u00e3".encode()) + 1,
            data.index("\u732a".encode()) + 2,
            data.index("\U0001F600".encode()) + 1,
            data.index("\U0001F600".encode()) + 3]
    pieces, prev = [], 0
    for c in cuts:
        pieces.append(data[prev:c])
        prev = c
    pieces.append(data[prev:])
    ws.send_frame(OP_TEXT, pieces[0], fin=False)
    for p in pieces[1:-1]:
        ws.send_frame(OP_CONT, p, fin=False)
    ws.send_frame(OP_CONT, pieces[-1], fin=True)
    ul = ws.recv_json()
    assert ul["type"] == "user_list" and ul["user_list"][-1]["name"] == name, ul


# -- UTF-8 -> 1007 -------------------------------------------------------------

BAD_UTF8 = {
    "lone_continuation": b"\x80",
    "invalid_byte_ff": b"\xff",
    "truncated_2byte": b"\xc3(",
    "overlong_slash": b"\xc0\xaf",
    "overlong_3byte": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above_10ffff": b"\xf4\x90\x80\x80",
    "f5_lead": b"\xf5\x80\x80\x80",
}


@pytest.mark.parametrize("bad", list(BAD_UTF8.values()), ids=list(BAD_UTF8))
def test_invalid_utf8_text(ws, bad):
    ws.send_frame(OP_TEXT, b'{"type":"login","name":"x' + bad + b'y"}')
    assert_fails_with(ws, 1007)


def test_invalid_utf8_split_across_fragments(ws):
    # a 2-byte lead at the end of one fragment, no continuation byte after it
    ws.send_frame(OP_TEXT, b'{"type":"login","name":"ab\xc3', fin=False)
    ws.send_frame(OP_CONT, b'(cd"}', fin=True)
    assert_fails_with(ws, 1007)


def test_invalid_utf8_in_first_fragment(ws):
    ws.send_frame(OP_TEXT, b'{"type":"login","name":"a\xff', fin=False)
    ws.send_frame(OP_CONT, b'b"}', fin=True)
    assert_fails_with(ws, 1007)


def test_truncated_char_at_end_of_message(ws):
    ws.send_frame(OP_TEXT, b'{"type":"login","name":"ab"}\xe7\x8c', fin=False)
    ws.send_frame(OP_CONT, b'', fin=True)
    assert_fails_with(ws, 1007)


def test_invalid_utf8_in_binary_is_not_1007(ws):
    """Binary messages are not UTF-8 checked: they get a bad_json error."""
    ws.send_frame(OP_BINARY, b"\xff\xfe\x00")
    err = ws.recv_json()
    assert err["type"] == "error" and err["code"] == "bad_json", err
    assert_alive(ws)


# -- close handshake -----------------------------------------------------------

@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1008, 1010, 1011, 3000, 4000, 4999])
def test_close_code_echoed(ws, code):
    ws.send_close(code, b"bye")
    f = ws.recv_frame()
    assert f.opcode == OP_CLOSE, f
    assert f.close_code == code, f
    closed, _ = ws.wait_closed(3)
    assert closed, "server did not close TCP after the close handshake"


def test_close_without_payload_answered_1000(ws):
    ws.send_close()
    f = ws.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f
    closed, _ = ws.wait_closed(3)
    assert closed


def test_close_after_login(ws):
    assert_alive(ws)
    ws.send_close(1000)
    f = ws.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f


def test_close_with_one_byte_payload(ws):
    ws.send_close(payload=b"\x03")
    assert_fails_with(ws, 1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_code(ws, code):
    ws.send_close(code)
    assert_fails_with(ws, 1002)


def test_close_reason_invalid_utf8(ws):
    ws.send_close(payload=struct.pack("!H", 1000) + b"bad \xff reason")
    assert_fails_with(ws, 1007)


def test_close_reason_valid_utf8(ws):
    ws.send_close(payload=struct.pack("!H", 1000) + "tchau \u00e7\u00e3o".encode())
    f = ws.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f


def test_close_between_fragments(ws):
    """A close in the middle of a fragmented message is allowed."""
    ws.send_frame(OP_TEXT, LOGIN[:5], fin=False)
    ws.send_close(1000)
    f = ws.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f


def test_no_data_after_close(ws):
    """Frames after the client's close are not processed."""
    ws.send_raw(encode_frame(OP_CLOSE, close_payload(1000)) + encode_frame(OP_TEXT, LOGIN))
    f = ws.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f
    try:
        f2 = ws.recv_frame(timeout=1.0)
        raise AssertionError("frame after close: %r" % f2)
    except (Closed, TimeoutError):
        pass


# -- lengths -----------------------------------------------------------------------

def test_16bit_and_64bit_lengths(ws, server):
    assert_alive(ws, "len")
    for size in (125, 126, 200, 1000, 4000, 65535 - 60):
        content = "x" * size
        payload = say_msg(content)
        ws.send_frame(OP_TEXT, payload)
        m = ws.recv_json()
        if size <= 4096:
            assert m["type"] == "say" and m["content"] == content, (size, m)
        else:
            assert m["type"] == "error" and m["code"] == "bad_content", (size, m)
    # 65 536 bytes (the default --max-message): a 64-bit length frame,
    # refused by the content limit only
    ws.send_frame(OP_TEXT, say_msg("y" * (65536 - len(say_msg("")))))
    m = ws.recv_json()
    assert m["type"] == "error" and m["code"] == "bad_content", m
    ws.send_frame(OP_TEXT, say_msg("after"))
    m = ws.recv_json()
    assert m["type"] == "say" and m["content"] == "after", m


def test_server_uses_16bit_and_64bit_lengths(make_server):
    """Server frames of 126..65535 and of 65536+ bytes are framed correctly
    ('&' escapes to 5 bytes, so 20 000 of them make a 100 KB frame)."""
    srv = make_server("--max-content", "20000")
    ws = RawWS(srv.ws_port)
    try:
        assert_alive(ws, "big")
        for n, ch, esc in ((30, "<", "&lt;"), (4096, "<", "&lt;"), (20000, "&", "&amp;")):
            ws.send_frame(OP_TEXT, say_msg(ch * n))
            m = ws.recv_json()
            assert m["type"] == "say" and m["content"] == esc * n, (n, m["content"][:50])
        content = "\U0001F600" * 4096   # 16 KiB of raw UTF-8 in
        ws.send_frame(OP_TEXT, say_msg(content, ensure_ascii=False))
        m = ws.recv_json()
        assert m["type"] == "say" and m["content"] == content, m["content"][:50]
    finally:
        ws.close()


def test_2mib_message_closes_1009_and_server_lives(ws, server):
    assert_alive(ws, "big")
    payload = say_msg("z" * (2 * 1024 * 1024))
    frame = encode_frame(OP_TEXT, payload)
    ws.send_best_effort(frame)
    assert_fails_with(ws, 1009)
    other = RawWS(server.ws_port)
    try:
        uid = assert_alive(other, "other")
        other.send_json({"type": "say", "content": "still serving"})
        m = other.recv_json()
        assert m["type"] == "say" and m["from_uid"] == uid, m
    finally:
        other.close()


def test_2mib_fragmented_message_closes_1009(ws, server):
    """The limit is on the message, not on each frame."""
    assert_alive(ws, "frag")
    chunk = b"a" * (256 * 1024)
    try:
        ws.send_best_effort(encode_frame(OP_TEXT, b'{"type":"say","content":"' + chunk, fin=False))
        for _ in range(8):
            if ws.send_best_effort(encode_frame(OP_CONT, chunk, fin=False)) == 0:
                break
        ws.send_best_effort(encode_frame(OP_CONT, b'"}', fin=True))
    except OSError:
        pass
    assert_fails_with(ws, 1009)


def test_max_message_boundary(make_server):
    """A message of exactly --max-message bytes is allowed, one more byte is not."""
    srv = make_server("--max-message", "1000")
    ws = RawWS(srv.ws_port)
    try:
        assert_alive(ws, "edge")
        base = len(say_msg(""))
        exact = say_msg("e" * (1000 - base))
        assert len(exact) == 1000
        ws.send_frame(OP_TEXT, exact)
        m = ws.recv_json()
        assert m["type"] == "say" and m["content"] == "e" * (1000 - base), m
        # the same 1000 bytes in fragments
        ws.send_frame(OP_TEXT, exact[:400], fin=False)
        ws.send_frame(OP_CONT, exact[400:], fin=True)
        assert ws.recv_json()["type"] == "say"
        # 1001 bytes, fragmented so that no single frame is over the limit
        over = say_msg("e" * (1001 - base))
        assert len(over) == 1001
        ws.send_frame(OP_TEXT, over[:500], fin=False)
        ws.send_frame(OP_CONT, over[500:], fin=True)
        assert_fails_with(ws, 1009)
    finally:
        ws.close()


def test_abrupt_disconnects_do_not_hurt(server):
    """Clients that vanish mid-handshake, mid-header, mid-payload or mid-
    fragmented-message (by FIN or RST) leave the server healthy."""
    from wsraw import RawConn
    frame = encode_frame(OP_TEXT, LOGIN)
    cuts = [
        lambda c: c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\nUpg"),
        lambda c: c.send_raw(frame[:1]),
        lambda c: c.send_raw(frame[:4]),
        lambda c: c.send_raw(frame[:len(frame) - 3]),
        lambda c: c.send_raw(encode_frame(OP_TEXT, LOGIN[:9], fin=False)),
        lambda c: c.send_raw(frame + encode_frame(OP_TEXT, say_msg("x" * 5000))[:100]),
    ]
    for i, cut in enumerate(cuts):
        for rst in (False, True):
            if i == 0:
                c = RawConn(server.ws_port)
            else:
                c = RawWS(server.ws_port)
            cut(c)
            time.sleep(0.02)
            if rst:
                c.reset()
            else:
                c.close()
    time.sleep(0.2)
    ws = RawWS(server.ws_port)
    ws2 = None
    try:
        uid = assert_alive(ws, "survivor")
        ws.send_json({"type": "login", "name": "again"})
        m = ws.recv_json()
        assert m["type"] == "error", m
        # nobody who vanished is still listed
        ws2 = RawWS(server.ws_port)
        uid2, users = ws2.login("last")
        assert [u["uid"] for u in users] == [uid, uid2], users
    finally:
        ws.close()
        if ws2:
            ws2.close()


def test_max_message_option(make_server):
    srv = make_server("--max-message", "1000")
    ws = RawWS(srv.ws_port)
    try:
        assert_alive(ws, "small")
        ws.send_frame(OP_TEXT, say_msg("s" * 900))
        m = ws.recv_json()
        assert m["type"] == "say" and m["content"] == "s" * 900, m
        ws.send_best_effort(encode_frame(OP_TEXT, say_msg("t" * 2000)))
        assert_fails_with(ws, 1009)
    finally:
        ws.close()
