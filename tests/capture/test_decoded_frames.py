"""The decoder on sessions written from scratch with pcaplib.py: link
layers, IPv6 extension headers, the HTTP upgrade, and the WebSocket details
(masks across segments, control frames between fragments, close payloads,
unknown opcodes, permessage-deflate parameters, the inflate cap)."""
import random
import struct
import zlib

import pytest

import pcaplib as pl
from conftest import decode, messages, run

MASK = b"\xa1\xb2\xc3\xd4"


def frames(evs):
    return [e for e in evs if e["event"] == "frame"]


def session(path, body, ext_req=None, ext_resp=None, linktype=pl.ETHERNET, writer=pl.write_pcap,
            **kw):
    """A whole connection: open, handshake, body(conn), FINs."""
    c = pl.Conn(**kw)
    c.open()
    c.handshake(extensions=ext_req, response_extensions=ext_resp)
    body(c)
    c.close()
    pl.write_session(str(path), [c], linktype=linktype, writer=writer)
    return path


def say(c):
    c.c2s(pl.ws_frame('{"type":"login","name":"mynick"}', mask=MASK))
    c.s2c(pl.ws_frame('{"type":"say","from_uid":1,"to_uid":"all","content":"oi, pessoal !"}'))


# ---- link layers ----

LINKTYPES = {"ethernet": pl.ETHERNET, "linux_sll": pl.LINUX_SLL, "linux_sll2": pl.LINUX_SLL2,
             "null": pl.NULL, "loop": pl.LOOP, "raw": pl.RAW}


@pytest.mark.parametrize("scenario", ["basic", "ipv6"])
@pytest.mark.parametrize("linktype", list(LINKTYPES) + ["pcapng", "pcap_nano_be"])
def test_link_types_and_file_formats(captures, tmp_path, scenario, linktype):
    """A real capture rewritten with another link layer, or as pcapng, or as
    a big-endian nanosecond pcap: the same events, to the microsecond."""
    cap = captures[scenario]
    f = tmp_path / "out.pcap"
    if linktype == "pcapng":
        pl.rewrite(str(cap.path), str(f), lambda it: [(p.ts, s) for p, s in it],
                   writer=pl.write_pcapng)
        assert f.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    elif linktype == "pcap_nano_be":
        pl.rewrite(str(cap.path), str(f), lambda it: [(p.ts, s) for p, s in it],
                   writer=lambda path, lt, pk: pl.write_pcap(path, lt, pk, nano=True,
                                                             endian=">"))
    else:
        pl.rewrite(str(cap.path), str(f), lambda it: [(p.ts, s) for p, s in it],
                   linktype_out=LINKTYPES[linktype])
    base = decode(cap.path, "-p", cap.port)
    got = decode(f, "-p", cap.port)
    if linktype == "pcap_nano_be":      # float rounding of the ns: a microsecond
        assert all(abs(a.pop("ts") - b.pop("ts")) < 2e-6 for a, b in zip(got, base))
    assert got == base and len(frames(got)) == 11


def test_null_loopback_captured_big_endian(tmp_path):
    """DLT_NULL holds the address family in the capturing host's byte
    order: a big-endian capture must read the same."""
    c = pl.Conn()
    c.open()
    c.handshake()
    say(c)
    c.close()
    pkts = [pl.Packet(ts, struct.pack(">I", 2) + pl.build_ip(s)) for ts, s in c.out]
    f = tmp_path / "null_be.pcap"
    pl.write_pcap(str(f), pl.NULL, pkts, endian=">")    # as a big-endian host writes it
    assert messages(decode(f))[0] == ("text", '{"type":"login","name":"mynick"}')


def test_vlan_tags_and_ipv6_extension_headers(tmp_path):
    """802.1Q and QinQ tags before IPv4 (the default filter lets them
    through); a hop-by-hop header before TCP in IPv6: both skipped."""
    c4 = pl.Conn()
    c4.open()
    c4.handshake()
    say(c4)
    c4.close()
    pkts = []
    for i, (ts, s) in enumerate(c4.out):
        # 802.1Q, or QinQ (802.1ad then 802.1Q)
        tags = struct.pack("!HH", 0x8100, 20) if i % 2 else \
            struct.pack("!HHHH", 0x88A8, 10, 0x8100, 20)
        pkts.append(pl.Packet(ts, b"\0" * 12 + tags + b"\x08\x00" + pl.build_ip(s)))
    f = tmp_path / "vlan.pcap"
    pl.write_pcap(str(f), pl.ETHERNET, pkts)
    assert len(messages(decode(f))) == 2

    c6 = pl.Conn(client=("::1", 50000), server=("::1", 7272))
    c6.open()
    c6.handshake()
    say(c6)
    c6.close()
    pkts = []
    for ts, s in c6.out:
        ip = bytearray(pl.build_ip(s))
        plen = struct.unpack("!H", ip[4:6])[0]
        ip[4:6] = struct.pack("!H", plen + 8)
        ip[6] = 0                                   # next header: hop-by-hop
        hbh = bytes([6, 0, 1, 4, 0, 0, 0, 0])       # then TCP; PadN
        pkts.append(pl.Packet(ts, bytes(ip[:40]) + hbh + bytes(ip[40:])))
    f = tmp_path / "hbh.pcap"
    pl.write_pcap(str(f), pl.RAW, pkts)
    # BPF's 'tcp port' does not follow IPv6 extension headers: a filter
    # that lets them through
    assert decode(f) == []
    evs = decode(f, "-p", 7272, "ip6")
    assert len(messages(evs)) == 2 and evs[0]["src"] == "[::1]:50000"


def test_ip_fragments_are_counted_not_decoded(tmp_path):
    c = pl.Conn()
    c.open()
    ip = bytearray(pl.build_ip(c.out[0][1]))
    ip[6:8] = struct.pack("!H", 0x2000)             # more fragments
    f = tmp_path / "frag.pcap"
    pl.write_pcap(str(f), pl.RAW, [pl.Packet(1.0, bytes(ip))])
    r = run("-r", f, "--json")
    assert r.out == "" and "1 IP fragments" in r.err


# ---- HTTP ----

def test_frames_only_after_the_101(tmp_path):
    """The client's first frame rides in the request's segment: it is shown
    after the handshake response, not parsed as HTTP."""
    c = pl.Conn()
    c.open()
    req = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: zPDr6m4czzUdOFnsxIUEAw==\r\n\r\n")
    c.c2s(req + pl.ws_frame('{"type":"login","name":"mynick"}', mask=MASK))
    c.s2c(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: nSsCeIBUsFnDJCRb/BNlFzBUDpM=\r\n\r\n")
    c.close()
    f = tmp_path / "pipelined.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    assert [e["event"] for e in evs] == ["tcp_open", "handshake_request", "handshake_response",
                                         "frame", "tcp_close"]
    assert evs[1]["path"] == "/ws" and evs[1]["key"] == "zPDr6m4czzUdOFnsxIUEAw=="
    assert evs[1]["extensions"] is None
    # the seed's own key and accept
    assert evs[2]["accept"] == "nSsCeIBUsFnDJCRb/BNlFzBUDpM=" and evs[2]["accept_ok"] is True
    assert evs[3]["text"] == '{"type":"login","name":"mynick"}' and evs[3]["masked"]


def test_accept_not_matching_the_key(tmp_path):
    c = pl.Conn()
    c.open()
    c.handshake(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    say(c)
    c.close()
    f = tmp_path / "badaccept.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    assert evs[2]["event"] == "handshake_response" and evs[2]["accept_ok"] is False
    r = run("-r", f, "--color=never")
    assert "(does NOT match the key)" in r.out


def test_refused_upgrade_decodes_no_frames(tmp_path):
    c = pl.Conn()
    c.open()
    req = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: zPDr6m4czzUdOFnsxIUEAw==\r\n\r\n")
    c.c2s(req)
    c.s2c(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
          b"Content-Length: 0\r\n\r\n")
    c.c2s(pl.ws_frame("not a frame: the upgrade was refused", mask=MASK))
    c.close()
    f = tmp_path / "426.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    resp = [e for e in evs if e["event"] == "handshake_response"]
    assert len(resp) == 1 and resp[0]["status"] == 426 and resp[0]["accept"] is None
    assert not frames(evs)
    assert [e["event"] for e in evs].count("tcp_close") == 1


def test_plain_http_is_not_in_the_json(tmp_path):
    """The web page's GET on the same port: text view only."""
    c = pl.Conn()
    c.open()
    c.c2s(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    c.s2c(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    c.close()
    f = tmp_path / "http.pcap"
    pl.write_session(str(f), [c])
    assert [e["event"] for e in decode(f)] == ["tcp_open", "tcp_close"]
    out = run("-r", f, "--color=never").out
    assert "HTTP GET /index.html" in out and "HTTP 200 OK" in out


def test_joined_midway(tmp_path):
    """A capture that starts after the handshake cannot know the frame
    boundaries or the deflate parameters: said once per direction."""
    c = pl.Conn()
    c.open()
    c.handshake()
    c.out.clear()
    say(c)
    c.close()
    f = tmp_path / "midway.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    errs = [e for e in evs if e["event"] == "error"]
    assert len(errs) == 2 and all("mid-connection" in e["error"] for e in errs)
    assert not frames(evs)
    assert evs[0]["src"] == "127.0.0.1:50000" and evs[1]["src"] == "127.0.0.1:7272"


# ---- frames ----

def test_mask_and_headers_split_across_segments(tmp_path):
    """Masked frames cut everywhere, headers included (7-bit, 16-bit and
    64-bit lengths): the mask offset carries from segment to segment."""
    texts = ["oi", "y" * 300, "".join(chr(0x41 + i % 26) for i in range(70000))]

    def body(c):
        for t, size in zip(texts, (1, 3, 997)):
            data = pl.ws_frame(t, mask=MASK)
            for i in range(0, len(data), size):
                c.c2s(data[i:i + size], ack=False)

    evs = decode(session(tmp_path / "split.pcap", body))
    assert messages(evs) == [("text", t) for t in texts]
    assert [e["length"] for e in frames(evs)] == [2, 300, 70000]


def test_control_frames_between_fragments(tmp_path):
    def body(c):
        c.c2s(pl.ws_frame("um ", fin=False, mask=MASK) +
              pl.ws_frame("ping!", opcode=9, mask=MASK) +
              pl.ws_frame("dois ", opcode=0, fin=False, mask=MASK))
        c.s2c(pl.ws_frame("ping!", opcode=10))
        c.c2s(pl.ws_frame("tres", opcode=0, mask=MASK))

    evs = frames(decode(session(tmp_path / "ctl.pcap", body)))
    assert [(e["opcode"], e["fin"]) for e in evs] == [
        ("text", False), ("ping", True), ("continuation", False), ("pong", True),
        ("continuation", True)]
    assert evs[0]["hex"] == b"um ".hex() and evs[1]["hex"] == b"ping!".hex()
    assert evs[4]["text"] == "um dois tres"


def test_empty_fragments(tmp_path):
    """Fragments with no payload, first, in the middle and last (found by
    fuzzing: an empty first fragment had no message buffer yet)."""
    def body(c):
        c.c2s(pl.ws_frame("", fin=False, mask=MASK) +
              pl.ws_frame("oi", opcode=0, fin=False, mask=MASK) +
              pl.ws_frame("", opcode=0, fin=False, mask=MASK) +
              pl.ws_frame("", opcode=0, mask=MASK))
        c.s2c(pl.ws_frame("", fin=False) + pl.ws_frame("", opcode=0))

    evs = frames(decode(session(tmp_path / "empty.pcap", body)))
    assert [(e["opcode"], e["fin"], e["length"]) for e in evs] == [
        ("text", False, 0), ("continuation", False, 2), ("continuation", False, 0),
        ("continuation", True, 0), ("text", False, 0), ("continuation", True, 0)]
    assert [e.get("hex") for e in evs if not e["fin"]] == ["", b"oi".hex(), "", ""]
    assert evs[3]["text"] == "oi" and evs[5]["text"] == ""


def test_close_payloads(tmp_path):
    def body(c):
        c.c2s(pl.ws_frame(b"", opcode=8, mask=MASK))
        c.s2c(pl.ws_frame(b"\x03", opcode=8))
        c.s2c(pl.ws_frame(struct.pack("!H", 4001) + "até".encode(), opcode=8))
        c.s2c(pl.ws_frame(struct.pack("!H", 1000) + b"\xff", opcode=8))

    evs = frames(decode(session(tmp_path / "close.pcap", body)))
    assert [(e["code"], e["reason"], e["hex"]) for e in evs] == [
        (None, "", ""), (None, "", "03"),
        (4001, "até", (struct.pack("!H", 4001) + "até".encode()).hex()),
        (1000, "\ufffd", "03e8ff")]
    assert "error" not in evs[0] and "error" in evs[1] and "error" in evs[3]


def test_unknown_opcode_binary_and_bad_utf8(tmp_path):
    def body(c):
        c.c2s(pl.ws_frame(b"\x01\x02", opcode=3, mask=MASK))
        c.c2s(pl.ws_frame(b"\x00\xffbin", opcode=2, mask=MASK))
        c.s2c(pl.ws_frame(b"ol\xe1", opcode=1))

    evs = frames(decode(session(tmp_path / "odd.pcap", body)))
    assert evs[0]["opcode"] == "3" and evs[0]["hex"] == "0102" and "error" in evs[0]
    assert evs[1]["opcode"] == "binary" and evs[1]["hex"] == "00ff62696e"
    assert evs[2]["text"] == "ol\ufffd" and evs[2]["error"] == "invalid UTF-8"


def test_rsv1_without_deflate_is_shown_in_hex(tmp_path):
    raw = pl.deflate_raw(b'{"type":"say"}')

    def body(c):
        c.s2c(pl.ws_frame(raw, rsv1=True))

    e = frames(decode(session(tmp_path / "rsv1.pcap", body)))[0]
    assert e["rsv1"] and e["hex"] == raw.hex() and "without permessage-deflate" in e["error"]


def big_text(n, seed=3):
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(n))


def test_inflate_cap_keeps_the_context(tmp_path):
    """--max-message=1K: a message inflating to 5000 bytes is cut (elided
    counts the rest), and the next one, which refers back into it, still
    inflates: the window was kept."""
    first = "".join(f"oi, pessoal ! {i % 7} " for i in range(300))[:5000]
    second = "again: " + first[1000:1500]
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)

    def body(c):
        for t in (first, second):
            c.s2c(pl.ws_frame(pl.deflate_raw(t.encode(), comp), rsv1=True))

    f = session(tmp_path / "cap.pcap", body, "permessage-deflate", "permessage-deflate")
    evs = frames(decode(f, "--max-message=1K"))
    assert evs[0]["text"] == first[:1024] and evs[0]["elided"] == len(first) - 1024
    assert "size limit" in evs[0]["error"]
    assert evs[1]["text"] == second and "error" not in evs[1]
    assert [e["text"] for e in frames(decode(f))] == [first, second]


@pytest.mark.parametrize("bits,ok", [(9, False), (12, True), (None, True)])
def test_window_bits_are_applied(tmp_path, bits, ok):
    """server_max_window_bits=9 keeps 512 bytes of context between
    messages: a message that refers 2000 bytes back into the previous one
    (as a sender with a bigger window would write it) cannot be inflated."""
    first = big_text(2000)
    second = first[:300]
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    ext = "permessage-deflate" + (f"; server_max_window_bits={bits}" if bits else "")

    def body(c):
        for t in (first, second):
            c.s2c(pl.ws_frame(pl.deflate_raw(t.encode(), comp), rsv1=True))
        c.c2s(pl.ws_frame(pl.deflate_raw(b"client side: 15 bits"), rsv1=True, mask=MASK))

    evs = frames(decode(session(tmp_path / "bits.pcap", body, ext, ext)))
    assert evs[0]["text"] == first
    if ok:
        assert evs[1]["text"] == second
    else:
        assert "hex" in evs[1] and "distance" in evs[1]["error"]
    assert evs[2]["text"] == "client side: 15 bits"


def growing_history(seed, count=160):
    """Messages of all sizes (a few bytes to 9 KB) that quote, at every
    distance up to the 32 KiB window, what the same direction sent before."""
    rng = random.Random(seed)
    sent, out = "", []
    for _ in range(count):
        n = rng.choice([5, 40, 150, 700, 3000, 9000])
        parts = []
        while sum(map(len, parts)) < n:
            if sent and rng.random() < 0.6:
                back = rng.randint(1, min(len(sent), 32000))
                start = len(sent) - back
                parts.append(sent[start:start + rng.randint(3, 300)])
            else:
                parts.append(big_text(rng.randint(1, 200), seed=rng.randint(0, 1 << 30)))
        t = "".join(parts)[:n]
        out.append(t)
        sent += t
    return out


@pytest.mark.parametrize("limit", [None, "8K"])
def test_windows_grow_with_the_history(tmp_path, limit):
    """The decoder starts each direction with a small window and makes it
    larger as the history grows, inflating a message again when it did not
    fit: every message must come out whole, however far back it refers,
    also when --max-message cuts the messages themselves."""
    texts = growing_history(11)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    plain = zlib.compressobj(9, zlib.DEFLATED, -15)

    def body(c):
        for i, t in enumerate(texts):
            c.s2c(pl.ws_frame(pl.deflate_raw(t.encode(), comp), rsv1=True))
            if i % 5 == 0:      # the other direction, without context takeover
                fresh = zlib.compressobj(9, zlib.DEFLATED, -15)
                c.c2s(pl.ws_frame(pl.deflate_raw(t.encode(), fresh), rsv1=True, mask=MASK))
        c.c2s(pl.ws_frame(pl.deflate_raw(b"end", plain), rsv1=True, mask=MASK))

    ext = "permessage-deflate; client_no_context_takeover"
    f = session(tmp_path / "grow.pcap", body, ext, ext)
    evs = frames(decode(f, *([f"--max-message={limit}"] if limit else [])))
    cut = 8192 if limit else None
    s2c = [e for e in evs if not e["masked"]]
    c2s = [e for e in evs if e["masked"]]
    assert [e["text"] for e in s2c] == [t[:cut] for t in texts]
    assert [e["text"] for e in c2s] == [t[:cut] for t in texts[::5]] + ["end"]
    assert all(e.get("elided", 0) == len(t) - len(t[:cut]) for e, t in zip(s2c, texts))


def test_message_over_the_limit_is_elided(tmp_path):
    def body(c):
        c.s2c(pl.ws_frame("z" * 5000))
        c.s2c(pl.ws_frame("small"))

    evs = frames(decode(session(tmp_path / "elided.pcap", body), "--max-message=1K"))
    assert evs[0]["text"] == "z" * 1024 and evs[0]["elided"] == 5000 - 1024
    assert evs[0]["length"] == 5000 and evs[1]["text"] == "small"
