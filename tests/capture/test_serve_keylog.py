"""tagarela serve --tls-keylog (issues 12 and 13): the key log the server
itself writes decrypts a tcpdump capture of its own wss:// chat with
`tagarela capture --keylog`; without it the same capture shows no text."""
import asyncio
import json
import signal
import ssl
import subprocess
import time

import websockets

from conftest import BIN, Tcpdump, decode, free_port, messages, require

SECRET = "segredo dito por TLS"


def start_server(tmp_path, port, keylog):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-subj", "/CN=localhost", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    out = tmp_path / "stdout.txt"
    srv = subprocess.Popen([BIN, "serve", "--ws", "127.0.0.1:%d" % port, "--http", "127.0.0.1:0",
                            "--data", str(tmp_path / "data"), "--tls-cert", str(cert), "--tls-key", str(key),
                            "--tls-keylog", str(keylog)],
                           stdout=open(out, "wb"), stderr=open(tmp_path / "stderr.txt", "wb"))
    deadline = time.monotonic() + 10
    while b"http listening" not in out.read_bytes():
        assert srv.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()
        time.sleep(0.02)
    return srv


async def chat(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with websockets.connect("wss://127.0.0.1:%d/" % port, ssl=ctx, compression=None) as ws:
        await ws.send(json.dumps({"type": "login", "name": "ana"}))
        await ws.send(json.dumps({"type": "say", "to_uid": "all", "content": SECRET}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if m["type"] == "say":
                return


def test_serve_keylog_decrypts_its_own_wss_chat(tmp_path):
    require("openssl")
    port = free_port()
    keylog = tmp_path / "server.keys"
    pcap = tmp_path / "wss.pcap"
    dump = Tcpdump(pcap, port).wait()
    srv = start_server(tmp_path, port, keylog)
    try:
        asyncio.run(chat(port))
    finally:
        srv.send_signal(signal.SIGTERM)
        assert srv.wait(10) == 0
        dump.stop()
    evs = decode(pcap, "-p", port, "--keylog", keylog)
    texts = [t for kind, t in messages(evs) if kind == "text"]
    assert any(SECRET in t and '"type":"say"' in t for t in texts), texts
    assert any(ev.get("tls") for ev in evs), evs[:5]
    blind = decode(pcap, "-p", port)
    assert not any(SECRET in t for _, t in messages(blind))
