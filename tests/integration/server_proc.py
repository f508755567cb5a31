"""Runs one `tagarela serve` process on free ports and reads its ports from
the `ws listening on ...` / `http listening on ...` lines it prints.
The binary is $TAGARELA_BIN, by default <repo>/build/tagarela."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("TAGARELA_BIN", str(REPO / "build" / "tagarela"))
# The suite runs once per server shape: TAGARELA_THREADS=1 (the chat in the
# connections' loop) and 2 (loops on threads, the chat across the hub).
THREADS = os.environ.get("TAGARELA_THREADS")

WS_LINE = re.compile(r"^ws listening on 127\.0\.0\.1:(\d+)$")
HTTP_LINE = re.compile(r"^http listening on 127\.0\.0\.1:(\d+)$")


def require_binary():
    if not os.access(BIN, os.X_OK):
        pytest.fail("server binary not found or not executable: %s "
                    "(build it first, or set TAGARELA_BIN)" % BIN, pytrace=False)


class Server:
    """One `tagarela serve` process. stdout/stderr go to files (never a pipe
    that could fill up and block the server)."""

    def __init__(self, workdir, args=(), env=None, ws="127.0.0.1:0",
                 http="127.0.0.1:0"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.datadir = self.workdir / "data"
        self.datadir.mkdir(exist_ok=True)
        self.stdout_path = self.workdir / "stdout.txt"
        self.stderr_path = self.workdir / "stderr.txt"
        self.argv = [BIN, "serve", "--ws", ws, "--http", http,
                     "--data", str(self.datadir)] + [str(a) for a in args]
        if THREADS and "--threads" not in self.argv:
            self.argv += ["--threads", THREADS]
        self.env = dict(os.environ) if env is None else env
        self.proc = None
        self.ws_port = self.http_port = None
        self.returncode = None
        self.stopped = False

    def start(self, timeout=10.0):
        require_binary()
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         cwd=str(self.workdir))
        finally:
            out.close()
            err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.stdout_lines()
            ws = [m.group(1) for m in map(WS_LINE.match, lines) if m]
            http = [m.group(1) for m in map(HTTP_LINE.match, lines) if m]
            if ws and http:
                assert len(ws) == 1 and len(http) == 1, \
                    "expected exactly one line per listener, stdout=%r" % lines
                self.ws_port, self.http_port = int(ws[0]), int(http[0])
                assert 0 < self.ws_port < 65536 and 0 < self.http_port < 65536
                assert self.ws_port != self.http_port
                return self
            if self.proc.poll() is not None:
                pytest.fail("server exited early with %r\nargv=%r\nstdout=%r\nstderr=%s"
                            % (self.proc.returncode, self.argv, lines, self.stderr()),
                            pytrace=False)
            time.sleep(0.02)
        self.kill()
        pytest.fail("server did not print its listening lines within %.0fs\n"
                    "stdout=%r\nstderr=%s" % (timeout, self.stdout_lines(), self.stderr()),
                    pytrace=False)

    def stdout_lines(self):
        try:
            data = self.stdout_path.read_bytes()
        except FileNotFoundError:
            return []
        text = data.decode("utf-8", "replace")
        # only complete lines count
        return text.split("\n")[:-1] if text else []

    def stderr(self, tail=4000):
        try:
            data = self.stderr_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[-tail:].decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=10.0):
        """SIGTERM and wait. Returns the exit code (None if it hung; it is
        then killed)."""
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.returncode = None
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def describe(self):
        return "argv=%r\nstderr:\n%s" % (self.argv, self.stderr())


