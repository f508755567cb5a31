"""Live: `tagarela capture` on the default interface (any) beside a real
`tagarela serve`, while a client logs in as mynick and says "oi, pessoal !"
-- the seed's session, in the clear -- then Ctrl-C and the summary."""
import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
import websockets

from conftest import BIN, REPO

sys.path.insert(0, str(REPO / "tests" / "integration"))
from server_proc import Server  # noqa: E402


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "srv").start()
    yield s
    s.terminate()


def start_capture(tmp_path, *args):
    out = open(tmp_path / "cap.out", "w+b")
    err = open(tmp_path / "cap.err", "w+b")
    proc = subprocess.Popen([BIN, "capture", *map(str, args)], stdout=out, stderr=err)
    deadline = time.monotonic() + 10
    while True:
        err.seek(0)
        text = err.read().decode(errors="replace")
        if "listening on" in text:
            return proc, out, err
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"capture did not start: {text}", pytrace=False)
        time.sleep(0.02)


def stop_capture(proc, out, err):
    time.sleep(0.3)             # the last packets go through the filter
    proc.send_signal(signal.SIGINT)     # Ctrl-C
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("capture did not stop on SIGINT", pytrace=False)
    out.seek(0)
    err.seek(0)
    res = out.read().decode(), err.read().decode(errors="replace")
    out.close()
    err.close()
    return rc, res[0], res[1]


async def seed_session(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
        await ws.send('{"type":"login","name":"mynick"}')
        user_list = json.loads(await ws.recv())
        login = json.loads(await ws.recv())
        await ws.send('{"type":"say","to_uid":"all","content":"oi, pessoal !"}')
        while True:
            said = json.loads(await ws.recv())
            if said["type"] == "say":
                break
        await ws.close()
    return user_list, login, said


def test_live_json(server, tmp_path):
    proc, out, err = start_capture(tmp_path, "-p", server.ws_port, "--json")
    _, login, said = asyncio.run(seed_session(server.ws_port))
    rc, stdout, stderr = stop_capture(proc, out, err)
    assert rc == 0, stderr
    evs = [json.loads(l) for l in stdout.splitlines()]
    srv = f"127.0.0.1:{server.ws_port}"
    names = [e["event"] for e in evs]
    assert names[:3] == ["tcp_open", "handshake_request", "handshake_response"]
    assert names.count("tcp_close") == 1 and names[-1] == "tcp_close"
    assert not [e for e in evs if e["event"] in ("gap", "truncated", "error")]
    client_texts = [e["text"] for e in evs if e["event"] == "frame" and e["dst"] == srv
                    and "text" in e]
    # the browser's masked login, in the clear
    assert client_texts[:2] == ['{"type":"login","name":"mynick"}',
                                '{"type":"say","to_uid":"all","content":"oi, pessoal !"}']
    assert all(e["masked"] for e in evs if e["event"] == "frame" and e["dst"] == srv)
    server_texts = [json.loads(e["text"]) for e in evs if e["event"] == "frame"
                    and e["src"] == srv and "text" in e]
    assert login in server_texts and said in server_texts
    assert said["content"] == "oi, pessoal !"
    # Ctrl-C: the summary, on stderr with --json
    assert "--- capture summary ---" in stderr
    assert "connections: 1 opened, 1 flows, 1 WebSocket, 1 closed" in stderr
    assert "dropped by the kernel: 0" in stderr


def test_live_text_view(server, tmp_path):
    """The default view, live: the seed's lines, readable."""
    proc, out, err = start_capture(tmp_path, "-i", "lo", "-p", server.ws_port, "-X")
    asyncio.run(seed_session(server.ws_port))
    rc, stdout, stderr = stop_capture(proc, out, err)
    assert rc == 0, stderr
    assert "link-type EN10MB" in stderr     # -i lo: Ethernet; the default (any) is cooked
    assert " TCP open\n" in stdout
    assert "  WebSocket upgrade /  key " in stdout
    assert "HTTP 101 Switching Protocols  accept " in stdout and "(matches the key)" in stdout
    assert 'text {"type":"login","name":"mynick"}  # login mynick\n' in stdout
    assert "  # say to all: oi, pessoal !\n" in stdout
    assert "  # mynick says to all: oi, pessoal !\n" in stdout
    assert "\tmask " in stdout and "\t0x0000:  " in stdout
    assert stdout.rstrip().splitlines()[-1].startswith("decoder memory: peak ")


async def deflate_session(port):
    """python3-websockets with permessage-deflate against tagarela serve:
    it compresses what it sends (context kept), the server its broadcasts."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/", compression="deflate") as ws:
        assert ws.response_headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        await ws.send('{"type":"login","name":"zipper"}')
        json.loads(await ws.recv())
        json.loads(await ws.recv())
        says = ["compressed " * 20, "compressed again " * 20]
        got = []
        for s in says:
            await ws.send(json.dumps({"type": "say", "to_uid": "all", "content": s}))
            while True:
                m = json.loads(await ws.recv())
                if m["type"] == "say":
                    got.append(m)
                    break
        await ws.close()
    return says, got


def test_live_deflate_session(server, tmp_path):
    """A deflate session with tagarela serve, both ways compressed, shown
    inflated: the client's says (with context takeover) and the server's
    compressed broadcasts."""
    proc, out, err = start_capture(tmp_path, "-p", server.ws_port, "--json")
    says, got = asyncio.run(deflate_session(server.ws_port))
    rc, stdout, stderr = stop_capture(proc, out, err)
    assert rc == 0, stderr
    evs = [json.loads(l) for l in stdout.splitlines()]
    assert not [e for e in evs if e["event"] in ("gap", "truncated", "error")], evs
    srv = f"127.0.0.1:{server.ws_port}"
    frames = [e for e in evs if e["event"] == "frame" and "text" in e]
    client = [json.loads(e["text"]) for e in frames if e["dst"] == srv and e.get("compressed")]
    assert [m["content"] for m in client if m.get("type") == "say"] == says
    from_server = [json.loads(e["text"]) for e in frames if e["src"] == srv and e.get("compressed")]
    assert [m for m in from_server if m.get("type") == "say"] == got
