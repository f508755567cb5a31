#!/usr/bin/python3
"""Writes the starting corpus of fuzz_capture into DIR: small sessions made
with tests/capture/pcaplib.py (plain and compressed, fragmented, IPv6,
pcapng, cooked link layer, a reset, TLS), each prefixed with the byte that
picks --json (odd) or the text view (even), and --keylog (bit 2).

    tests/fuzz/capture_seeds.py DIR
"""
import os
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "capture"))
import pcaplib as pl  # noqa: E402

MASK = b"\xa1\xb2\xc3\xd4"


def chat(c, deflate=False):
    comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if deflate else None

    def frame(text, **kw):
        if deflate:
            return pl.ws_frame(pl.deflate_raw(text.encode(), comp), rsv1=True, **kw)
        return pl.ws_frame(text, **kw)

    c.c2s(pl.ws_frame('{"type":"login","name":"mynick"}', mask=MASK))
    c.s2c(frame('{"type":"user_list","user_list":[{"uid":1,"name":"mynick"}]}'))
    c.c2s(pl.ws_frame('{"type":"say","to_uid":"all",', fin=False, mask=MASK) +
          pl.ws_frame(b"hi", opcode=9, mask=MASK) +
          pl.ws_frame('"content":"oi, pessoal !"}', opcode=0, mask=MASK))
    c.s2c(pl.ws_frame(b"hi", opcode=10))
    c.s2c(frame('{"type":"say","from_uid":1,"to_uid":"all","content":"oi, pessoal !"}'))
    c.c2s(pl.ws_frame(b"\x03\xe8bye", opcode=8, mask=MASK))
    c.s2c(pl.ws_frame(b"\x03\xe8", opcode=8))


def session(name, out, deflate=False, linktype=pl.ETHERNET, writer=pl.write_pcap, client=None,
            server=None, end="close"):
    kw = {}
    if client:
        kw = {"client": client, "server": server}
    c = pl.Conn(**kw)
    c.open()
    ext = "permessage-deflate; client_max_window_bits" if deflate else None
    c.handshake(extensions=ext, response_extensions="permessage-deflate" if deflate else None)
    chat(c, deflate)
    c.rst() if end == "rst" else c.close()
    path = os.path.join(out, name + ".pcap")
    pl.write_session(path, [c], linktype=linktype, writer=writer)
    data = open(path, "rb").read()
    os.unlink(path)
    for mode, prefix in (("json", b"\x01"), ("text", b"\x00")):
        with open(os.path.join(out, f"{name}-{mode}"), "wb") as f:
            f.write(prefix + data)


def tls_session(name, out, version):
    """wss:// with the all-zero client random that fuzz_capture's key log
    knows: the hellos, then records that the fuzzer can alter."""
    c = pl.Conn()
    c.open()
    if version == 3:
        c.c2s(pl.tls_hello(1, b"\x13\x01"))
        c.s2c(pl.tls_hello(2, b"\x13\x01", b"\x00\x2b\x00\x02\x03\x04", random=b"\x11" * 32))
    else:
        c.c2s(pl.tls_hello(1, b"\xc0\x2f"))
        c.s2c(pl.tls_hello(2, b"\xc0\x2f", random=b"\x11" * 32) + pl.tls_record(20, b"\x01"))
        c.c2s(pl.tls_record(20, b"\x01"))
    for i in range(3):
        c.c2s(pl.tls_record(23, bytes(range(i, 40 + i))))
        c.s2c(pl.tls_record(23, bytes(range(i, 60 + i))))
    c.close()
    path = os.path.join(out, name + ".pcap")
    pl.write_session(path, [c])
    data = open(path, "rb").read()
    os.unlink(path)
    for mode, prefix in (("json", b"\x03"), ("text", b"\x02")):
        with open(os.path.join(out, f"{name}-{mode}"), "wb") as f:
            f.write(prefix + data)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    session("plain", out)
    session("deflate", out, deflate=True)
    session("ipv6", out, client=("::1", 50000), server=("::1", 7272))
    session("pcapng", out, writer=pl.write_pcapng)
    session("sll2", out, linktype=pl.LINUX_SLL2, deflate=True)
    session("rst", out, end="rst")
    tls_session("tls12", out, 2)
    tls_session("tls13", out, 3)


if __name__ == "__main__":
    main()
