"""Running tagarela as a service (issue 14): the --config file and its
precedence, --check-config, the event log (logfmt / JSON, levels, no
timestamps under journald, no message contents), SIGHUP reload and the
systemd readiness notification."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from server_proc import BIN
from wsraw import RawWS


def log_lines(srv):
    return [json.loads(l) for l in srv.stderr(1 << 20).splitlines() if l.startswith("{")]


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    return pred()


def wait_event(srv, event, timeout=5.0, **fields):
    def find():
        return [e for e in log_lines(srv) if e.get("event") == event and
                all(e.get(k) == v for k, v in fields.items())]
    found = wait_for(find, timeout)
    assert found, "no %s %r in the log:\n%s" % (event, fields, srv.stderr())
    return found[-1]


def write_conf(path, text):
    path.write_text(text)
    return str(path)


def run_serve(*args, env=None):
    return subprocess.run([BIN, "serve", *map(str, args)], capture_output=True,
                          text=True, timeout=10, env=env)


# ---- the config file ----------------------------------------------------------

def send_big(port, size):
    """A text message of size bytes; the close code it brings, or None."""
    ws = RawWS(port)
    ws.send_text("x" * size)
    ws.send_ping(b"still-open")
    while True:
        try:
            f = ws.recv_frame(3.0)
        except Exception:
            return None
        if f.opcode == 0x8:
            return f.close_code
        if f.opcode == 0xA:
            ws.close()
            return None


def test_config_file_sets_options_and_command_line_overrides_it(make_server, tmp_path):
    conf = write_conf(tmp_path / "t.conf",
                      "# comment line\n"
                      "max-message 200      # a comment after a blank\n"
                      "log-format = json\n"
                      "\n"
                      "rate=20\n")
    srv = make_server("--config", conf)
    assert send_big(srv.ws_port, 300) == 1009
    wait_event(srv, "close", code=1009, reason="message too big")
    srv2 = make_server("--config", conf, "--max-message", "1000")
    assert send_big(srv2.ws_port, 300) is None


def test_command_line_origins_replace_the_files(make_server, tmp_path):
    conf = write_conf(tmp_path / "t.conf", "origin http://file.example\n")
    srv = make_server("--config", conf, "--origin", "http://cli.example")
    RawWS(srv.ws_port, origin="http://cli.example").close()
    ws = RawWS(srv.ws_port, origin="http://file.example", handshake=False)
    with pytest.raises(AssertionError, match="403"):
        ws.handshake()
    ws.close()


@pytest.mark.parametrize("text,says", [
    ("bogus 1\n", "t.conf:1: 'bogus' is not a setting"),
    ("# ok\nrate fast\n", "rate wants a number"),
    ("# ok\n\nrate fast\n", "t.conf, line 3"),
    ("max-message\n", "t.conf:1: max-message needs a value"),
    ("config other.conf\n", "'config' is not a setting"),
    ("check-config 1\n", "'check-config' is not a setting"),
    ("log-level loud\n", "error, warn, info or debug"),
    ("log-format xml\n", "logfmt or json"),
    ("ws nowhere\n", "HOST:PORT"),
])
def test_config_errors_exit_2_naming_the_line(tmp_path, text, says):
    conf = write_conf(tmp_path / "t.conf", text)
    r = run_serve("--config", conf, "--check-config")
    assert r.returncode == 2, r
    assert says in r.stderr, r.stderr
    r = run_serve("--config", conf, "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0",
                  "--data", tmp_path / "d")
    assert r.returncode == 2 and says in r.stderr, r


def test_config_file_unreadable_or_binary(tmp_path):
    r = run_serve("--config", tmp_path / "missing.conf")
    assert r.returncode == 2 and "missing.conf" in r.stderr, r
    (tmp_path / "nul.conf").write_bytes(b"rate 5\n\0\n")
    r = run_serve("--config", tmp_path / "nul.conf", "--check-config")
    assert r.returncode == 2 and "NUL" in r.stderr, r
    (tmp_path / "big.conf").write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    r = run_serve("--config", tmp_path / "big.conf", "--check-config")
    assert r.returncode == 2 and "1 MiB" in r.stderr, r


def test_default_config_file_is_read_unless_told_not_to(make_server, tmp_path):
    """Without --config the default file (here named by $TAGARELA_CONFIG,
    standing in for /etc/tagarela/tagarela.conf) is read when it exists."""
    conf = write_conf(tmp_path / "default.conf", "log-format json\nhistory 3\n")
    env = dict(os.environ, TAGARELA_CONFIG=conf)
    srv = make_server(env=env)
    assert wait_event(srv, "started")["config"] == conf
    srv2 = make_server("--no-config", env=env)
    assert "event=started" in wait_for(lambda: srv2.stderr()) and "config=" not in srv2.stderr()
    env = dict(os.environ, TAGARELA_CONFIG=str(tmp_path / "absent.conf"))
    srv3 = make_server(env=env)
    assert wait_for(lambda: "event=started" in srv3.stderr()), srv3.stderr()
    r = run_serve("--check-config", env=dict(os.environ, TAGARELA_CONFIG=conf))
    assert r.returncode == 0 and conf in r.stdout, r


def test_check_config_valid_exits_0_without_serving(tmp_path):
    conf = write_conf(tmp_path / "t.conf", "ws 127.0.0.1:1\nhttp 127.0.0.1:2\nrate 5\n")
    r = run_serve("--config", conf, "--check-config")
    assert r.returncode == 0, r
    assert "valid" in r.stdout and conf in r.stdout
    # the combined check still runs: a say larger than the outbound cap
    r = run_serve("--config", conf, "--max-content", "1000000", "--check-config")
    assert r.returncode == 2 and "--outbound-cap" in r.stderr, r


# ---- the event log ---------------------------------------------------------------

def test_log_lines_for_each_close_reason(make_server):
    srv = make_server("--log-format", "json", "--max-message", "200",
                      "--idle-timeout", "0.5", "--ping-interval", "10")
    wait_event(srv, "listening", listener="ws", port=srv.ws_port)
    wait_event(srv, "started")

    ws = RawWS(srv.ws_port)                      # the client closes
    ws.send_close(1000)
    ws.expect_close()
    e = wait_event(srv, "close", code=1000, by="client")
    assert e["level"] == "info" and e["addr"] == "127.0.0.1" and "time" in e

    assert send_big(srv.ws_port, 300) == 1009     # too big
    e = wait_event(srv, "close", code=1009)
    assert e["level"] == "warn" and e["by"] == "server" and e["addr"] == "127.0.0.1"

    ws = RawWS(srv.ws_port)                      # invalid UTF-8
    ws.send_text(b"\xff\xfe")
    assert ws.expect_close()[0] == 1007
    wait_event(srv, "close", code=1007, reason="invalid UTF-8")

    ws = RawWS(srv.ws_port)                      # idle
    assert ws.expect_close(timeout=5)[0] == 1008
    wait_event(srv, "close", code=1008, reason="idle timeout")

    srv.terminate()
    assert any(e.get("event") == "signal" and e.get("name") == "TERM" for e in log_lines(srv))


def test_log_never_holds_contents_or_tokens(make_server):
    srv = make_server("--log-format", "json")
    ws = RawWS(srv.ws_port)
    ws.login("SecretName")
    ws.send_json({"type": "say", "content": "the-secret-content"})
    assert ws.recv_json()["type"] == "say"
    ws.send_close(1000)
    ws.expect_close()
    wait_event(srv, "close", code=1000)
    text = srv.stderr(1 << 20)
    for secret in ("SecretName", "the-secret-content", ws.token):
        assert secret not in text, text


def test_logfmt_levels_and_journald(make_server):
    env = dict(os.environ, JOURNAL_STREAM="8:12345")
    srv = make_server("--log-level", "warn", env=env)
    ws = RawWS(srv.ws_port)
    ws.send_close(1000)
    ws.expect_close()
    ws = RawWS(srv.ws_port)
    ws.send_text(b"\xff")
    assert ws.expect_close()[0] == 1007
    line = wait_for(lambda: [l for l in srv.stderr().splitlines() if "code=1007" in l])
    assert line, srv.stderr()
    assert line[0] == 'level=warn event=close code=1007 reason="invalid UTF-8" by=server addr=127.0.0.1'
    # info lines (listening, the client's close) are below the level
    assert "level=info" not in srv.stderr() and "time=" not in srv.stderr()


# ---- SIGHUP --------------------------------------------------------------------

def test_sighup_applies_live_limits_and_says_what_needs_a_restart(make_server, tmp_path):
    path = tmp_path / "t.conf"
    write_conf(path, "log-format json\nlog-level warn\nrate 20\n")
    srv = make_server("--config", str(path))
    ws = RawWS(srv.ws_port)
    ws.send_close(1000)
    ws.expect_close()
    early = RawWS(srv.ws_port)                   # open across the reload
    time.sleep(0.2)
    assert not [e for e in log_lines(srv) if e.get("event") == "close"]

    write_conf(path, "log-format json\nlog-level info\nrate 5\n"
                     "idle-timeout 0.6\nping-interval 10\norigin http://ok.example\n")
    srv.proc.send_signal(signal.SIGHUP)
    for key in ("log-level", "idle-timeout", "ping-interval", "origin"):
        e = wait_event(srv, "reload_option", key=key)
        assert e["applied"] == "yes" and "restart" not in e, e
    e = wait_event(srv, "reload_option", key="rate")
    assert e["applied"] == "no" and e["restart"] == "needed" and e["level"] == "warn"
    wait_event(srv, "reloaded")

    # the new idle timeout closes the connection opened before the reload
    t0 = time.monotonic()
    assert early.expect_close(timeout=5)[0] == 1008
    assert time.monotonic() - t0 < 3
    wait_event(srv, "close", code=1008, reason="idle timeout")
    # the new origin list holds for new handshakes
    ws = RawWS(srv.ws_port, origin="http://other.example", handshake=False)
    with pytest.raises(AssertionError, match="403"):
        ws.handshake()
    ws.close()
    ws = RawWS(srv.ws_port, origin="http://ok.example")
    ws.send_close(1000)
    ws.expect_close()
    wait_event(srv, "close", code=1000)          # the info level is live too

    # a broken file, or live limits that no longer fit, change nothing
    closes = len([e for e in log_lines(srv) if e.get("event") == "close"])
    write_conf(path, "log-format json\nlog-level warn\nrate fast\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_event(srv, "reload_failed")
    write_conf(path, "log-format json\nlog-level warn\noutbound-cap 1024\n")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: len([e for e in log_lines(srv) if e.get("event") == "reload_failed"]) == 2)
    ws = RawWS(srv.ws_port, origin="http://ok.example")
    ws.send_close(1000)
    ws.expect_close()
    assert wait_for(lambda: len([e for e in log_lines(srv) if e.get("event") == "close"]) == closes + 1)


def test_many_reloads_keep_serving(make_server, tmp_path):
    """Each reload hands the loops a new copy of the options and frees the
    ones no loop reads; a burst of them while clients come and go."""
    path = tmp_path / "t.conf"
    write_conf(path, "log-level warn\n")
    srv = make_server("--config", str(path))
    for i in range(60):
        write_conf(path, "log-level warn\nmax-conns-per-ip %d\nidle-timeout %d\n" % (100 + i, 30 + i))
        srv.proc.send_signal(signal.SIGHUP)
        if i % 10 == 0:
            ws = RawWS(srv.ws_port)
            ws.send_close(1000)
            ws.expect_close()
        time.sleep(0.01)
    # the last one holds: 5 clients at once were fine, now a second is refused
    five = [RawWS(srv.ws_port) for _ in range(5)]
    for ws in five:
        ws.close()
    write_conf(path, "log-level warn\nmax-conns-per-ip 1\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "max-conns-per-ip" in srv.stderr() or None, 0.5)
    time.sleep(0.3)
    statuses = []
    conns = [RawWS(srv.ws_port, handshake=False) for _ in range(2)]
    for c in conns:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses.append(c.read_http_response().status)
    assert 503 in statuses, statuses
    for c in conns:
        c.close()
    assert srv.alive()


# ---- /metrics: closes by code, the process ------------------------------------

def scrape(port):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    values, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            types[line.split(" ")[2]] = line.split(" ")[3]
        elif line and not line.startswith("#"):
            name, v = line.rsplit(" ", 1)
            values[name] = float(v)
    return values, types


def test_metrics_count_closes_by_code_and_show_the_process(make_server):
    srv = make_server("--max-message", "200")
    before, types = scrape(srv.http_port)
    assert types["tagarela_closes_total"] == "counter"
    for code in ("1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "other"):
        assert before['tagarela_closes_total{code="%s"}' % code] == 0
    held = [RawWS(srv.ws_port) for _ in range(20)]
    during, _ = scrape(srv.http_port)
    assert during["tagarela_process_open_fds"] >= before["tagarela_process_open_fds"] + 20
    assert during["tagarela_process_max_fds"] >= during["tagarela_process_open_fds"]
    assert 1 << 20 < during["tagarela_process_resident_memory_bytes"] < 1 << 31
    for ws in held:
        ws.send_close(1000)
        ws.expect_close()
        ws.close()                               # the server waits for our FIN to let go
    assert send_big(srv.ws_port, 300) == 1009
    ws = RawWS(srv.ws_port)
    ws.send_close(4000)                          # an application's own code
    ws.expect_close()
    after = wait_for(lambda: (lambda v: v if v['tagarela_closes_total{code="other"}'] == 1 else None)(
        scrape(srv.http_port)[0]))
    assert after, scrape(srv.http_port)[0]
    assert after['tagarela_closes_total{code="1000"}'] == 20
    assert after['tagarela_closes_total{code="1009"}'] == 1
    assert wait_for(lambda: scrape(srv.http_port)[0]["tagarela_process_open_fds"]
                    < during["tagarela_process_open_fds"] - 10)


def test_grafana_dashboard_reads_metrics_the_server_has(server):
    """contrib/grafana/tagarela.json: each tagarela_* series its queries
    name is one /metrics serves."""
    import re
    with open(os.path.join(REPO, "contrib/grafana/tagarela.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    _, types = scrape(server.http_port)
    # a histogram's series are its name and _bucket, _sum, _count
    series = {n + s: t for n, t in types.items()
              for s in (("_bucket", "_sum", "_count") if t == "histogram" else ("",))}
    names = set(re.findall(r"\b(tagarela_\w+)", " ".join(exprs)))
    assert len(names) >= 12 and names <= set(series), names - set(series)
    for name in names:                       # counters and histograms are read as rates
        if series[name] in ("counter", "histogram"):
            assert all("rate(%s{" % name in e for e in exprs if name in e), name


# ---- systemd's notification -------------------------------------------------------

@pytest.fixture
def notify(tmp_path):
    """A datagram socket standing in for systemd's: (socket, its path)."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_notify_socket_hears_ready_reloading_stopping(make_server, notify):
    sock, path = notify
    srv = make_server(env=dict(os.environ, NOTIFY_SOCKET=path))
    assert sock.recv(256) == b"READY=1"
    # READY comes once the listeners accept
    RawWS(srv.ws_port).close()
    srv.proc.send_signal(signal.SIGHUP)
    assert sock.recv(256) == b"RELOADING=1"
    assert sock.recv(256) == b"READY=1"
    assert srv.terminate() == 0
    assert sock.recv(256) == b"STOPPING=1"


def test_watchdog_pings_when_systemd_asks(make_server, notify):
    sock, path = notify
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    first = make_server(env=env)
    got, t0 = [], time.monotonic()
    while len([g for g in got if g == b"WATCHDOG=1"]) < 4:
        got.append(sock.recv(256))
    assert b"READY=1" in got
    assert 0.25 < time.monotonic() - t0 < 2, got   # every 100 ms
    assert first.terminate() == 0
    sock.settimeout(0.3)
    try:                                         # what it sent until it stopped
        while sock.recv(256):
            pass
    except socket.timeout:
        pass
    # another process's watchdog (WATCHDOG_PID) is not ours to feed
    srv = make_server(env=dict(env, WATCHDOG_PID="1"))
    sock.settimeout(5)
    assert sock.recv(256) == b"READY=1"
    sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        sock.recv(256)
    assert srv.alive()


# ---- man pages, install, the systemd unit ---------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(REPO, "man")
PAGES = ["tagarela.1", "tagarela-serve.1", "tagarela-capture.1", "tagarela-bench.1",
         "tagarela.conf.5"]


def require(tool):
    import shutil
    if not shutil.which(tool):
        pytest.skip("%s is not installed (scripts/install-deps.sh --test installs it)" % tool)


@pytest.mark.parametrize("page", PAGES)
def test_man_page_is_clean_mdoc(page):
    require("mandoc")
    r = subprocess.run(["mandoc", "-Tlint", "-W", "warning", os.path.join(MAN, page)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout and not r.stderr, r.stdout + r.stderr


def help_options(text):
    """The options a --help text lists: each line's leading -x / --xxx."""
    import re
    opts = set()
    for line in text.splitlines():
        m = re.match(r"^\s+((?:-[\w-]+(?:[= ][A-Z]+)?,?\s)+)", line + " ")
        if m:
            opts |= set(re.findall(r"(--?[a-zA-Z][\w-]*)", m.group(1)))
    return opts


def man_options(page):
    """The options a page describes: its .It Fl items."""
    import re
    opts = set()
    with open(os.path.join(MAN, page)) as f:
        for line in f:
            if line.startswith(".It Fl"):
                opts |= {"-" + o for o in re.findall(r"Fl (-?[\w-]+)", line)}
    return opts


@pytest.mark.parametrize("cmd,page", [("serve", "tagarela-serve.1"),
                                      ("capture", "tagarela-capture.1"),
                                      ("bench", "tagarela-bench.1")])
def test_help_and_man_page_list_the_same_options(cmd, page):
    r = subprocess.run([BIN, cmd, "--help"], capture_output=True, text=True)
    in_help = help_options(r.stdout + r.stderr)
    assert len(in_help) > 10, (r.stdout, r.stderr)
    in_man = man_options(page)
    assert in_help - in_man == set(), "in --help, not in %s" % page
    assert in_man - in_help == set(), "in %s, not in --help" % page


def test_main_help_commands_in_tagarela_1():
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True)
    text = open(os.path.join(MAN, "tagarela.1")).read()
    for cmd in ("serve", "capture", "bench"):
        assert ("tagarela %s" % cmd) in r.stdout and (".Cm %s" % cmd) in text


def make(*args):
    return subprocess.run(["make", "--no-print-directory", "-C", REPO, *args],
                          capture_output=True, text=True, timeout=600)


def tree(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


def test_make_install_and_uninstall(tmp_path):
    dest = tmp_path / "root"
    build = os.path.dirname(BIN)
    args = ["DESTDIR=%s" % dest, "PREFIX=/opt/tg", "BUILD=%s" % build]
    r = make("install", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(dest) == sorted([
        "etc/tagarela/tagarela.conf", "opt/tg/bin/tagarela",
        "opt/tg/lib/systemd/system/tagarela.service",
        "opt/tg/share/man/man1/tagarela-bench.1", "opt/tg/share/man/man1/tagarela-capture.1",
        "opt/tg/share/man/man1/tagarela-serve.1", "opt/tg/share/man/man1/tagarela.1",
        "opt/tg/share/man/man5/tagarela.conf.5"])
    binary = dest / "opt/tg/bin/tagarela"
    assert subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.startswith("tagarela ")
    unit = (dest / "opt/tg/lib/systemd/system/tagarela.service").read_text()
    assert "ExecStart=/opt/tg/bin/tagarela serve --config /etc/tagarela/tagarela.conf\n" in unit
    # the example config is valid as installed
    r = subprocess.run([str(binary), "serve", "--config", str(dest / "etc/tagarela/tagarela.conf"),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    # an operator's config survives a reinstall and the uninstall
    conf = dest / "etc/tagarela/tagarela.conf"
    conf.write_text(conf.read_text() + "rate 7\n")
    assert make("install", *args).returncode == 0
    assert conf.read_text().endswith("rate 7\n")
    r = make("uninstall", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(dest) == ["etc/tagarela/tagarela.conf"]
    conf.unlink()
    make("install", *args)
    assert make("uninstall", *args).returncode == 0
    assert tree(dest) == []


def test_systemd_unit_verifies(tmp_path):
    require("systemd-analyze")
    text = open(os.path.join(REPO, "contrib/systemd/tagarela.service")).read()
    for key in ("Type=notify", "DynamicUser=yes", "StateDirectory=tagarela",
                "ProtectSystem=strict", "NoNewPrivileges=yes", "LimitNOFILE=",
                "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert key in text, key
    # verify checks that ExecStart's binary exists: point it at the tested one
    unit = tmp_path / "tagarela.service"
    unit.write_text(text.replace("/usr/bin/tagarela", BIN))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    # and it does notice a broken unit
    unit.write_text(text.replace("/usr/bin/tagarela", BIN).replace("Type=notify", "Type=notifyy"))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 or "notifyy" in r.stderr, r.stdout + r.stderr
