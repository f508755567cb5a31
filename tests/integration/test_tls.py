"""TLS on both listeners (issue 12): wss:// on the WebSocket port, https://
and wss://.../ws on the web port, with certificates this test makes with the
openssl command line (a CA and server certificates for 127.0.0.1 and
localhost). Bad files at start, SIGHUP reloads, plain text on a TLS port,
stalled and broken handshakes, renegotiation, and the key log."""

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import websockets

from helpers import Client, async_test
from server_proc import BIN


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_server_cert(d, name, ca="ca", days="30"):
    """A key and a certificate for localhost / 127.0.0.1 signed by the CA."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    (d / (name + ".ext")).write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-extfile", name + ".ext", "-days", days, cwd=d)


def make_expired(d, name):
    """A certificate whose validity ended yesterday (x509 -not_after needs
    OpenSSL 3.4; a throwaway CA config does it on 3.0)."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\nserial=serial\nnew_certs_dir=.\n"
        "default_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n")
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
            "-in", name + ".csr", "-out", name + ".pem", "-startdate", "20200101000000Z",
            "-enddate", "20200102000000Z", "-notext", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=tagarela test CA", cwd=d)
    make_server_cert(d, "one")
    make_server_cert(d, "two")
    make_expired(d, "old")
    openssl("ec", "-in", "one.key", "-aes256", "-passout", "pass:secret", "-out", "locked.key", cwd=d)
    return d


def client_ctx(certs, **kw):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_server(make_server, certs, name="one", *extra):
    return make_server("--tls-cert", certs / (name + ".pem"), "--tls-key", certs / (name + ".key"),
                       "--log-format", "json", *extra)


async def wss(port, certs, path="/", **kw):
    ws = await asyncio.wait_for(
        websockets.connect("wss://localhost:%d%s" % (port, path), ssl=client_ctx(certs),
                           ping_interval=None, close_timeout=2, **kw), 6)
    return Client(ws)


def events(srv):
    return [json.loads(l) for l in srv.stderr(1 << 20).splitlines() if l.startswith("{")]


def wait_event(srv, event, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(srv) if e.get("event") == event]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError("no %s event in the log:\n%s" % (event, srv.stderr()))


def peer_cert_cn(port, certs):
    """The CN of the certificate a new connection is shown."""
    ctx = client_ctx(certs)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            subject = dict(x[0] for x in t.getpeercert()["subject"])
            return subject["commonName"]


def https_get(port, certs, path):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=client_ctx(certs))
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), body


def read_until_closed(s, timeout=5.0):
    """Everything the server sends until it closes; raises on a timeout."""
    s.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


# ---- chat over wss on both ports ------------------------------------------------

@async_test(timeout=30)
async def test_chat_over_wss_on_both_ports(make_server, certs):
    srv = tls_server(make_server, certs)
    a = await wss(srv.ws_port, certs)
    b = await wss(srv.http_port, certs, "/ws")
    await a.login("ana")
    await b.login("bia")
    await a.expect("login")
    content = "olá " * 1000        # several TLS records each way
    await a.say(content)
    for c in (a, b):
        m = await c.expect("say")
        assert m["content"] == content.replace("&", "&amp;")
    await b.say("tchau")
    assert (await a.expect("say"))["content"] == "tchau"
    await a.close()
    await b.close()


@async_test(timeout=30)
async def test_many_messages_and_a_big_one_over_wss(make_server, certs):
    srv = tls_server(make_server, certs, "one", "--rate", "1000", "--burst", "1000")
    a = await wss(srv.ws_port, certs)
    b = await wss(srv.ws_port, certs)
    await a.login("ana")
    await b.login("bia")
    await a.expect("login")
    for i in range(300):
        await a.say("m%d" % i)
    got = []
    while len(got) < 300:
        m = await b.recv(5)
        if m["type"] == "say":
            got.append(m["content"])
    assert got == ["m%d" % i for i in range(300)]
    await a.close()
    await b.close()


def test_https_page_healthz_and_alpn(make_server, certs):
    srv = tls_server(make_server, certs)
    status, ctype, body = https_get(srv.http_port, certs, "/")
    assert status == 200 and ctype.startswith("text/html") and b"<html" in body
    assert https_get(srv.http_port, certs, "/healthz")[:1] == (200,)
    ctx = client_ctx(certs)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.selected_alpn_protocol() == "http/1.1"
            assert t.version() == "TLSv1.3"
    ctx = client_ctx(certs)
    ctx.set_alpn_protocols(["h2"])          # nothing we speak: no_application_protocol
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) as s:
        with pytest.raises(ssl.SSLError, match="no application protocol"):
            ctx.wrap_socket(s, server_hostname="localhost")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls12_works_and_older_versions_do_not(make_server, certs):
    srv = tls_server(make_server, certs)
    ctx = client_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() == "TLSv1.2"
            assert "GCM" in t.cipher()[0] or "CHACHA20" in t.cipher()[0], t.cipher()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this Python's OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5) as s:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx.wrap_socket(s, server_hostname="localhost")
    assert srv.alive()


# ---- bad files at start -------------------------------------------------------------

def run_serve(tmp_path, *args):
    return subprocess.run([BIN, "serve", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--data", str(tmp_path / "data"), *map(str, args)],
                          capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("cert,key,says", [
    ("missing.pem", "one.key", "cannot load the certificate chain from"),
    ("one.key", "one.key", "cannot load the certificate chain from"),
    ("one.pem", "missing.key", "cannot load the private key from"),
    ("one.pem", "locked.key", "cannot load the private key from"),     # never a prompt
    ("one.pem", "two.key", "does not match the certificate"),
    ("old.pem", "old.key", "the certificate expired on 2020-01-02"),
])
def test_bad_certificate_or_key_stops_the_start(certs, tmp_path, cert, key, says):
    r = run_serve(tmp_path, "--tls-cert", certs / cert, "--tls-key", certs / key)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert says in r.stderr, r.stderr
    assert "listening" not in r.stdout


def test_cert_without_key_is_a_usage_error(certs, tmp_path):
    r = run_serve(tmp_path, "--tls-cert", certs / "one.pem")
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr, r.stderr


def test_config_file_keys(make_server, certs, tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text("tls-cert %s\ntls-key %s\n" % (certs / "one.pem", certs / "one.key"))
    srv = make_server("--config", conf)
    assert peer_cert_cn(srv.ws_port, certs) == "one"


# ---- SIGHUP reload -----------------------------------------------------------------

@async_test(timeout=40)
async def test_sighup_reloads_the_certificate_and_keeps_connections(make_server, certs, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs / "one.pem", cert)
    shutil.copy(certs / "one.key", key)
    srv = make_server("--tls-cert", cert, "--tls-key", key, "--log-format", "json")
    a = await wss(srv.ws_port, certs)
    await a.login("ana")
    assert peer_cert_cn(srv.ws_port, certs) == "one"

    shutil.copy(certs / "two.pem", cert)        # certbot renewed
    shutil.copy(certs / "two.key", key)
    srv.proc.send_signal(signal.SIGHUP)
    wait_event(srv, "tls_reloaded")
    assert peer_cert_cn(srv.ws_port, certs) == "two"
    assert peer_cert_cn(srv.http_port, certs) == "two"
    b = await wss(srv.ws_port, certs)
    await b.login("bia")
    await a.expect("login")
    await a.say("still here")                   # the old session goes on
    assert (await b.expect("say"))["content"] == "still here"
    assert (await a.expect("say"))["content"] == "still here"

    cert.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")   # a renewal gone wrong
    srv.proc.send_signal(signal.SIGHUP)
    e = wait_event(srv, "tls_reload_failed")
    assert "cannot load the certificate chain" in e["error"], e
    assert peer_cert_cn(srv.ws_port, certs) == "two"
    await b.say("and still")
    assert (await a.expect("say"))["content"] == "and still"
    await a.close()
    await b.close()


# ---- hostile or broken clients ---------------------------------------------------------

@pytest.mark.parametrize("port", ["ws", "http"])
def test_plain_http_on_a_tls_port_gets_a_plain_400(make_server, certs, port):
    srv = tls_server(make_server, certs)
    p = srv.ws_port if port == "ws" else srv.http_port
    with socket.create_connection(("127.0.0.1", p), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"speaks TLS" in answer, answer
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"\r\nContent-Length: %d\r\n" % len(body) in head + b"\r\n", answer
    assert https_get(srv.http_port, certs, "/healthz")[0] == 200


def test_stalled_and_broken_handshakes_are_closed(make_server, certs):
    srv = tls_server(make_server, certs, "one", "--handshake-timeout", "0.5")
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")    # half a ClientHello
        read_until_closed(s, 5)
    assert 0.4 < time.monotonic() - t0 < 4
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5) as s:
        read_until_closed(s, 5)                                      # says nothing at all
    for junk in (b"\x16\x03\x03\x00\x05hello", b"\x00" * 100, b"\x16" + os.urandom(3000),
                 b"\x17\x03\x03\x40\x00" + b"x" * 100):
        with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5) as s:
            s.sendall(junk)
            read_until_closed(s, 5)
    assert https_get(srv.http_port, certs, "/healthz")[0] == 200


@async_test(timeout=30)
async def test_truncated_record_and_reset_mid_session(make_server, certs):
    srv = tls_server(make_server, certs)
    b = await wss(srv.ws_port, certs)
    await b.login("bia")
    ctx = client_ctx(certs)
    # A session that sends half a record below its TLS layer, and goes:
    # the others carry on.
    raw = socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5)
    t = ctx.wrap_socket(raw, server_hostname="localhost")
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    os.write(t.fileno(), b"\x17\x03\x03\x00\x40" + b"\x00" * 10)
    t.close()
    await b.say("alive")
    assert (await b.expect("say"))["content"] == "alive"
    await b.close()


def test_renegotiation_is_refused(make_server, certs):
    srv = tls_server(make_server, certs)
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.ws_port,
                          "-tls1_2", "-CAfile", str(certs / "ca.pem")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = p.communicate(b"R\n", timeout=10)
    text = out.decode("utf-8", "replace")
    assert "RENEGOTIATING" in text, text
    assert "no renegotiation" in text, text
    assert https_get(srv.http_port, certs, "/healthz")[0] == 200


# ---- the key log -------------------------------------------------------------------------

@async_test(timeout=30)
async def test_keylog_is_off_by_default_and_written_when_asked(make_server, certs, tmp_path):
    log = tmp_path / "keys.log"
    srv = tls_server(make_server, certs, "one", "--tls-keylog", log)
    assert "warning: --tls-keylog" in srv.stderr()
    assert os.stat(log).st_mode & 0o777 == 0o600
    a = await wss(srv.ws_port, certs)
    await a.login("ana")
    await a.close()
    lines = log.read_text().splitlines()
    labels = {l.split()[0] for l in lines}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels, lines
    assert all(len(l.split()) == 3 and len(l.split()[1]) == 64 for l in lines), lines
    plain = tls_server(make_server, certs)
    assert "tls_keylog" not in plain.stderr() and "warning" not in plain.stderr()


# ---- tagarela bench over wss:// ------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--tls12"]])
def test_bench_over_wss_counts_every_delivery(make_server, certs, extra):
    srv = tls_server(make_server, certs, "one", "--rate", "1000000", "--burst", "1000000")
    r = subprocess.run([BIN, "bench", "-n", "20", "-s", "4", "-d", "1", "-q", "--json",
                        "--ca", str(certs / "ca.pem"), *extra,
                        "wss://localhost:%d/" % srv.ws_port],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["logged_in"] == 20 and d["lost"] == 0 and d["dups"] == 0, d
    assert d["deliveries"] == d["expected_deliveries"] > 0, d


def test_bench_checks_the_certificate_with_ca(make_server, certs, tmp_path):
    srv = tls_server(make_server, certs)
    other = tmp_path / "other"
    other.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", "-subj", "/CN=another CA", cwd=other)
    r = subprocess.run([BIN, "bench", "-n", "2", "-s", "1", "-d", "0.2", "-q",
                        "--ca", str(other / "ca.pem"), "wss://localhost:%d/" % srv.ws_port],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "TLS" in r.stderr, r.stderr


def test_a_storm_of_handshakes_all_complete(make_server, certs):
    """Handshakes beyond a turn's share wait for the next turn (tls_conn_pace):
    every one of them must still complete."""
    srv = tls_server(make_server, certs, "one", "--max-conns-per-ip", "10000")
    r = subprocess.run([BIN, "bench", "--idle", "-n", "300", "--max-connecting", "300", "--rooms", "3",
                        "-d", "0.2", "-q", "--json", "wss://127.0.0.1:%d/" % srv.ws_port],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["logged_in"] == 300


def test_over_the_per_address_limit_a_tls_client_is_closed_without_plain_text(make_server, certs):
    srv = tls_server(make_server, certs, "one", "--max-conns-per-ip", "1")
    ctx = client_ctx(certs)
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5) as s1:
        with ctx.wrap_socket(s1, server_hostname="localhost"):
            with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=5) as s2:
                s2.sendall(b"\x16\x03\x01\x00\x05hello")
                assert read_until_closed(s2) == b""      # no 503 in the clear
    assert srv.alive()
