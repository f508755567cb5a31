"""A real `redis-server` for the cluster tests: a free port (or a unix
socket) in a temp dir, appendonly on with appendfsync always (a killed
Redis loses no acknowledged write: docs/cluster.md), no RDB snapshots. restart() stops it
and starts it again on the same port and files (the AOF keeps the data)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def complete(data):
    """True once data holds a whole reply (a bulk string read to its end;
    arrays are only read by the tests as far as their first line)."""
    if not data.endswith(b"\r\n"):
        return False
    if data.startswith(b"$"):
        head, _, rest = data.partition(b"\r\n")
        return int(head[1:]) < 0 or len(rest) >= int(head[1:]) + 2
    return True


class Redis:
    def __init__(self, workdir, unix=False):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = 0 if unix else free_port()
        self.sock = str(self.dir / "redis.sock") if unix else None
        self.proc = None

    @property
    def url(self):
        return "unix://%s" % self.sock if self.sock else "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        if not os.access(REDIS_BIN, os.X_OK):
            pytest.fail("redis-server not found (apt-get install redis-server)", pytrace=False)
        argv = [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        if self.sock:
            argv += ["--unixsocket", self.sock, "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.proc.poll() is not None:
                pytest.fail("redis-server exited: %s" % self.log(), pytrace=False)
            time.sleep(0.02)
        pytest.fail("redis-server did not answer: %s" % self.log(), pytrace=False)

    def _connect(self):
        if self.sock:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(self.sock)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        return s

    def command(self, *args):
        """One command in RESP; returns the raw reply bytes."""
        s = self._connect()
        try:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            data = b""
            s.settimeout(2)
            while not complete(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            s.close()

    def ping(self):
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def info(self, section):
        return self.command("INFO", section).decode("utf-8", "replace")

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            return (self.dir / "redis.log").read_text()[-2000:]
        except OSError:
            return ""
