"""Liveness (pings, idle timeout), shutdown and the command line."""

import asyncio
import socket
import subprocess
import time

import pytest

from server_proc import BIN, Server, require_binary
from helpers import Client, ConnectionClosed, async_test, check_logout, check_say, close_all
from wsraw import OP_CLOSE, OP_PING, Closed, RawWS


# -- liveness ----------------------------------------------------------------------------

@async_test(timeout=30)
async def test_silent_client_pinged_then_closed(make_server):
    srv = make_server("--ping-interval", "1", "--idle-timeout", "3")
    watcher = await Client.connect(srv.ws_port)
    try:
        await watcher.login("watcher")
        raw = RawWS(srv.ws_port)
        uid, _ = raw.login("silent")
        t0 = time.monotonic()                     # its last activity
        await watcher.expect("login")
        pings, close_code, end = [], None, None

        def watch():
            nonlocal close_code, end
            deadline = t0 + 8
            while time.monotonic() < deadline:
                try:
                    f = raw.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
                except (Closed, TimeoutError):
                    end = time.monotonic()
                    return
                if f.opcode == OP_PING:
                    pings.append(time.monotonic() - t0)      # never answered
                elif f.opcode == OP_CLOSE:
                    close_code = f.close_code
                    end = time.monotonic()
                    closed, _ = raw.wait_closed(3)
                    assert closed, "close frame sent but TCP left open"
                    return

        await asyncio.get_running_loop().run_in_executor(None, watch)
        raw.close()
        assert pings, "no ping frame within the idle period (--ping-interval 1)"
        assert pings[0] <= 2.5, "first ping after %.1fs" % pings[0]
        assert end is not None, "silent client still connected 8s after its last frame"
        elapsed = end - t0
        assert 2.0 <= elapsed <= 6.0, "closed after %.1fs, --idle-timeout is 3" % elapsed
        assert close_code in (None, 1008, 1011, 1001), close_code
        check_logout(await watcher.recv(timeout=5), uid=uid)
    finally:
        await watcher.close()


@async_test(timeout=30)
async def test_answering_clients_stay_connected(make_server):
    """A library client answers ping frames by itself (and sends nothing else);
    a raw client ignores ping frames but sends {"type":"pong"} every second.
    Both are alive after 5 s with --idle-timeout 3."""
    srv = make_server("--ping-interval", "1", "--idle-timeout", "3")
    lib = await Client.connect(srv.ws_port)      # ping_interval=None: it never pings
    raw = RawWS(srv.ws_port)
    try:
        await lib.login("lib")
        raw_uid, _ = raw.login("raw")
        await lib.expect("login")

        def json_pong_loop():
            pings = 0
            t_end = time.monotonic() + 5.5
            next_pong = time.monotonic() + 1
            while time.monotonic() < t_end:
                try:
                    f = raw.recv_frame(timeout=max(0.01, min(next_pong, t_end) - time.monotonic()))
                    assert f.opcode != OP_CLOSE, "raw client closed: %r" % f
                    if f.opcode == OP_PING:
                        pings += 1                    # not answered with a pong frame
                except TimeoutError:
                    pass
                if time.monotonic() >= next_pong:
                    raw.send_json({"type": "pong"})
                    next_pong += 1
            return pings

        # (the raw client is never idle for a whole ping interval, so it
        # need not be pinged at all)
        await asyncio.get_running_loop().run_in_executor(None, json_pong_loop)
        assert lib.ws.open, "library client (answers pings) was closed: %r" % lib.close_code
        await lib.say("still here")
        check_say(await lib.recv(), from_uid=lib.uid, content="still here")
        raw.send_json({"type": "say", "content": "me too"})
        m = raw.recv_json()
        assert m["type"] == "say" and m["content"] == "still here", m
        m = raw.recv_json()
        assert m["type"] == "say" and m["content"] == "me too", m
        check_say(await lib.recv(), from_uid=raw_uid, content="me too")
    finally:
        raw.close()
        await lib.close()


# -- shutdown -------------------------------------------------------------------------------

@async_test(timeout=30)
async def test_sigterm_closes_everyone_with_1001(make_server):
    srv = make_server()
    a = await Client.connect(srv.ws_port)
    b = await Client.connect(srv.ws_port)           # never logs in
    w = await Client.connect(srv.http_port, path="/ws")
    raw = RawWS(srv.ws_port)
    try:
        await a.login("a")
        await w.login("w")
        raw.login("raw")
        await a.recv(); await a.recv()
        t0 = time.monotonic()
        rc = await asyncio.get_running_loop().run_in_executor(None, srv.terminate, 10)
        assert rc == 0, "exit code %r after SIGTERM\n%s" % (rc, srv.stderr())
        assert time.monotonic() - t0 < 5, "shutdown took %.1fs" % (time.monotonic() - t0)
        for c in (a, b, w):
            try:
                while True:
                    await c.recv(timeout=3)
            except ConnectionClosed:
                pass
            assert c.close_code == 1001, "close code %r, expected 1001" % c.close_code
        code, _ = raw.expect_close(timeout=3, reply=False)
        assert code == 1001, code
    finally:
        raw.close()
        await close_all([a, b, w])


def test_sigterm_idle_server_exits_0(make_server):
    srv = make_server()
    assert srv.terminate(5) == 0, srv.stderr()


def test_sigterm_with_half_open_handshake(make_server):
    srv = make_server()
    s = socket.create_connection(("127.0.0.1", srv.ws_port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    try:
        assert srv.terminate(5) == 0, srv.stderr()
    finally:
        s.close()


def _busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


@pytest.mark.parametrize("which", ["ws", "http"])
def test_port_in_use(tmp_path, which):
    require_binary()
    busy, port = _busy_port()
    try:
        kw = {which: "127.0.0.1:%d" % port}
        srv = Server(tmp_path / "srv", (), **kw)
        t0 = time.monotonic()
        proc = subprocess.run(srv.argv, capture_output=True, timeout=10)
        assert proc.returncode != 0, "started on a busy port: %r" % proc.stdout
        assert proc.stderr.strip(), "no message on stderr"
        assert time.monotonic() - t0 < 5
    finally:
        busy.close()


@pytest.mark.parametrize("args", [
    ["serve", "--no-such-option"],
    ["serve", "--ws"],
    ["serve", "--ws", "127.0.0.1:99999"],
    ["serve", "--ws", "not-an-address"],
    ["serve", "--rate", "abc"],
    ["serve", "--max-message", "-5"],
    ["no-such-command"],
])
def test_bad_command_line(tmp_path, args):
    require_binary()
    proc = subprocess.run([BIN] + args + ["--data", str(tmp_path)], capture_output=True,
                          timeout=5)
    assert proc.returncode != 0, (args, proc.stdout)
    assert proc.stderr.strip(), "no message on stderr for %r" % args
    assert b"listening" not in proc.stdout


def test_help():
    require_binary()
    proc = subprocess.run([BIN, "--help"], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc
    out = proc.stdout + proc.stderr
    assert b"serve" in out, out


def test_serve_help_lists_options():
    require_binary()
    proc = subprocess.run([BIN, "serve", "--help"], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc
    out = proc.stdout + proc.stderr
    for opt in ("--ws", "--http", "--data", "--max-message", "--max-name", "--max-content",
                "--ping-interval", "--idle-timeout", "--handshake-timeout", "--outbound-cap",
                "--rate", "--burst", "--max-conns-per-ip", "--origin"):
        assert opt.encode() in out, "%s missing from serve --help" % opt


def test_version():
    require_binary()
    proc = subprocess.run([BIN, "--version"], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc
    assert proc.stdout.strip(), "--version printed nothing on stdout"


def test_restart_on_same_port(tmp_path):
    """After a clean stop the port can be reused at once (SO_REUSEADDR)."""
    require_binary()
    first = Server(tmp_path / "a").start()
    try:
        port = first.ws_port
        # leave a connection that the server closes (TIME_WAIT on its side)
        raw = RawWS(port)
        raw.login("x")
        assert first.terminate(5) == 0, first.stderr()
        raw.close()
    finally:
        first.kill()
    second = Server(tmp_path / "b", ws="127.0.0.1:%d" % port)
    try:
        second.start()
        assert second.ws_port == port
    finally:
        rc = second.terminate(5)
    assert rc == 0, second.stderr()
