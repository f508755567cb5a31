#!/usr/bin/python3
"""Writes a pcap of chat traffic for benchmarking `tagarela capture`.

    gen_chat_pcap.py OUT.pcap [--size MB] [--seed N] [--port 7272]

What is in it, as a chat server on a LAN would see it on port 7272:
clients (10.1.x.y) open TCP connections, send a browser's upgrade request
(a third of them, by default, offer permessage-deflate, which the server
accepts), log
in, and talk in rooms of 2 to 30 people; every `say` from a client (masked,
like a browser's) is broadcast by the server to each member of the room,
one segment per recipient (300 rooms, about 5000 people connected at any
time, whatever the size asked for). Now and then someone pastes something long (a
message of several kB, cut into 1448-byte segments), the server pings and
is ponged, and people leave (close frames, then FIN) while others join.
The compressed connections keep a deflate context per direction, as
permessage-deflate does by default. Clients ACK like delayed-ACK TCP.

Everything is decodable: the decoder must find every message in the clear.
Packets are Ethernet/IPv4/TCP (with the timestamp option, like Linux), with
correct checksums, in time order, written straight to disk as they are made.
"""
import argparse
import base64
import hashlib
import random
import struct
import sys
import zlib

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
ETH = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
SERVER_IP = bytes([10, 0, 0, 1])
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MSS = 1448

WORDS = ("oi pessoal tudo bem com voces hoje alguem viu o jogo de ontem sim nao talvez "
         "amanha vamos almocar onde que horas reuniao as tres obrigado valeu beleza "
         "kkkk rsrs boa noite bom dia a o e de para com sem mais menos muito pouco "
         "servidor caiu voltou agora ja esta funcionando de novo que bom chat sala "
         "mensagem enviar receber aqui ali la cafe pao queijo saudade").split()
NAMES = ("ana bia caio davi eva fabio gabi hugo iris joao kaua lia marcos nina otavio "
         "paula rafa sofia tiago uriel vera wagner xuxa yara zeca").split()


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum_le(b):
    """Internet checksum of b, to be stored little-endian (RFC 1071: the sum
    is byte-order independent, so summing native words is fine)."""
    if len(b) & 1:
        b += b"\0"
    return ~fold(sum(memoryview(b).cast("H"))) & 0xFFFF


def mask(data, key):
    n = len(data)
    rep = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(rep, "big")).to_bytes(n, "big")


def ws_frame(payload, opcode=1, masked=False, rsv1=False, rng=None):
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not masked:
        return hdr + payload
    key = rng.randbytes(4)
    return hdr + key + mask(payload, key)


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb", buffering=1 << 20)
        self.f.write(PCAP_HEADER)
        self.bytes = len(PCAP_HEADER)
        self.packets = 0
        self.t = 1407865800.0       # the seed's day, 17:50
        self.ipid = 0

    def packet(self, src_ip, dst_ip, sport, dport, seq, ack, flags, payload, tsval):
        opts = struct.pack("!BBBBII", 1, 1, 8, 10, tsval & 0xFFFFFFFF, (tsval - 1) & 0xFFFFFFFF)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          (20 + len(opts)) // 4 << 4, flags, 501, 0, 0) + opts
        seglen = len(tcp) + len(payload)
        pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 6, seglen)
        ck = csum_le(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack("<H", ck) + tcp[18:]
        self.ipid = (self.ipid + 1) & 0xFFFF
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + seglen, self.ipid, 0x4000, 64, 6, 0,
                         src_ip, dst_ip)
        ip = ip[:10] + struct.pack("<H", csum_le(ip)) + ip[12:]
        frame = ETH + ip + tcp + payload
        sec = int(self.t)
        usec = int((self.t - sec) * 1e6)
        self.f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        self.f.write(frame)
        self.bytes += 16 + len(frame)
        self.packets += 1

    def close(self):
        self.f.close()


class Conn:
    """One client's TCP connection and WebSocket session."""

    def __init__(self, gen, ip, port, room, deflate):
        self.g, self.ip, self.port, self.room = gen, ip, port, room
        rng = gen.rng
        self.cseq, self.sseq = rng.getrandbits(32), rng.getrandbits(32)
        self.deflate = deflate
        self.cz = zlib.compressobj(6, zlib.DEFLATED, -15) if deflate else None
        self.sz = zlib.compressobj(6, zlib.DEFLATED, -15) if deflate else None
        self.uid = rng.randrange(10**8, 10**9)
        self.name = rng.choice(NAMES) + str(rng.randrange(100))
        self.unacked = 0        # server segments the client has not ACKed yet

    def seg(self, from_client, flags, payload=b""):
        g = self.g
        g.w.t += g.rng.random() * 0.0002
        tsval = int(g.w.t * 1000)
        if from_client:
            g.w.packet(self.ip, SERVER_IP, self.port, g.port, self.cseq, self.sseq, flags,
                       payload, tsval)
            self.cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        else:
            g.w.packet(SERVER_IP, self.ip, g.port, self.port, self.sseq, self.cseq, flags,
                       payload, tsval)
            self.sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)

    def data(self, from_client, payload):
        """payload in MSS-sized segments; the receiver ACKs like delayed-ACK
        TCP (the server at once, the client every second segment)."""
        for i in range(0, len(payload), MSS):
            self.seg(from_client, ACK | PSH, payload[i:i + MSS])
            if from_client:
                self.seg(False, ACK)
            else:
                self.unacked += 1
                if self.unacked >= 2:
                    self.seg(True, ACK)
                    self.unacked = 0

    def message(self, from_client, text, opcode=1):
        data = text.encode()
        rsv1 = False
        if self.deflate and opcode in (1, 2) and len(data) > 20:
            z = self.cz if from_client else self.sz
            data = (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
            rsv1 = True
        self.data(from_client, ws_frame(data, opcode, masked=from_client, rsv1=rsv1,
                                        rng=self.g.rng))
        self.g.messages += 1

    def open(self):
        g = self.g
        self.seg(True, SYN)
        self.seg(False, SYN | ACK)
        self.seg(True, ACK)
        key = g.rng.randbytes(16)
        key = base64.b64encode(key).decode()
        req = (f"GET / HTTP/1.1\r\nHost: chat.example:{g.port}\r\n"
               "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
               "Accept: */*\r\nAccept-Language: pt-BR,pt;q=0.8,en-US;q=0.5,en;q=0.3\r\n"
               "Accept-Encoding: gzip, deflate\r\nSec-WebSocket-Version: 13\r\n"
               "Origin: http://chat.example:55151\r\n"
               + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.deflate else "")
               + f"Sec-WebSocket-Key: {key}\r\nConnection: keep-alive, Upgrade\r\n"
               "Pragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n")
        self.data(True, req.encode())
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.deflate else "")
                + f"Sec-WebSocket-Accept: {accept}\r\n\r\n")
        self.data(False, resp.encode())

    def close(self):
        self.data(True, ws_frame(struct.pack("!H", 1000), 8, masked=True, rng=self.g.rng))
        self.data(False, ws_frame(struct.pack("!H", 1000), 8))
        self.seg(False, FIN | ACK)
        self.seg(True, FIN | ACK)
        self.seg(False, ACK)


class Gen:
    def __init__(self, path, seed, port, deflate_share):
        self.deflate_share = deflate_share
        self.rng = random.Random(seed)
        self.w = Writer(path)
        self.port = port
        self.rooms = {}
        self.next_client = 0
        self.messages = 0

    def new_conn(self, room):
        n = self.next_client
        self.next_client += 1
        ip = bytes([10, 1, (n >> 8) & 0xFF, n & 0xFF])
        port = 20000 + (n * 7919) % 40000
        c = Conn(self, ip, port, room, deflate=self.rng.random() < self.deflate_share)
        c.open()
        members = self.rooms.setdefault(room, [])
        members.append(c)
        c.message(True, f'{{"type":"login","name":"{c.name}","room_id":"{room}"}}')
        users = ",".join(f'{{"uid":{m.uid},"name":"{m.name}"}}' for m in members)
        c.message(False, f'{{"type":"user_list","user_list":[{users}]}}')
        for m in members:
            m.message(False, f'{{"type":"login","uid":{c.uid},"name":"{c.name}",'
                             f'"time":"2014-08-12 17:50:30"}}')
        return c

    def leave(self, room):
        members = self.rooms[room]
        c = members.pop(self.rng.randrange(len(members)))
        c.close()
        for m in members:
            m.message(False, f'{{"type":"logout","uid":{c.uid},"time":"2014-08-12 17:59:00"}}')

    def say(self, room):
        rng = self.rng
        members = self.rooms[room]
        c = rng.choice(members)
        if rng.random() < 0.005:        # someone pastes a log
            content = "\\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(rng.randrange(20, 120)))
        else:
            content = " ".join(rng.choices(WORDS, k=rng.randrange(1, 30)))
        if rng.random() < 0.1:
            content += " \u00e9 \u00e7\u00e3o \U0001F600"
        c.message(True, f'{{"type":"say","to_uid":"all","content":"{content}"}}')
        self.msg_id = getattr(self, "msg_id", 0) + 1
        out = (f'{{"type":"say","from_uid":{c.uid},"to_uid":"all","content":"{content}",'
               f'"time":"2014-08-12 17:51:02","id":{self.msg_id}}}')
        for m in members:
            m.message(False, out)

    def ping(self, room):
        c = self.rng.choice(self.rooms[room])
        c.data(False, ws_frame(b"", 9))
        c.data(True, ws_frame(b"", 10, masked=True, rng=self.rng))

    def run(self, size):
        rng = self.rng
        for r in range(300):
            for _ in range(rng.randrange(2, 31)):
                self.new_conn(str(r + 1))
        rooms = list(self.rooms)
        while self.w.bytes < size:
            room = rng.choice(rooms)
            x = rng.random()
            if x < 0.02 and len(self.rooms[room]) > 2:
                self.leave(room)
            elif x < 0.04:
                self.new_conn(room)
            elif x < 0.06:
                self.ping(room)
            else:
                self.say(room)
        for room in rooms:
            while self.rooms[room]:
                self.leave(room) if len(self.rooms[room]) > 1 else self.rooms[room].pop().close()
        self.w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=float, default=300, help="MB to write (default 300)")
    ap.add_argument("--seed", type=int, default=7272)
    ap.add_argument("--port", type=int, default=7272)
    ap.add_argument("--deflate-share", type=float, default=1 / 3,
                    help="share of the connections that use permessage-deflate (default 1/3)")
    a = ap.parse_args()
    g = Gen(a.out, a.seed, a.port, a.deflate_share)
    g.run(int(a.size * 1e6))
    print(f"{a.out}: {g.w.bytes} bytes, {g.w.packets} packets, {g.next_client} connections, "
          f"{g.messages} messages", file=sys.stderr)


if __name__ == "__main__":
    main()
