"""A small pure-Python pcap/pcapng reader and writer with TCP/IP packet
building, for making and rewriting the capture decoder's test inputs.

It knows just enough: pcap (both byte orders, micro- and nanosecond),
pcapng (SHB, IDB, EPB, SPB), the link types the decoder reads (Ethernet,
Linux cooked v1/v2, BSD NULL/LOOP, raw IP), IPv4, IPv6 and TCP. Packets are
rebuilt with correct lengths and checksums after they are edited.
"""
import struct
from dataclasses import dataclass, replace

ETHERNET, NULL, RAW, LOOP, LINUX_SLL, LINUX_SLL2 = 1, 0, 101, 108, 113, 276
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass
class Packet:
    ts: float
    data: bytes
    orig_len: int = -1          # -1: same as len(data)

    @property
    def wire_len(self):
        return len(self.data) if self.orig_len < 0 else self.orig_len


# ---- files ----

def read_pcap(path):
    """Returns (linktype, [Packet]) from a pcap or pcapng file."""
    with open(path, "rb") as f:
        buf = f.read()
    magic = buf[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(buf)
    for endian in "<>":
        m = struct.unpack(endian + "I", magic)[0]
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            nano = m == 0xA1B23C4D
            linktype = struct.unpack(endian + "I", buf[20:24])[0] & 0x0FFFFFFF
            pkts, off = [], 24
            while off + 16 <= len(buf):
                sec, frac, incl, orig = struct.unpack(endian + "IIII", buf[off:off + 16])
                data = buf[off + 16:off + 16 + incl]
                off += 16 + incl
                pkts.append(Packet(sec + frac / (1e9 if nano else 1e6), data, orig))
            return linktype, pkts
    raise ValueError("not a pcap file")


def _read_pcapng(buf):
    off, endian, linktype, pkts, tsres = 0, "<", None, [], 1e-6
    while off + 12 <= len(buf):
        btype = struct.unpack(endian + "I", buf[off:off + 4])[0]
        if btype == 0x0A0D0D0A:
            endian = "<" if buf[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        blen = struct.unpack(endian + "I", buf[off + 4:off + 8])[0]
        body = buf[off + 8:off + blen - 4]
        if btype == 1:
            linktype = struct.unpack(endian + "H", body[:2])[0]
        elif btype == 6:
            _, hi, lo, cap, orig = struct.unpack(endian + "IIIII", body[:20])
            pkts.append(Packet(((hi << 32) | lo) * tsres, body[20:20 + cap], orig))
        elif btype == 3:
            orig = struct.unpack(endian + "I", body[:4])[0]
            pkts.append(Packet(0.0, body[4:4 + orig], orig))
        off += blen
    return linktype, pkts


def _ts_split(ts, nano=False):
    sec = int(ts)
    unit = 1_000_000_000 if nano else 1_000_000
    frac = int(round((ts - sec) * unit))
    if frac >= unit:
        sec, frac = sec + 1, frac - unit
    return sec, frac


def write_pcap(path, linktype, packets, snaplen=262144, nano=False, endian="<"):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for p in packets:
        sec, frac = _ts_split(p.ts, nano)
        out.append(struct.pack(endian + "IIII", sec, frac, len(p.data), p.wire_len))
        out.append(p.data)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def _block(btype, body):
    pad = (-len(body)) % 4
    n = 12 + len(body) + pad
    return struct.pack("<II", btype, n) + body + b"\0" * pad + struct.pack("<I", n)


def write_pcapng(path, linktype, packets, snaplen=262144):
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           _block(1, struct.pack("<HHI", linktype, 0, snaplen))]
    for p in packets:
        t = int(round(p.ts * 1e6))
        out.append(_block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF,
                                         len(p.data), p.wire_len) + p.data))
    with open(path, "wb") as f:
        f.write(b"".join(out))


# ---- TCP/IP ----

@dataclass
class Seg:
    """A TCP segment, independent of its link layer."""
    src: str
    dst: str
    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: int = ACK
    payload: bytes = b""
    window: int = 65535
    options: bytes = b""
    ipver: int = 4

    def copy(self, **kw):
        return replace(self, **kw)


def _ip_bytes(addr, ipver):
    import socket
    return socket.inet_pton(socket.AF_INET if ipver == 4 else socket.AF_INET6, addr)


def _ip_str(b):
    import socket
    return socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, b)


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_ip(seg):
    """IP header + TCP header + payload, checksums filled in."""
    opts = seg.options + b"\0" * ((-len(seg.options)) % 4)
    off = (20 + len(opts)) // 4
    src, dst = _ip_bytes(seg.src, seg.ipver), _ip_bytes(seg.dst, seg.ipver)
    tcp = struct.pack("!HHIIBBHHH", seg.sport, seg.dport, seg.seq & 0xFFFFFFFF,
                      seg.ack & 0xFFFFFFFF, off << 4, seg.flags, seg.window, 0, 0) + opts
    seglen = len(tcp) + len(seg.payload)
    if seg.ipver == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, seglen)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", seglen, 6)
    ck = _csum(pseudo + tcp + seg.payload)
    tcp = tcp[:16] + struct.pack("!H", ck) + tcp[18:]
    if seg.ipver == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + seglen, 0, 0x4000, 64, 6, 0, src, dst)
        hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    else:
        hdr = struct.pack("!IHBB16s16s", 6 << 28, seglen, 6, 64, src, dst)
    return hdr + tcp + seg.payload


def link_header(linktype, ipver):
    ethertype = 0x0800 if ipver == 4 else 0x86DD
    if linktype == ETHERNET:
        return b"\0" * 12 + struct.pack("!H", ethertype)
    if linktype == LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 772, 6, b"", ethertype)
    if linktype == LINUX_SLL2:
        return struct.pack("!HHIHBB8s", ethertype, 0, 1, 772, 0, 6, b"")
    if linktype == NULL:
        return struct.pack("<I", 2 if ipver == 4 else 30)
    if linktype == LOOP:
        return struct.pack("!I", 2 if ipver == 4 else 24)
    if linktype == RAW:
        return b""
    raise ValueError(f"link type {linktype}")


def build(linktype, seg):
    return link_header(linktype, seg.ipver) + build_ip(seg)


def link_len(linktype, data):
    if linktype == ETHERNET:
        off = 12
        while struct.unpack("!H", data[off:off + 2])[0] in (0x8100, 0x88A8):
            off += 4
        return off + 2
    return {LINUX_SLL: 16, LINUX_SLL2: 20, NULL: 4, LOOP: 4, RAW: 0}[linktype]


def parse(linktype, data):
    """The TCP segment in a whole (not truncated) frame, or None."""
    try:
        ip = data[link_len(linktype, data):]
        ver = ip[0] >> 4
        if ver == 4:
            hl, total, proto = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0], ip[9]
            src, dst = ip[12:16], ip[16:20]
        elif ver == 6:
            hl, total, proto = 40, 40 + struct.unpack("!H", ip[4:6])[0], ip[6]
            src, dst = ip[8:24], ip[24:40]
        else:
            return None
        if proto != 6:
            return None
        tcp = ip[hl:total]
        sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", tcp[:16])
        thl = (off >> 4) * 4
        return Seg(_ip_str(src), _ip_str(dst), sport, dport, seq, ack, flags,
                   bytes(tcp[thl:]), win, bytes(tcp[20:thl]), ver)
    except (IndexError, struct.error, KeyError):
        return None


def segments(path):
    """(linktype, [(Packet, Seg or None)]) of a file."""
    lt, pkts = read_pcap(path)
    return lt, [(p, parse(lt, p.data)) for p in pkts]


def rewrite(path_in, path_out, fn, linktype_out=None, writer=write_pcap):
    """Applies fn([(Packet, Seg)]) -> [(ts, Seg)] and writes the result."""
    lt, items = segments(path_in)
    out_lt = linktype_out if linktype_out is not None else lt
    res = fn([(p, s) for p, s in items if s is not None])
    writer(path_out, out_lt, [Packet(ts, build(out_lt, s)) for ts, s in res])


# ---- WebSocket frames ----

def ws_frame(payload, opcode=1, fin=True, mask=None, rsv1=False):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask is None:
        return hdr + payload
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return hdr + bytes(mask) + masked


def deflate_raw(data, compressor=None):
    """RFC 7692: raw deflate, sync flush, the final 00 00 ff ff removed."""
    import zlib
    c = compressor or zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# ---- whole sessions from scratch ----

class Conn:
    """A TCP connection written packet by packet: handshake, data both ways
    (each call is one segment, ACKed by the peer), FIN or RST. Times advance
    by `step` seconds per packet unless given."""

    def __init__(self, client=("127.0.0.1", 50000), server=("127.0.0.1", 7272),
                 isn_c=1000, isn_s=5000, t0=1407865800.0, step=0.0001, ipver=None):
        self.c, self.s = client, server
        self.ipver = ipver or (6 if ":" in client[0] else 4)
        self.seq = {"c": isn_c, "s": isn_s}
        self.t = t0
        self.step = step
        self.out = []   # [(ts, Seg)]

    def _seg(self, side, flags, payload=b"", seq=None, ack=True):
        a, b = (self.c, self.s) if side == "c" else (self.s, self.c)
        other = "s" if side == "c" else "c"
        s = Seg(a[0], b[0], a[1], b[1], self.seq[side] if seq is None else seq,
                self.seq[other] if ack else 0, flags, payload, ipver=self.ipver)
        return s

    def emit(self, seg, ts=None):
        self.t = ts if ts is not None else self.t + self.step
        self.out.append((self.t, seg))
        return seg

    def open(self):
        self.emit(self._seg("c", SYN, ack=False))
        self.seq["c"] += 1
        self.emit(self._seg("s", SYN | ACK))
        self.seq["s"] += 1
        self.emit(self._seg("c", ACK))

    def send(self, side, payload, ack=True, ts=None):
        """One data segment from side ('c' or 's'), then the peer's ACK."""
        seg = self.emit(self._seg(side, PSH | ACK, payload), ts)
        self.seq[side] += len(payload)
        if ack:
            self.emit(self._seg("s" if side == "c" else "c", ACK))
        return seg

    def c2s(self, payload, **kw):
        return self.send("c", payload, **kw)

    def s2c(self, payload, **kw):
        return self.send("s", payload, **kw)

    def close(self, first="c"):
        other = "s" if first == "c" else "c"
        self.emit(self._seg(first, FIN | ACK))
        self.seq[first] += 1
        self.emit(self._seg(other, FIN | ACK))
        self.seq[other] += 1
        self.emit(self._seg(first, ACK))

    def rst(self, side="c"):
        self.emit(self._seg(side, RST | ACK))

    def handshake(self, path="/", key="zPDr6m4czzUdOFnsxIUEAw==",
                  accept="nSsCeIBUsFnDJCRb/BNlFzBUDpM=", extensions=None,
                  response_extensions=None):
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:7272\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n")
        if extensions:
            req += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        self.c2s((req + "\r\n").encode())
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n")
        if response_extensions:
            resp += f"Sec-WebSocket-Extensions: {response_extensions}\r\n"
        self.s2c((resp + "\r\n").encode())


def write_session(path, conns, linktype=ETHERNET, writer=write_pcap, snaplen=262144):
    """Writes the packets of several Conns, merged by time."""
    items = sorted((p for c in conns for p in c.out), key=lambda x: x[0])
    pkts = [Packet(ts, build(linktype, s)) for ts, s in items]
    if writer is write_pcap:
        write_pcap(path, linktype, pkts, snaplen)
    else:
        writer(path, linktype, pkts)


# ---- TLS ----

def tls_record(ctype, body):
    """One TLS record (TLS 1.2's version in its header, as 1.3 writes too)."""
    return bytes([ctype, 3, 3]) + len(body).to_bytes(2, "big") + body


def tls_hello(htype, suite, extensions=b"", random=bytes(32), version=b"\x03\x03"):
    """A ClientHello offering one suite (htype 1) or a ServerHello choosing
    it (htype 2), in its record."""
    body = version + random + b"\x00"
    if htype == 1:
        body += b"\x00\x02" + suite + b"\x01\x00"
    else:
        body += suite + b"\x00"
    body += len(extensions).to_bytes(2, "big") + extensions
    return tls_record(22, bytes([htype]) + len(body).to_bytes(3, "big") + body)


def held_behind_holes(n=60, frames=4, size=50000):
    """n connections, each holding frames x size bytes from the server
    behind a 10-byte hole: what a memory budget has to evict."""
    conns = []
    for i in range(n):
        c = Conn(client=("127.0.0.1", 40000 + i), t0=1e9 + i * 0.01)
        c.open()
        c.handshake()
        c.seq["s"] += 10
        for _ in range(frames):
            c.s2c(ws_frame("y" * size), ack=False)
        conns.append(c)
    return conns
