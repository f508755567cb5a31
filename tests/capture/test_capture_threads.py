"""`tagarela capture --threads N`: flows decoded on N threads print exactly
what one thread prints (every recorded scenario, crafted sessions with
holes, deflate, idle evictions at the same packet and connections still
open at the end), memory stays within --max-mem, and the option is checked.
The TLS captures are compared in test_capture_tls.py. TAGARELA_CAPTURE_THREADS_CHECK=1
makes every run of the whole suite compare 1, 2 and 3 threads."""
import os
import random
import subprocess
import zlib

import pytest

import pcaplib as pl
from conftest import BIN, SCENARIOS, SHORT_SNAPLEN, run, without_memory_line

MASK = b"\x12\x34\x56\x78"


def same(path, *args, counts=(2, 3, 4)):
    """Runs -r path args on 1 thread, then on each of counts: the same
    stdout, exit status and summary. Returns the one-thread result."""
    one = run("--threads=1", "-r", path, *args, check=False)
    assert one.rc == 0, one.err
    for n in counts:
        r = run(f"--threads={n}", "-r", path, *args, check=False)
        assert r.rc == one.rc, r.err
        assert r.out == one.out, f"--threads={n} {args}: stdout differs"
        assert without_memory_line(r.err) == without_memory_line(one.err)
    return one


@pytest.mark.parametrize("name", SCENARIOS + list(SHORT_SNAPLEN))
def test_recorded_scenarios(captures, name):
    cap = captures[name]
    one = same(cap.path, "--json", "-p", cap.port)
    assert one.out.count('"event":"frame"') > 0
    same(cap.path, "--json")                            # any port
    same(cap.path, "-X", "-p", cap.port, counts=(2,))   # the text view (on one thread)


def chatty_session(n_conns=40, seed=7):
    """Connections opening over a few seconds, some compressed (context
    takeover), some with a hole in the server's stream, half falling
    silent, then evicted at the same packet by --idle=30; some closed,
    the rest still open at the end (flushed in order)."""
    rnd = random.Random(seed)
    conns = []
    for i in range(n_conns):
        c = pl.Conn(client=("10.0.0.%d" % (1 + i), 40000 + i), server=("10.0.1.1", 7272),
                    t0=1e9 + i * 0.05, step=0.001)
        c.open()
        deflate = i % 3 == 0
        c.handshake(extensions="permessage-deflate" if deflate else None,
                    response_extensions="permessage-deflate" if deflate else None)
        comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        t = c.t
        for k in range(30 if i % 2 else 10):
            t += 1 + rnd.random()
            text = ("mensagem %d de %d " % (k, i) * rnd.randint(1, 40)).encode()
            if deflate:
                c.s2c(pl.ws_frame(pl.deflate_raw(text, comp), rsv1=True), ts=t)
            else:
                c.s2c(pl.ws_frame(text), ts=t)
            c.c2s(pl.ws_frame(b"ok %d" % k, mask=MASK))
            if i % 7 == 3 and k == 5:
                c.seq["s"] += 25                            # a hole in the stream
        if i % 4 == 1:
            c.close()
        conns.append(c)
    return conns


def test_crafted_session_with_holes_deflate_and_evictions(tmp_path):
    f = tmp_path / "chatty.pcap"
    pl.write_session(str(f), chatty_session())
    one = same(f, "--json", "--idle=30")
    assert '"reason":"idle"' in one.out and '"event":"gap"' in one.out
    assert '"compressed":true' in one.out and '"reason":"fin"' in one.out
    same(f, "--json")
    # -c cuts the capture at the same packet; pcapng goes through libpcap
    same(f, "--json", "-c", "500")
    g = tmp_path / "chatty.pcapng"
    pl.write_session(str(g), chatty_session(), writer=pl.write_pcapng)
    assert same(g, "--json", "--idle=30").out.count("\n") == one.out.count("\n")


def test_stdin_is_threaded_too(tmp_path):
    f = tmp_path / "chatty.pcap"
    pl.write_session(str(f), chatty_session(12))
    data = f.read_bytes()
    one = run("--threads=1", "-r", "-", "--json", stdin=data)
    two = run("--threads=2", "-r", "-", "--json", stdin=data)
    assert one.out == two.out and one.out


def sanitized():
    """A sanitizer build: its allocator keeps freed memory aside, so the
    resident size says nothing of the decoder's."""
    p = subprocess.run(["ldd", BIN], capture_output=True, text=True)
    return any(s in p.stdout for s in ("libasan", "libtsan"))


def max_rss_kib(args):
    p = subprocess.run(["/usr/bin/time", "-f", "%M", BIN, "capture", *map(str, args)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return int(p.stderr.strip().split("\n")[-1])


def test_memory_budget_is_shared_by_the_threads(tmp_path):
    """Each of N threads gets 1/N of --max-mem: the flows are evicted as
    with one thread ('memory'), the summed peak stays within the budget."""
    f = tmp_path / "budget.pcap"
    pl.write_session(str(f), pl.held_behind_holes())
    for n in (1, 2, 4):
        r = run(f"--threads={n}", "-r", f, "--json", "--max-mem=4M")
        evicted = [ln for ln in r.out.splitlines() if '"event":"tcp_evict"' in ln]
        assert evicted and all('"reason":"memory"' in ln for ln in evicted)
        peak = int(r.err.split("decoder memory: peak ")[1].split(" ")[0])
        assert peak < 4096 + 512, (n, peak)
    # and the process: the budget plus what threads and batches cost, not
    # what the file holds (12 MB held back behind the holes)
    if sanitized():
        return
    assert max_rss_kib(["--threads=2", "-r", f, "--json", "--max-mem=4M"]) < 48 * 1024


@pytest.mark.parametrize("bad", ["0", "65", "two", ""])
def test_bad_thread_count(tmp_path, bad):
    r = run(f"--threads={bad}", "-r", "/dev/null", check=False)
    assert r.rc == 2 and "--threads" in r.err


def test_help_names_the_option():
    assert "--threads=N" in run("--help").out
