"""Real traffic (python3-websockets, captured with tcpdump on lo) decoded by
`tagarela capture`, checked against what the generator sent and against
tshark's WebSocket dissector where tshark is right."""
import re

import pytest

from conftest import (SCENARIOS, assert_sent_messages, conns, decode, our_headers, run,
                      server_addr, tshark_frames, tshark_headers)


def decoded(cap):
    return decode(cap.path, "-p", cap.port)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_messages_are_what_was_sent(captures, scenario):
    """Every message, both directions, unmasked, joined and inflated, is
    exactly what traffic.py sent, in the order it sent them."""
    cap = captures[scenario]
    evs = decoded(cap)
    # 40 clients at once in "many": order is per connection
    assert_sent_messages(cap, evs, any_order=scenario == "many")
    assert not [e for e in evs if "error" in e or e["event"] in ("gap", "truncated")]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_connection_events(captures, scenario):
    """tcp_open (src = client), the handshake, frames only after the 101,
    tcp_close once at the end; addresses as ip:port, IPv6 in brackets."""
    cap = captures[scenario]
    srv = server_addr(cap)
    evs = decoded(cap)
    groups = conns(evs)
    assert len(groups) == (40 if scenario == "many" else 1)
    for g in groups:
        names = [e["event"] for e in g]
        assert names[:3] == ["tcp_open", "handshake_request", "handshake_response"], names
        assert names[-1] == "tcp_close" and names.count("tcp_close") == 1
        assert set(names[3:-1]) == {"frame"}
        client = g[0]["src"]
        assert g[0]["dst"] == srv and client != srv
        assert re.fullmatch(r"\[::1\]:\d+" if scenario == "ipv6" else r"127\.0\.0\.1:\d+",
                            client)
        req, resp = g[1], g[2]
        assert req["src"] == client and req["path"] == "/chat?room=1"
        assert len(req["key"]) == 24
        assert resp["src"] == srv and resp["dst"] == client
        assert resp["status"] == 101 and resp["accept_ok"] is True and len(resp["accept"]) == 28
        for f in g[3:-1]:
            # clients mask, servers do not
            assert f["masked"] == (f["src"] == client), f
        ts = [e["ts"] for e in g]
        assert ts == sorted(ts)
        close_frames = [e for e in g if e.get("opcode") == "close"]
        assert [(e["code"], e["reason"]) for e in close_frames] == [(1000, "tchau")] * 2


@pytest.mark.parametrize("scenario", ["deflate", "deflate_nocontext", "deflate_fragmented",
                                      "deflate_large"])
def test_deflate_negotiated_and_inflated(captures, scenario):
    cap = captures[scenario]
    evs = decoded(cap)
    req = next(e for e in evs if e["event"] == "handshake_request")
    resp = next(e for e in evs if e["event"] == "handshake_response")
    assert "permessage-deflate" in req["extensions"]
    assert resp["extensions"].startswith("permessage-deflate")
    if scenario == "deflate_nocontext":
        for p in ("server_no_context_takeover", "client_no_context_takeover",
                  "server_max_window_bits=10", "client_max_window_bits=11"):
            assert p in resp["extensions"]
    data = [e for e in evs if e["event"] == "frame" and e["opcode"] in ("text", "binary")]
    assert data and all(e["rsv1"] for e in data)
    whole = [e for e in evs if e["event"] == "frame" and e["fin"]
             and e["opcode"] in ("text", "binary", "continuation")]
    assert all(e.get("compressed") for e in whole)
    # the wire length is the compressed one: smaller than what is shown
    texts = [e for e in whole if "text" in e and len(e["text"]) > 60]
    assert texts and all(e["length"] < len(e["text"].encode()) for e in texts)


def test_fragments_carry_their_own_payload(captures):
    """fin false: hex of the frame's own unmasked payload; the final frame
    carries the whole message."""
    cap = captures["fragmented"]
    evs = decoded(cap)
    client = evs[0]["src"]
    frags = [e for e in evs if e["event"] == "frame" and e["src"] == client
             and e["opcode"] in ("text", "continuation")]
    first = [i for i, e in enumerate(frags) if e["opcode"] == "text" and not e["fin"]][0]
    parts = frags[first:first + 4]
    assert [(e["opcode"], e["fin"]) for e in parts] == \
        [("text", False), ("continuation", False), ("continuation", False),
         ("continuation", True)]
    own = [bytes.fromhex(e["hex"]).decode() for e in parts[:3]]
    assert own == ['{"type":"say",', '"to_uid":"all",', '"content":"em partes"}']
    assert parts[3]["length"] == 0 and parts[3]["text"] == "".join(own)
    binary = [e for e in evs if e["event"] == "frame" and e["src"] == client
              and e["opcode"] in ("binary", "continuation")][-3:]
    assert binary[-1]["hex"] == "00010203" and binary[0]["hex"] == "0001"


def test_deflate_fragments_are_still_compressed(captures):
    """A compressed message split in frames: each non-final frame shows its
    own (compressed) bytes, the last the whole inflated message."""
    evs = decoded(captures["deflate_fragmented"])
    client = evs[0]["src"]
    frags = [e for e in evs if e["event"] == "frame" and e["src"] == client
             and e["opcode"] in ("text", "continuation")]
    i = [k for k, e in enumerate(frags) if e["opcode"] == "text" and not e["fin"]][0]
    msg = frags[i:i + 4]
    assert msg[0]["rsv1"] and not any(e["rsv1"] for e in msg[1:])
    assert msg[3]["text"] == '{"type":"say","to_uid":"all","content":"em partes"}'
    assert msg[3]["compressed"] is True
    joined = b"".join(bytes.fromhex(e["hex"]) for e in msg[:3])
    assert b"em partes" not in joined         # compressed bytes, not the text


def tshark_text(f):
    p = f.get("websocket.payload")
    return p.get("websocket.payload.text") if isinstance(p, dict) else None


# tshark inflates a compressed message split in frames wrongly, and loses
# the shared context after it: its texts are not compared there.
TSHARK_TEXT_RIGHT = ["basic", "ipv6", "deflate", "deflate_nocontext", "fragmented", "large",
                     "many"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_tshark_agrees(captures, scenario):
    cap = captures[scenario]
    evs = decoded(cap)
    ours = [e for e in evs if e["event"] == "frame"]
    theirs = tshark_frames(cap.path, cap.port)
    # every frame header, in the same order (the order packets complete them)
    assert our_headers(ours) == tshark_headers(theirs)
    for e, f in zip(ours, theirs):
        p = f.get("websocket.payload")
        if e["opcode"] == "close":
            c = p["websocket.payload.close"]
            assert (e["code"], e["reason"]) == (int(c["websocket.payload.close.status_code"]),
                                                c["websocket.payload.close.reason"])
        elif e["opcode"] in ("ping", "pong"):
            assert e["hex"] == p[f"websocket.payload.{e['opcode']}"].replace(":", "")
        elif scenario in TSHARK_TEXT_RIGHT and e["fin"] and e["opcode"] == "text":
            assert e["text"] == tshark_text(f)


def test_text_view_reads_like_the_seed(captures):
    """The default view: time, client > server, TCP open, the upgrade, the
    messages in the clear with a chat summary, close, and the summary."""
    cap = captures["basic"]
    r = run("-r", cap.path, "-p", cap.port, "--color=never")
    lines = r.out.splitlines()
    c, s = r"127\.0\.0\.1:\d+", rf"127\.0\.0\.1:{cap.port}"
    ts = r"\d\d:\d\d:\d\d\.\d{6}"
    expect = [
        rf"{ts} {c} > {s}  TCP open$",
        rf"{ts} {c} > {s}  WebSocket upgrade /chat\?room=1  key \S+==$",
        rf"{ts} {s} > {c}  HTTP 101 Switching Protocols  accept \S+ \(matches the key\)$",
        rf'{ts} {c} > {s}  text {{"type":"login","name":"mynick"}}  # login mynick$',
        rf"{ts} {s} > {c}  text .*\"user_list\".*  # users: \u732a\u732a, mynick$",
        rf"{ts} {s} > {c}  text .*  # mynick joined \(uid 783700053\)$",
        rf'{ts} {c} > {s}  text {{"type":"say","to_uid":"all","content":"oi, pessoal !"}}'
        rf"  # say to all: oi, pessoal !$",
        rf"{ts} {s} > {c}  text .*  # mynick says to all: oi, pessoal !$",
    ]
    for pat, line in zip(expect, lines):
        assert re.match(pat, line), (pat, line)
    assert any(re.match(rf"{ts} {c} > {s}  ping \(3 bytes\) 616263$", l) for l in lines)
    assert any(re.match(rf'{ts} {c} > {s}  close 1000 "tchau"$', l) for l in lines)
    assert re.match(rf"{ts} {c} > {s}  TCP close$", lines[lines.index("--- capture summary ---") - 1])
    summary = "\n".join(lines[lines.index("--- capture summary ---"):])
    assert "connections: 1 opened, 1 flows, 1 WebSocket, 1 closed, 0 evicted" in summary
    assert "frames: text 7, binary 0, continuation 0, close 2, ping 1, pong 1" in summary
    assert "gaps: 0 (0 bytes missing); truncated: 0; errors: 0" in summary
    assert "\033[" not in r.out


def test_text_view_colours_and_hex(captures):
    cap = captures["basic"]
    r = run("-r", cap.path, "-p", cap.port, "--color=always", "-X")
    assert "\033[" in r.out
    # -X: the unmasked payload in hex and ASCII under each frame
    plain = re.sub(r"\033\[[0-9;]*m", "", r.out).splitlines()
    i = next(k for k, l in enumerate(plain) if '"name":"mynick"}  #' in l)
    dump = plain[i + 1:i + 4]
    assert dump[0].startswith("\tmask ")
    assert re.match(r"\t0x0000:  7b22 7479 7065 223a 226c 6f67 696e 222c  \{\"type\":\"login\",", dump[1])
