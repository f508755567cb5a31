"""What the wire does to a capture: reordering, duplicates, overlaps, holes,
snaplen cuts, sequence wrap-around, FIN and RST in odd places. The inputs
are real captures (see conftest.py) rewritten with pcaplib.py, or sessions
written from scratch; the expected output is what the generator sent, or
the decoding of the untouched capture, or what the contract says a hole or
a cut must give."""
import random
import zlib

import pcaplib as pl
from conftest import (decode, messages, our_headers, run, sent_messages, server_addr,
                      tshark_frames, tshark_headers)

MASK = b"\x12\x34\x56\x78"


def items_of(path):
    _, items = pl.segments(str(path))
    return [(p, s) for p, s in items if s is not None]


def write(path, pairs, linktype=pl.ETHERNET, **kw):
    """[(ts, Seg)] to a pcap file."""
    pl.write_pcap(str(path), linktype, [pl.Packet(ts, pl.build(linktype, s)) for ts, s in pairs],
                  **kw)
    return path


def no_ts(evs):
    return [{k: v for k, v in e.items() if k != "ts"} for e in evs]


def frames(evs, src=None):
    return [e for e in evs if e["event"] == "frame" and (src is None or e["src"] == src)]


def summary(err):
    return err[err.index("--- capture summary ---"):]


def is_client(cap, s):
    return s.dport == cap.port


# ---- reordering, duplicates, overlaps ----

def test_reordered_segments(captures, tmp_path):
    """Each run of data segments of one direction arrives in reverse order;
    pure ACKs (which would declare the holes lost) are left out. The same
    messages come out, and tshark agrees on every frame."""
    cap = captures["large"]
    items = items_of(cap.path)
    out, run_ = [], []

    def flush():
        out.extend(reversed(run_))
        run_.clear()

    for p, s in items:
        if not s.payload and s.flags == pl.ACK:
            continue
        if s.payload and not (s.flags & (pl.SYN | pl.FIN)) and \
                (not run_ or (run_[0][1].sport == s.sport)):
            run_.append((p.ts, s))
            continue
        flush()
        if s.payload and not (s.flags & (pl.SYN | pl.FIN)):
            run_.append((p.ts, s))
        else:
            out.append((p.ts, s))
    flush()
    f = write(tmp_path / "reordered.pcap", out)
    evs = decode(f, "-p", cap.port)
    srv = server_addr(cap)
    assert messages([e for e in evs if e["dst"] == srv]) == sent_messages(cap, "c2s")
    assert messages([e for e in evs if e["src"] == srv]) == sent_messages(cap, "s2c")
    assert not [e for e in evs if e["event"] in ("gap", "error", "truncated")]
    assert [e["event"] for e in evs].count("tcp_close") == 1
    r = run("-r", f, "-p", cap.port, "--json")
    assert int(summary(r.err).split(" out of order")[0].rsplit(" ", 1)[1]) > 0
    # tshark reorders too: the same frames (in the order of the packets
    # that complete them)
    assert our_headers(evs) == tshark_headers(tshark_frames(f, cap.port))


def test_duplicates_and_overlaps(captures, tmp_path):
    """Every data segment sent twice, and split in two overlapping halves
    sent in reverse order: nothing changes but the counters."""
    cap = captures["deflate_large"]
    base = decode(cap.path, "-p", cap.port)
    out = []
    for p, s in items_of(cap.path):
        n = len(s.payload)
        if n < 4 or s.flags & (pl.SYN | pl.FIN):
            out.append((p.ts, s))
            continue
        a, b = n // 3, 2 * n // 3
        first = s.copy(payload=s.payload[:b])                    # [0, 2n/3)
        second = s.copy(seq=s.seq + a, payload=s.payload[a:])   # [n/3, n)
        out += [(p.ts, second), (p.ts, first), (p.ts, s), (p.ts, second)]
    f = write(tmp_path / "dups.pcap", out)
    evs = decode(f, "-p", cap.port)
    assert no_ts(evs) == no_ts(base)
    r = run("-r", f, "-p", cap.port, "--json")
    s = summary(r.err)
    assert "0 overlaps with different data" in s
    assert int(s.split(" retransmitted")[0].rsplit(" ", 1)[1]) >= len(frames(base))


def test_conflicting_overlap_first_copy_wins(tmp_path):
    c = pl.Conn()
    c.open()
    c.handshake()
    msg = pl.ws_frame('{"type":"say","content":"AAAA BBBB"}', mask=MASK)
    seq = c.seq["c"]
    # the second half first (it waits), then all of it with other bytes in
    # the part that overlaps: the bytes that arrived first are kept
    half = len(msg) // 2
    c.emit(c._seg("c", pl.ACK | pl.PSH, msg[half:], seq=seq + half))
    forged = msg[:half] + bytes(b ^ 0x01 for b in msg[half:])
    c.emit(c._seg("c", pl.ACK | pl.PSH, forged, seq=seq))
    c.seq["c"] += len(msg)
    c.close()
    f = tmp_path / "conflict.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    assert [e["text"] for e in frames(evs)] == ['{"type":"say","content":"AAAA BBBB"}']
    r = run("-r", f, "--json")
    assert "1 overlaps with different data" in summary(r.err)


# ---- holes ----

def drop_segment(cap, tmp_path, pick):
    """Writes the capture without the data segment pick(list) chooses;
    returns (path, the dropped Seg)."""
    items = items_of(cap.path)
    data = [(i, s) for i, (p, s) in enumerate(items) if s.payload]
    i, victim = pick(data)
    # drop every copy of it (the capture may hold a retransmission)
    keep = [(p.ts, s) for p, s in items
            if not (s.sport == victim.sport and s.seq == victim.seq and s.payload)]
    return write(tmp_path / "hole.pcap", keep), victim


def test_hole_inside_a_payload_replaces_that_frame(captures, tmp_path):
    """A segment in the middle of the server's 300 kB message is lost: a gap
    of its size, that message is replaced by the gap, and decoding resumes
    at the next frame (the binary echo and the rest)."""
    cap = captures["large"]

    def pick(data):
        big = [(i, s) for i, s in data if s.sport == cap.port and len(s.payload) > 30000]
        return big[1]           # not the first: that one holds the header

    f, victim = drop_segment(cap, tmp_path, pick)
    evs = decode(f, "-p", cap.port)
    srv = server_addr(cap)
    gaps = [e for e in evs if e["event"] == "gap"]
    assert [(g["src"], g["missing"]) for g in gaps] == [(srv, len(victim.payload))]
    sent = sent_messages(cap, "s2c")
    big = next(m for m in sent if '"big"' in m[1])
    got = messages([e for e in evs if e["src"] == srv])
    assert got == [m for m in sent if m != big]
    # the gap comes where the big message would have been
    order = [e["event"] for e in evs if e["src"] == srv]
    assert order.index("gap") < len(order) - 3
    assert messages([e for e in evs if e["dst"] == srv]) == sent_messages(cap, "c2s")
    assert [e["event"] for e in evs].count("tcp_close") == 1


def send_in_pieces(c, side, data, size, drop=()):
    """data from side in segments of size bytes; the pieces whose index is
    in drop are sent but never captured."""
    for k, i in enumerate(range(0, len(data), size)):
        piece = data[i:i + size]
        if k in drop:
            c.seq[side] += len(piece)
        else:
            c.send(side, piece)


def deflate_session(path, nocontext, drop):
    """The server sends three compressed messages, the first 40 kB in 1000
    byte segments, with a segment of it lost; the others refer back to it."""
    c = pl.Conn()
    c.open()
    ext = "permessage-deflate" + ("; server_no_context_takeover" if nocontext else "")
    c.handshake(extensions="permessage-deflate", response_extensions=ext)
    rng = random.Random(7)
    big = "".join(rng.choice("abcdefghij klmnop") for _ in range(40000))
    texts = [big, "oi, pessoal ! " + big[:2000], "tchau " + big[5000:6000]]
    shared = zlib.compressobj(6, zlib.DEFLATED, -15)
    for i, t in enumerate(texts):
        comp = zlib.compressobj(6, zlib.DEFLATED, -15) if nocontext else shared
        frame = pl.ws_frame(pl.deflate_raw(t.encode(), comp), rsv1=True)
        send_in_pieces(c, "s", frame, 1000, drop if i == 0 else ())
    c.close()
    pl.write_session(str(path), [c])
    return texts


def test_hole_in_compressed_message_loses_the_context(tmp_path):
    """With context takeover, the messages after a hole in a compressed one
    cannot be inflated (their back-references point into the lost bytes):
    they are shown in hex with the reason, never as garbage text."""
    f = tmp_path / "zhole.pcap"
    deflate_session(f, nocontext=False, drop={5})
    evs = decode(f)
    assert [e["missing"] for e in evs if e["event"] == "gap"] == [1000]
    fr = frames(evs, src="127.0.0.1:7272")
    assert len(fr) == 2             # the message with the hole is not shown
    for e in fr:
        assert "text" not in e and "context lost" in e["error"] and e["rsv1"]


def test_hole_in_compressed_message_without_context_takeover(tmp_path):
    """server_no_context_takeover: each message stands alone, so the ones
    after the hole are inflated."""
    f = tmp_path / "zhole_nc.pcap"
    texts = deflate_session(f, nocontext=True, drop={5})
    evs = decode(f)
    assert [e["missing"] for e in evs if e["event"] == "gap"] == [1000]
    assert messages(evs) == [("text", t) for t in texts[1:]]
    # and without the hole, all three, with or without context takeover
    for nc in (False, True):
        f = tmp_path / f"z{nc}.pcap"
        texts = deflate_session(f, nocontext=nc, drop=())
        evs = decode(f)
        assert messages(evs) == [("text", t) for t in texts]
        assert all(e.get("compressed") for e in frames(evs) if e["opcode"] == "text")


def test_hole_at_a_header_stops_that_direction(captures, tmp_path):
    """The segment holding the server's login message (a whole frame, header
    included) is lost: gap, then nothing more from the server, while the
    client's messages are still decoded."""
    cap = captures["basic"]

    def pick(data):
        return [(i, s) for i, s in data if s.sport == cap.port][2]   # 101, user_list, login

    f, victim = drop_segment(cap, tmp_path, pick)
    evs = decode(f, "-p", cap.port)
    srv = server_addr(cap)
    ev_srv = [e for e in evs if e["src"] == srv]
    names = [e["event"] for e in ev_srv]
    gap = names.index("gap")
    assert ev_srv[gap]["missing"] == len(victim.payload)
    assert "frame" not in names[gap + 1:]
    assert messages([e for e in evs if e["dst"] == srv]) == sent_messages(cap, "c2s")
    assert [e["event"] for e in evs].count("tcp_close") == 1


def test_lost_tail_before_fin_is_a_gap(tmp_path):
    c = pl.Conn()
    c.open()
    c.handshake()
    c.c2s(pl.ws_frame('{"type":"login","name":"mynick"}', mask=MASK))
    lost = pl.ws_frame('{"type":"say","content":"never seen"}', mask=MASK)
    c.seq["c"] += len(lost)     # sent, never captured
    c.close()
    f = tmp_path / "tail.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    assert [e["event"] for e in evs][-3:] == ["frame", "gap", "tcp_close"]
    assert evs[-2]["missing"] == len(lost) and evs[-2]["src"] == "127.0.0.1:50000"


def test_fin_before_the_last_data(tmp_path):
    """The server closes first; the client's last data and its FIN arrive
    in reverse order: the connection closes once the data is in, nothing
    lost."""
    c = pl.Conn()
    c.open()
    c.handshake()
    last = pl.ws_frame('{"type":"say","content":"last words"}', mask=MASK)
    seg = c.c2s(last, ack=False)
    c.out.pop()
    c.close(first="s")          # server FIN, client FIN, server ACK
    c.out.insert(len(c.out) - 1, (c.t, seg))
    f = tmp_path / "fin.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    assert [e["event"] for e in evs][-2:] == ["frame", "tcp_close"]
    assert evs[-2]["text"] == '{"type":"say","content":"last words"}'


# ---- snaplen ----

def check_cut(evs, cap):
    """After 'truncated', nothing more from that direction; before it, only
    good frames."""
    assert not [e for e in evs if "error" in e or e["event"] == "gap"]
    for src in {e["src"] for e in evs if e["event"] == "truncated"}:
        names = [e["event"] for e in evs if e["src"] == src]
        assert names.count("truncated") == 1
        assert "frame" not in names[names.index("truncated") + 1:]


def test_snaplen_option_cuts_like_a_capture(captures, tmp_path):
    """-s 300 on the file: the first packet longer than that stops its
    direction with one 'truncated'; what came before is decoded."""
    cap = captures["large"]
    evs = decode(cap.path, "-p", cap.port, "-s", 300)
    check_cut(evs, cap)
    srv = server_addr(cap)
    cut = [e for e in evs if e["event"] == "truncated"]
    assert {e["src"] for e in cut} == {srv, evs[0]["src"]}
    # the small messages before the big ones are all there
    got = messages([e for e in evs if e["src"] == srv])
    assert got == sent_messages(cap, "s2c")[:len(got)] and len(got) == 3
    got = messages([e for e in evs if e["dst"] == srv])
    assert got == sent_messages(cap, "c2s")[:len(got)] and len(got) == 3
    # -w keeps the cut: the copy decodes the same way
    w = tmp_path / "cut.pcap"
    run("-r", cap.path, "-p", cap.port, "-s", 300, "-w", w, "--json", "-q")
    assert max(len(p.data) for p in pl.read_pcap(str(w))[1]) <= 300
    assert no_ts(decode(w, "-p", cap.port)) == no_ts(evs)


def test_snaplen_of_tcpdump(captures):
    """A file tcpdump recorded with -s 300: same as above, and never garbage
    (tshark, which ignores the cut, is not asked)."""
    cap = captures["large_snap300"]
    evs = decode(cap.path, "-p", cap.port)
    check_cut(evs, cap)
    assert [e["event"] for e in evs].count("truncated") == 2
    srv = server_addr(cap)
    assert messages([e for e in evs if e["src"] == srv]) == sent_messages(cap, "s2c")[:3]


def test_snaplen_cutting_the_tcp_header(captures, tmp_path):
    """A snaplen so short it cuts inside the TCP options: still attributed
    to its connection and reported as truncated."""
    cap = captures["basic"]
    evs = decode(cap.path, "-p", cap.port, "-s", 60)
    assert [e["event"] for e in evs] == ["tcp_open", "truncated", "truncated", "tcp_close"]


# ---- sequence numbers ----

def test_sequence_wraparound(captures, tmp_path):
    """Sequence numbers shifted so that they wrap at 2^32 in the middle of
    the 300 kB and 500 kB messages, both ways."""
    cap = captures["large"]
    items = items_of(cap.path)
    isn = {}
    for p, s in items:
        if s.flags & pl.SYN:
            isn[s.sport] = s.seq
    shift = {port: (2**32 - 150000 - v) % 2**32 for port, v in isn.items()}
    out = []
    for p, s in items:
        t = s.copy(seq=(s.seq + shift[s.sport]) % 2**32)
        if s.flags & pl.ACK:
            t = t.copy(ack=(s.ack + shift[s.dport]) % 2**32)
        out.append((p.ts, t))
    f = write(tmp_path / "wrap.pcap", out)
    assert no_ts(decode(f, "-p", cap.port)) == no_ts(decode(cap.path, "-p", cap.port))
    assert our_headers(decode(f, "-p", cap.port)) == tshark_headers(tshark_frames(f, cap.port))


# ---- FIN and RST ----

def test_rst_closes_once(tmp_path):
    c = pl.Conn()
    c.open()
    c.handshake()
    c.c2s(pl.ws_frame('{"type":"login","name":"mynick"}', mask=MASK))
    c.rst("s")
    c.rst("s")
    c.c2s(pl.ws_frame('{"type":"say","content":"too late"}', mask=MASK))
    f = tmp_path / "rst.pcap"
    pl.write_session(str(f), [c])
    evs = decode(f)
    assert [e["event"] for e in evs] == ["tcp_open", "handshake_request", "handshake_response",
                                         "frame", "tcp_close"]
    assert evs[-1]["src"] == "127.0.0.1:7272" and evs[-1]["reason"] == "rst"


def test_new_connection_on_the_same_ports(tmp_path):
    """A connection closed, then the same four-tuple opens again (new ISN):
    two connections."""
    a = pl.Conn(isn_c=1000, isn_s=5000)
    a.open()
    a.handshake()
    a.c2s(pl.ws_frame("first", mask=MASK))
    a.close()
    b = pl.Conn(isn_c=900000, isn_s=700000, t0=a.t + 1)
    b.open()
    b.handshake()
    b.c2s(pl.ws_frame("second", mask=MASK))
    b.close()
    f = tmp_path / "reuse.pcap"
    pl.write_session(str(f), [a, b])
    evs = decode(f)
    assert [e["event"] for e in evs].count("tcp_open") == 2
    assert [e["event"] for e in evs].count("tcp_close") == 2
    assert [e["text"] for e in frames(evs)] == ["first", "second"]


# ---- memory ----

def test_waiting_bytes_are_bounded(tmp_path):
    """A hole that is never filled, followed by 3 MB: the decoder holds at
    most about a megabyte per direction, declares the hole lost, and goes
    on decoding."""
    c = pl.Conn()
    c.open()
    c.handshake()
    c.s2c(pl.ws_frame("before"))
    c.seq["s"] += 1000          # lost, with the header of a frame
    chunk = pl.ws_frame("x" * 60000)
    n = 3_000_000 // len(chunk)
    for _ in range(n):
        c.s2c(chunk, ack=False)
    c.close()
    f = tmp_path / "bounded.pcap"
    pl.write_session(str(f), [c])
    r = run("-r", f, "--json")
    evs = r.events()
    assert [e["event"] for e in evs if e["src"] == "127.0.0.1:7272"][:3] == \
        ["handshake_response", "frame", "gap"]
    # the lost bytes held a frame header: that direction stops there
    assert len(frames(evs)) == 1
    peak = int(summary(r.err).split("peak ")[1].split(" ")[0])
    assert peak < 1500, peak    # KiB


def test_memory_budget_evicts_least_recent(tmp_path):
    """60 connections each waiting behind a hole with 200 kB; with
    --max-mem=4M the oldest are evicted ('memory') and the peak stays near
    the budget."""
    f = tmp_path / "budget.pcap"
    pl.write_session(str(f), pl.held_behind_holes())
    r = run("-r", f, "--json", "--max-mem=4M")
    evs = r.events()
    evicted = [e for e in evs if e["event"] == "tcp_evict"]
    assert evicted and all(e["reason"] == "memory" for e in evicted)
    peak = int(summary(r.err).split("peak ")[1].split(" ")[0])
    assert peak < 4096 + 512, peak


def test_idle_flows_are_evicted(tmp_path):
    a = pl.Conn(client=("127.0.0.1", 40001), t0=1e9)
    a.open()
    a.handshake()
    a.c2s(pl.ws_frame("hello", mask=MASK))
    b = pl.Conn(client=("127.0.0.1", 40002), t0=1e9 + 250)
    b.open()
    f = tmp_path / "idle.pcap"
    pl.write_session(str(f), [a, b])
    evs = decode(f, "--idle=100")
    ev = [e for e in evs if e["event"] == "tcp_evict"]
    assert len(ev) == 1 and ev[0]["reason"] == "idle" and ev[0]["src"] == "127.0.0.1:40001"
    assert ev[0]["ts"] >= 1e9 + 250
    assert not [e for e in decode(f) if e["event"] == "tcp_evict"]     # default: 300 s


def test_random_shuffle_within_a_window(captures, tmp_path):
    """Packets shuffled within windows of 6, pure ACKs dropped, a seeded
    shuffle: the same messages (what TCP promises) whatever the order."""
    cap = captures["fragmented"]
    rng = random.Random(4)
    items = [(p.ts, s) for p, s in items_of(cap.path)
             if s.payload or s.flags & (pl.SYN | pl.FIN | pl.RST)]
    head, rest = items[:4], items[4:]       # the SYNs and the handshake first
    out = list(head)
    fins = [x for x in rest if x[1].flags & pl.FIN]
    rest = [x for x in rest if not x[1].flags & pl.FIN]
    for i in range(0, len(rest), 6):
        w = rest[i:i + 6]
        rng.shuffle(w)
        out += w
    out += fins
    f = write(tmp_path / "shuffled.pcap", out)
    evs = decode(f, "-p", cap.port)
    srv = server_addr(cap)
    assert messages([e for e in evs if e["dst"] == srv]) == sent_messages(cap, "c2s")
    assert messages([e for e in evs if e["src"] == srv]) == sent_messages(cap, "s2c")
