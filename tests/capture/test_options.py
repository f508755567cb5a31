"""Command-line options (-w, -c, -s, -p, the filter expression, -r -) and
bad input: every failure exits non-zero with a message and prints nothing
on stdout."""
import struct
import subprocess

import pytest

import pcaplib as pl
from conftest import BIN, decode, run


def test_write_copy_decodes_the_same(captures, tmp_path):
    cap = captures["deflate_fragmented"]
    w = tmp_path / "copy.pcap"
    r = run("-r", cap.path, "-p", cap.port, "-w", w, "--json", "-q")
    assert r.events() == decode(cap.path, "-p", cap.port)
    lt, pkts = pl.read_pcap(str(w))
    assert lt == pl.ETHERNET and len(pkts) == len(pl.read_pcap(str(cap.path))[1])
    assert decode(w, "-p", cap.port) == decode(cap.path, "-p", cap.port)


def test_count_stops_after_n_packets(captures, tmp_path):
    cap = captures["basic"]
    w = tmp_path / "first5.pcap"
    evs = decode(cap.path, "-p", cap.port, "-c", 5, "-w", w)
    assert len(pl.read_pcap(str(w))[1]) == 5
    # SYN, SYN-ACK, ACK, the request, its ACK: open and the request only
    assert [e["event"] for e in evs] == ["tcp_open", "handshake_request"]
    r = run("-r", cap.path, "-p", cap.port, "-c", 5, "--json")
    assert "packets: 5 " in r.err


def test_filter_expression_and_port(captures):
    cap = captures["basic"]
    base = decode(cap.path, "-p", cap.port)
    assert decode(cap.path, "tcp", "port", cap.port) == base      # words joined
    assert decode(cap.path, f"tcp port {cap.port} and host 127.0.0.1") == base
    assert decode(cap.path) == base                               # a file: any port
    assert decode(cap.path, "-p", cap.port + 1) == []
    assert decode(cap.path, "-p", cap.port, "host 127.0.0.2") == []
    r = run("-r", cap.path, "-p", cap.port, "--json")
    assert f"filter: tcp port {cap.port}" in r.err


def test_read_from_stdin(captures):
    cap = captures["basic"]
    r = run("-r", "-", "-p", cap.port, "--json", "-q", stdin=cap.path.read_bytes())
    assert r.events() == decode(cap.path, "-p", cap.port)


def test_summary_goes_to_stderr_with_json(captures):
    cap = captures["basic"]
    r = run("-r", cap.path, "-p", cap.port, "--json")
    assert "--- capture summary ---" in r.err and "capture summary" not in r.out
    assert "connections: 1 opened, 1 flows, 1 WebSocket, 1 closed, 0 evicted" in r.err
    assert "frames: text 7, binary 0, continuation 0, close 2, ping 1, pong 1" in r.err
    r.events()


def test_help():
    r = run("--help")
    assert r.out.startswith("usage: tagarela capture") and "--json" in r.out


@pytest.mark.parametrize("args,rc,msg", [
    (["-r", "{missing}"], 1, "No such file"),
    (["-r", "{notpcap}"], 1, "{notpcap}"),
    (["-r", "{empty}"], 1, "{empty}"),
    (["-r", "{good}", "tcp port"], 2, "bad filter"),
    (["-r", "{good}", "not a filter ((("], 2, "bad filter"),
    (["-r", "{good}", "-s", "0"], 2, "bad -s"),
    (["-r", "{good}", "-c", "x"], 2, "bad -c"),
    (["-r", "{good}", "-p", "70000"], 2, "bad -p"),
    (["-r", "{good}", "--frobnicate"], 2, "unknown option"),
    (["-r", "{good}", "-i", "lo"], 2, "use -i or -r"),
    (["-r", "{good}", "-w", "/nonexistent/dir/out.pcap"], 1, "/nonexistent/dir"),
    (["-i", "no-such-interface0"], 1, "no-such-interface0"),
    (["-r", "{truncfile}"], 1, "truncated"),
    (["-r", "{corrupt}"], 1, "corrupt"),
    (["-r", "{truncng}"], 1, "{truncng}"),
])
def test_bad_input(captures, tmp_path, args, rc, msg):
    names = {"missing": tmp_path / "missing.pcap", "notpcap": tmp_path / "notes.txt",
             "empty": tmp_path / "empty.pcap", "good": captures["basic"].path,
             "truncfile": tmp_path / "cut.pcap", "corrupt": tmp_path / "corrupt.pcap",
             "truncng": tmp_path / "cut.pcapng"}
    names["notpcap"].write_text("this is not a capture file\n" * 10)
    names["empty"].write_bytes(b"")
    # a file cut in the middle of a packet record
    good = captures["basic"].path.read_bytes()
    names["truncfile"].write_bytes(good[:-30])
    # a record that claims 4 GB
    first = 24 + 16 + struct.unpack("<I", good[32:36])[0]
    names["corrupt"].write_bytes(good[:first] + struct.pack("<IIII", 1, 0, 0xFFFFFFF0,
                                                            0xFFFFFFF0) + b"x" * 64)
    pl.rewrite(str(captures["basic"].path), str(names["truncng"]),
               lambda it: [(p.ts, s) for p, s in it], writer=pl.write_pcapng)
    names["truncng"].write_bytes(names["truncng"].read_bytes()[:-30])
    argv = [a.format(**names) for a in args]
    r = run(*argv, "--json", check=False, timeout=20)
    assert r.rc == rc, (r.rc, r.err)
    assert msg.format(**names) in r.err
    assert r.err.startswith("tagarela capture: ") or "reading from file" in r.err
    if args[-1] not in ("{truncfile}", "{corrupt}", "{truncng}"):
        assert r.out == ""


def test_output_closed_early(captures):
    """A reader that goes away (| head) ends the capture quietly."""
    cap = captures["many"]
    p = subprocess.Popen(f"{BIN} capture -r {cap.path} -p {cap.port} --json | head -1",
                         shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=20)
    assert out.count(b"\n") == 1 and b"tcp_open" in out
    assert b"Broken pipe" not in err
