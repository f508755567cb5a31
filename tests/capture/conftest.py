"""Fixtures for the `tagarela capture` tests.

Run with Debian's interpreter (it has websockets and pytest), as root (the
captures are made with tcpdump on lo):
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/capture
The binary is $TAGARELA_BIN, by default <repo>/build/tagarela.

The pcaps are made by the tests themselves: traffic.py (python3-websockets)
talks on a free port of lo while tcpdump records it; traffic.py prints what
it sent, which is what the decoder must find. Crafted anomalies are made
from those files, or from scratch, with pcaplib.py.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = os.environ.get("TAGARELA_BIN", str(REPO / "build" / "tagarela"))
PY = "/usr/bin/python3"
TRAFFIC = str(HERE / "traffic.py")

sys.path.insert(0, str(HERE))

SCENARIOS = ["basic", "ipv6", "deflate", "deflate_nocontext", "fragmented",
             "deflate_fragmented", "large", "deflate_large", "many"]
# Recorded with a short snaplen: name -> (traffic.py scenario, snaplen)
SHORT_SNAPLEN = {"large_snap300": ("large", 300)}


def require(tool):
    if not shutil.which(tool):
        pytest.fail(f"{tool} not found: install it (scripts/install-deps.sh --test)",
                    pytrace=False)


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Tcpdump:
    """tcpdump -i lo writing a file. wait() returns once it is listening."""

    def __init__(self, path, port, snaplen=0):
        require("tcpdump")
        self.path = Path(path)
        self.err = open(str(path) + ".tcpdump.err", "w+b")
        # A big buffer: the kernel must not drop what the tests compare.
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "--immediate-mode", "-U", "-B", "16384",
             "-s", str(snaplen), "-w", str(path), f"tcp port {port}"],
            stdout=subprocess.DEVNULL, stderr=self.err)

    def wait(self):
        deadline = time.monotonic() + 10
        while b"listening on" not in self.stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("tcpdump did not start: %r" % self.stderr(), pytrace=False)
            time.sleep(0.02)
        return self

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def interrupt(self):
        self.proc.send_signal(signal.SIGINT)

    def stop(self, settle=0.2):
        """Stops it; returns the number of packets the kernel dropped."""
        if self.proc.poll() is None:
            time.sleep(settle)      # the last packets reach the file
            self.interrupt()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        text = self.stderr().decode(errors="replace")
        self.err.close()
        m = re.search(r"(\d+) packets? dropped by kernel", text)
        return int(m.group(1)) if m else 0


class Capture:
    """One recorded scenario: the pcap, the port, and what was sent."""

    def __init__(self, scenario, path, host, port, sent):
        self.scenario, self.path, self.host, self.port = scenario, Path(path), host, port
        self.sent = sent        # [{"dir": "c2s"|"s2c", "kind": ..., "text"|"hex": ...}]


def collect(proc):
    """The generator's (stdout, stderr). Never wait() on it: its output can
    fill the pipe and block it."""
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def record_all(tmpdir, scenarios, attempts=3, specs=None):
    """Records the scenarios in parallel; returns {scenario: Capture}. A
    scenario whose capture lost packets is recorded again, alone. specs:
    name -> (traffic.py scenario, environment) for runs of traffic.py with
    another environment (TLS); their Capture has the key log it wrote."""
    specs = specs or {}
    out, todo = {}, list(scenarios)
    for attempt in range(attempts):
        jobs = []
        for sc in todo:
            host = "::1" if sc == "ipv6" else "127.0.0.1"
            port = free_port(host)
            path = Path(tmpdir) / f"{sc}.pcap"
            snaplen = SHORT_SNAPLEN.get(sc, (sc, 0))[1]
            jobs.append([sc, host, port, path, Tcpdump(path, port, snaplen), None])
        for job in jobs:
            job[4].wait()
        for job in jobs:
            sc, host, port = job[:3]
            traffic_sc, env = specs.get(sc, (SHORT_SNAPLEN.get(sc, (sc,))[0], {}))
            env = {k: v.replace("{name}", str(Path(tmpdir) / sc)) for k, v in env.items()}
            if "TRAFFIC_KEYLOG" in env and os.path.exists(env["TRAFFIC_KEYLOG"]):
                os.unlink(env["TRAFFIC_KEYLOG"])    # a retry starts a new log
            job[5] = subprocess.Popen([PY, TRAFFIC, traffic_sc, host, str(port)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=dict(os.environ, **env))
            job.insert(6, env.get("TRAFFIC_KEYLOG"))
            if attempt:         # alone this time: read its output as it ends
                job.append(collect(job[5]))
        results = [job[7] if len(job) > 7 else collect(job[5]) for job in jobs]
        time.sleep(0.2)             # the last packets reach the files
        for job in jobs:
            job[4].interrupt()
        failed = []
        for (sc, host, port, path, td, gen, keylog), (stdout, stderr) in zip(
                [j[:7] for j in jobs], results):
            dropped = td.stop()
            if gen.returncode != 0:
                pytest.fail(f"traffic.py {sc} failed: {stderr.decode(errors='replace')}",
                            pytrace=False)
            if dropped:
                failed.append(sc)
                continue
            sent = [json.loads(l) for l in stdout.decode().splitlines() if l.strip()]
            out[sc] = Capture(sc, path, host, port, sent)
            out[sc].keylog = keylog
        todo = failed
        if not todo:
            return out
    pytest.fail(f"tcpdump kept dropping packets for {todo}", pytrace=False)


@pytest.fixture(scope="session")
def captures(tmp_path_factory):
    """Every scenario of traffic.py, captured once for the whole session."""
    if os.geteuid() != 0:
        pytest.fail("the capture tests capture on lo: run them as root", pytrace=False)
    return record_all(tmp_path_factory.mktemp("pcaps"), SCENARIOS + list(SHORT_SNAPLEN))


# ---- running the decoder ----

class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout.decode("utf-8")
        self.err = proc.stderr.decode("utf-8", "replace")

    def events(self):
        """--json output: every line must be one JSON object, and nothing else."""
        evs = []
        for line in self.out.split("\n")[:-1]:
            ev = json.loads(line)
            assert isinstance(ev, dict), line
            evs.append(ev)
        assert self.out == "" or self.out.endswith("\n")
        return evs


def run(*args, check=True, timeout=60, stdin=None):
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"binary not found: {BIN} (build it, or set TAGARELA_BIN)", pytrace=False)
    proc = subprocess.run([BIN, "capture", *map(str, args)], capture_output=True,
                          timeout=timeout, input=stdin)
    r = Result(proc)
    if os.environ.get("TAGARELA_CAPTURE_THREADS_CHECK") and "-r" in args:
        same_on_threads(args, r, timeout, stdin)
    if check:
        assert r.rc == 0, f"capture {args} exited {r.rc}: {r.err}"
    return r


def without_memory_line(err):
    """stderr minus the decoder's memory peak: with threads, the sum of each
    thread's peak."""
    return re.sub(r"decoder memory: peak \d+ KiB\n", "", err)


def budget_evictions(out):
    """Whether --max-mem (or the flow limit) evicted flows: each thread then
    has its share of the budget, and which flows go differs."""
    return '"reason":"memory"' in out or '"reason":"flows"' in out or \
        "(memory)" in out or "(flows)" in out


def same_on_threads(args, r, timeout, stdin, counts=("1", "2", "3")):
    """The same run on 1, 2 and 3 decoder threads prints the same bytes
    (TAGARELA_CAPTURE_THREADS_CHECK=1 checks every run of the suite)."""
    args = [str(a) for a in args]
    if any(a.startswith("--threads") for a in args) or budget_evictions(r.out):
        return
    for n in counts:
        # before the filter expression, which ends the options
        other = subprocess.run([BIN, "capture", f"--threads={n}", *args], capture_output=True,
                               timeout=timeout, input=stdin)
        o = Result(other)
        assert o.rc == r.rc, f"--threads={n}: exit {o.rc}, not {r.rc}: {o.err}"
        assert o.out == r.out, f"--threads={n}: stdout differs for {args}"
        assert without_memory_line(o.err) == without_memory_line(r.err), \
            f"--threads={n}: stderr differs for {args}"


def decode(path, *args):
    """Events of `tagarela capture -r path --json args...`."""
    r = run("-r", path, "--json", "-q", *args)
    evs = r.events()
    check_contract(evs)
    return evs


# ---- the --json contract ----

COMMON = ["event", "ts", "src", "dst"]
KEYS = {
    "tcp_open": [],
    "tcp_close": ["reason"],
    "tcp_evict": ["reason"],
    "handshake_request": ["path", "key", "extensions"],
    "handshake_response": ["status", "accept", "extensions", "accept_ok"],
    "gap": ["missing"],
    "truncated": [],
    "error": ["error"],
}
FRAME_KEYS = ["fin", "rsv1", "opcode", "masked", "length"]
FRAME_EXTRA = {"code", "reason", "compressed", "partial", "elided", "error"}
OPCODES = {"continuation", "text", "binary", "close", "ping", "pong"}


def addr_ok(a):
    host, _, port = a.rpartition(":")
    assert 0 < int(port) < 65536, a
    if ":" in host:
        assert host.startswith("[") and host.endswith("]"), a
        socket.inet_pton(socket.AF_INET6, host[1:-1])
    else:
        socket.inet_pton(socket.AF_INET, host)
    return True


def check_contract(evs):
    """Keys, their order and their types, for every object. A connection
    decrypted with --keylog ends each of its objects with "tls": true."""
    for ev in evs:
        keys = list(ev)
        if keys[-1] == "tls":
            assert ev["tls"] is True, ev
            keys.pop()
        assert keys[:4] == COMMON, ev
        assert isinstance(ev["ts"], (int, float)) and addr_ok(ev["src"]) and addr_ok(ev["dst"])
        name = ev["event"]
        if name == "frame":
            assert keys[4:9] == FRAME_KEYS, ev
            assert ev["opcode"] in OPCODES or ev["opcode"].isdigit(), ev
            assert all(isinstance(ev[k], bool) for k in ("fin", "rsv1", "masked")), ev
            assert isinstance(ev["length"], int) and ev["length"] >= 0
            payload = keys[9]
            assert payload in ("text", "hex"), ev
            if payload == "hex":
                bytes.fromhex(ev["hex"])
            control = ev["opcode"] in ("close", "ping", "pong")
            if control or not ev["fin"]:
                assert payload == "hex", ev
            if ev["opcode"] == "close":
                assert keys[10:12] == ["code", "reason"], ev
                assert ev["code"] is None or isinstance(ev["code"], int)
                assert isinstance(ev["reason"], str)
                rest = keys[12:]
            else:
                rest = keys[10:]
            assert set(rest) <= FRAME_EXTRA, ev
        else:
            assert name in KEYS, ev
            assert keys[4:4 + len(KEYS[name])] == KEYS[name], ev
            assert len(keys) == 4 + len(KEYS[name]), ev
        if name == "gap":
            assert isinstance(ev["missing"], int) and ev["missing"] > 0


def conns(evs):
    """Events grouped by connection (the unordered pair of addresses), in
    order of appearance."""
    out = {}
    for ev in evs:
        out.setdefault(frozenset((ev["src"], ev["dst"])), []).append(ev)
    return list(out.values())


def messages(evs, src=None):
    """The whole messages (data frames with fin) as (kind, text or hex)."""
    res = []
    for ev in evs:
        if ev["event"] != "frame" or not ev["fin"] or ev["opcode"] in ("close", "ping", "pong"):
            continue
        if src is not None and ev["src"] != src:
            continue
        res.append(("text", ev["text"]) if "text" in ev else ("binary", ev["hex"]))
    return res


def sent_messages(cap, direction):
    return [(m["kind"], m.get("text", m.get("hex"))) for m in cap.sent if m["dir"] == direction]


def assert_sent_messages(cap, evs, any_order=False):
    """Both directions' whole messages are what traffic.py sent, in the
    order it sent them (any_order: many connections at once)."""
    srv = server_addr(cap)
    to_server = messages([e for e in evs if e["dst"] == srv])
    to_client = messages([e for e in evs if e["src"] == srv])
    if any_order:
        from collections import Counter
        assert Counter(to_server) == Counter(sent_messages(cap, "c2s"))
        assert Counter(to_client) == Counter(sent_messages(cap, "s2c"))
    else:
        assert to_server == sent_messages(cap, "c2s")
        assert to_client == sent_messages(cap, "s2c")


def server_addr(cap):
    return f"[{cap.host}]:{cap.port}" if ":" in cap.host else f"{cap.host}:{cap.port}"


# ---- tshark, the independent oracle ----

def tshark_frames(path, port, keylog=None):
    """The WebSocket frames tshark finds: one dict per frame, in order; with
    a key log, inside TLS on that port."""
    require("tshark")
    layer = ["-d", f"tcp.port=={port},http"]
    if keylog:
        layer = ["-o", f"tls.keylog_file:{keylog}", "-d", f"tcp.port=={port},tls"]
    proc = subprocess.run(["tshark", "-r", str(path), *layer,
                           "-o", "tcp.desegment_tcp_streams:TRUE",
                           "-o", "tcp.reassemble_out_of_order:TRUE",
                           "-Y", "websocket", "-T", "json", "-J", "websocket tcp ip ipv6"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    def keep_duplicates(pairs):
        # tshark repeats a key (websocket) when a packet holds several frames
        obj = {}
        for k, v in pairs:
            if k in obj:
                obj[k] = (obj[k] if isinstance(obj[k], list) else [obj[k]]) + [v]
            else:
                obj[k] = v
        return obj

    frames = []
    for pkt in json.loads(proc.stdout or b"[]", object_pairs_hook=keep_duplicates):
        layers = pkt["_source"]["layers"]
        tcp = layers["tcp"]
        tcp = tcp[0] if isinstance(tcp, list) else tcp
        ws = layers["websocket"]
        for w in ws if isinstance(ws, list) else [ws]:
            frames.append(dict(w, srcport=int(tcp["tcp.srcport"])))
    return frames


TS_OPCODES = {"0": "continuation", "1": "text", "2": "binary", "8": "close", "9": "ping",
              "10": "pong"}


def tshark_headers(frames):
    """(source port, fin, rsv1, opcode, masked, length) of tshark's frames."""
    res = []
    for f in frames:
        length = int(f.get("websocket.payload_length_ext_64") or
                     f.get("websocket.payload_length_ext_16") or f["websocket.payload_length"])
        res.append((f["srcport"], f["websocket.fin"] == "1",
                    int(f["websocket.rsv"], 16) & 4 != 0, TS_OPCODES[f["websocket.opcode"]],
                    f["websocket.mask"] == "1", length))
    return res


def our_headers(evs):
    """The same for our frame events."""
    return [(int(e["src"].rpartition(":")[2]), e["fin"], e["rsv1"], e["opcode"], e["masked"],
             e["length"]) for e in evs if e["event"] == "frame"]
