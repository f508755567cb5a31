"""Chat-like WebSocket traffic made with python3-websockets, for capturing.

Run as a script: `traffic.py SCENARIO HOST PORT` starts a server on
HOST:PORT, runs the scenario's clients against it and exits. With
TRAFFIC_TLS=1.2 or 1.3 in the environment it speaks wss:// instead, with
the certificate TRAFFIC_CERT and key TRAFFIC_KEY, the client writing the
NSS key log TRAFFIC_KEYLOG; TRAFFIC_CIPHERS limits TLS 1.2 suites (TLS 1.3
ones are chosen with an OPENSSL_CONF file). Each scenario
exercises one thing the capture decoder must get right; what the clients
and the server sent is printed as JSON lines on stdout (the expectation
the tests compare the decoder's output with).
"""
import asyncio
import json
import os
import ssl
import sys

import websockets
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory)

LOG = []


def log(direction, kind, data):
    """Records one message as sent: direction is 'c2s' or 's2c'."""
    if isinstance(data, bytes):
        LOG.append({"dir": direction, "kind": kind, "hex": data.hex()})
    else:
        LOG.append({"dir": direction, "kind": kind, "text": data})


async def chat_server(ws, path=None):
    """Echo server in the chat's style: answers login and say messages."""
    uid = 783700053
    async for msg in ws:
        if isinstance(msg, bytes):
            await send(ws, "s2c", msg)
            continue
        try:
            m = json.loads(msg)
        except ValueError:
            m = {"type": "raw"}
        if m.get("type") == "login":
            await send(ws, "s2c", json.dumps({"type": "user_list", "user_list": [
                {"uid": 783654164, "name": "\u732a\u732a"},
                {"uid": uid, "name": m.get("name")}]}, separators=(",", ":")))
            await send(ws, "s2c", json.dumps({"type": "login", "uid": uid, "name": m.get("name"),
                                              "time": "2014-08-12 17:50:30"}, separators=(",", ":")))
        elif m.get("type") == "say":
            await send(ws, "s2c", json.dumps({"type": "say", "from_uid": uid, "to_uid": "all",
                                              "content": m.get("content"),
                                              "time": "2014-08-12 17:51:02"},
                                             separators=(",", ":"), ensure_ascii=False))
        elif m.get("type") == "fragments":
            parts = m.get("parts")
            await ws.send(iter(parts))
            log("s2c", "text", "".join(parts))
        elif m.get("type") == "big":
            body = "x" * m["size"]
            await send(ws, "s2c", json.dumps({"type": "big", "body": body}))


async def send(ws, direction, data):
    await ws.send(data)
    log(direction, "binary" if isinstance(data, bytes) else "text", data)


def deflate_opts(nocontext):
    if not nocontext:
        return {}, {}
    server = [ServerPerMessageDeflateFactory(server_no_context_takeover=True,
                                             client_no_context_takeover=True,
                                             server_max_window_bits=10,
                                             client_max_window_bits=11)]
    client = [ClientPerMessageDeflateFactory(server_no_context_takeover=True,
                                             client_no_context_takeover=True,
                                             server_max_window_bits=10,
                                             client_max_window_bits=11)]
    return {"extensions": server, "compression": None}, {"extensions": client, "compression": None}


def tls_contexts():
    """(server, client) SSL contexts from the environment, or (None, None)."""
    version = os.environ.get("TRAFFIC_TLS")
    if not version:
        return None, None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(os.environ["TRAFFIC_CERT"], os.environ["TRAFFIC_KEY"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.keylog_filename = os.environ["TRAFFIC_KEYLOG"]
    v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    client.minimum_version = client.maximum_version = v
    if os.environ.get("TRAFFIC_CIPHERS"):
        client.set_ciphers(os.environ["TRAFFIC_CIPHERS"])
    return server, client


async def session(uri, copts, name="mynick", says=("oi, pessoal !",), extra=None):
    async with websockets.connect(uri, max_size=None, **copts) as ws:
        await send(ws, "c2s", json.dumps({"type": "login", "name": name}, separators=(",", ":")))
        await ws.recv()
        await ws.recv()
        for s in says:
            await send(ws, "c2s", json.dumps({"type": "say", "to_uid": "all", "content": s},
                                             separators=(",", ":"), ensure_ascii=False))
            await ws.recv()
        if extra:
            await extra(ws)
        await ws.close(code=1000, reason="tchau")


async def pinger(ws):
    pong = await ws.ping(b"abc")
    await pong


async def run(scenario, host, port):
    sopts = {"compression": None}
    copts = {"compression": None}
    if scenario.startswith("deflate"):
        sopts, copts = ({}, {})
        if scenario == "deflate_nocontext":
            sopts, copts = deflate_opts(True)
    server_tls, client_tls = tls_contexts()
    if server_tls:
        sopts = dict(sopts, ssl=server_tls)
        copts = dict(copts, ssl=client_tls)
    async with websockets.serve(chat_server, host, port, max_size=None, **sopts):
        h = f"[{host}]" if ":" in host else host
        uri = f"{'wss' if server_tls else 'ws'}://{h}:{port}/chat?room=1"
        if scenario in ("basic", "ipv6", "deflate", "deflate_nocontext"):
            await session(uri, copts, says=("oi, pessoal !", "tudo bem?\nsim <b>&</b> \u00e9 \U0001f600"),
                          extra=pinger)
        elif scenario in ("fragmented", "deflate_fragmented"):
            async def extra(ws):
                parts = ["{\"type\":\"say\",", "\"to_uid\":\"all\",", "\"content\":\"em partes\"}"]
                await ws.send(iter(parts))
                log("c2s", "text", "".join(parts))
                await ws.recv()
                await send(ws, "c2s", json.dumps({"type": "fragments", "parts": ["um ", "dois ", "tres"]}))
                await ws.recv()
                await ws.send(iter([b"\x00\x01", b"\x02\x03"]))
                log("c2s", "binary", b"\x00\x01\x02\x03")
                await ws.recv()
            await session(uri, copts, extra=extra)
        elif scenario in ("large", "deflate_large"):
            async def extra(ws):
                await send(ws, "c2s", json.dumps({"type": "big", "size": 300000}))
                await ws.recv()
                blob = bytes(range(256)) * 2000
                await send(ws, "c2s", blob)
                await ws.recv()
                text = "".join(chr(0x41 + (i * 7) % 26) for i in range(200000))
                await send(ws, "c2s", json.dumps({"type": "say", "to_uid": "all", "content": text}))
                await ws.recv()
            await session(uri, copts, extra=extra)
        elif scenario == "many":
            await asyncio.gather(*[session(uri, copts, name=f"user{i}", says=(f"msg {i}",))
                                   for i in range(40)])
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    for e in LOG:
        print(json.dumps(e, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], int(sys.argv[3])))
