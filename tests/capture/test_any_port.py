"""Reading a file with no filter and no -p: WebSocket is found on any TCP
port by its HTTP upgrade; other connections on other ports stay silent;
the server port (7272 by default) is decoded as before."""
import pcaplib as pl
from conftest import decode, messages, run, tshark_frames, tshark_headers, our_headers

MASK = b"\x01\x02\x03\x04"


def chat(c, text):
    c.c2s(pl.ws_frame('{"type":"say","to_uid":"all","content":"%s"}' % text, mask=MASK))
    c.s2c(pl.ws_frame('{"type":"say","from_uid":1,"to_uid":"all","content":"%s"}' % text))


def mixed_file(path):
    """WebSocket on 8080, a database protocol on 5432, a WebSocket joined
    midway on 9000 and another on 7272, all in one file."""
    ws = pl.Conn(client=("10.0.0.1", 40000), server=("10.0.0.2", 8080), t0=100.0)
    ws.open()
    ws.handshake(path="/chat")
    chat(ws, "on 8080")
    ws.close()
    db = pl.Conn(client=("10.0.0.1", 40001), server=("10.0.0.3", 5432), t0=100.00005)
    db.open()
    db.c2s(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    db.s2c(b"N")
    db.close()
    mid = pl.Conn(client=("10.0.0.1", 40002), server=("10.0.0.4", 9000), t0=100.00007)
    chat(mid, "joined late")
    mid.close()
    mid7272 = pl.Conn(client=("10.0.0.1", 40003), server=("10.0.0.5", 7272), t0=100.00009)
    chat(mid7272, "joined late on 7272")
    mid7272.close()
    pl.write_session(str(path), [ws, db, mid, mid7272])
    return ws


def test_websocket_found_on_any_port(tmp_path):
    f = tmp_path / "mixed.pcap"
    ws = mixed_file(f)
    evs = decode(f)
    by_port = {}
    for e in evs:
        port = min(int(e["src"].rpartition(":")[2]), int(e["dst"].rpartition(":")[2]))
        by_port.setdefault(port, []).append(e["event"])
    # 5432 (not HTTP) and 9000 (joined midway, not known to be WebSocket) stay silent
    assert set(by_port) == {8080, 7272}
    assert by_port[8080][:3] == ["tcp_open", "handshake_request", "handshake_response"]
    assert by_port[8080][-1] == "tcp_close"
    assert [e for e in by_port[7272] if e == "error"] == ["error", "error"]
    assert messages(evs, src="10.0.0.2:8080") == [
        ("text", '{"type":"say","from_uid":1,"to_uid":"all","content":"on 8080"}')]
    # the tcp_open shown once the request came keeps the SYN's time
    opened = [e for e in evs if e["event"] == "tcp_open"][0]
    assert abs(opened["ts"] - ws.out[0][0]) < 1e-6
    # the same events as when the port is given
    assert [e for e in evs if "8080" in e["src"] + e["dst"]] == decode(f, "-p", 8080)


def test_any_port_summary_and_filter(tmp_path):
    f = tmp_path / "mixed.pcap"
    mixed_file(f)
    r = run("-r", f)
    assert "filter: tcp or (vlan and (tcp or (vlan and tcp)))" in r.err
    assert "connections: 1 opened" in r.out
    assert "on 8080" in r.out and "5432" not in r.out and "9000" not in r.out


def test_live_default_is_still_port_7272():
    out = run("--help").out
    assert "default 7272" in out and "every\n" in out and "TCP port is read" in out


def test_any_port_matches_tshark(captures):
    """A real capture on a free port (never 7272), read with no filter:
    the frames tshark finds there."""
    cap = captures["deflate"]
    assert cap.port != 7272
    ours = our_headers(decode(cap.path))
    assert ours and ours == tshark_headers(tshark_frames(cap.path, cap.port))
