"""The Debian package (issue 14): `make deb` builds it, `dpkg -i` installs
it on this machine, the installed binary runs and serves with the packaged
config (on free ports, its data in a temporary directory), and
`dpkg --purge` takes it all away again.

It installs a package system-wide, so it runs only as root or with
TAGARELA_PACKAGING=1, and never when a tagarela package or /etc/tagarela
is already there (it would change what it found):
    /usr/bin/python3 -m pytest -q tests/packaging
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF = "/etc/tagarela/tagarela.conf"

pytestmark = pytest.mark.skipif(
    os.environ.get("TAGARELA_PACKAGING") != "1" and os.geteuid() != 0,
    reason="installs a package: runs as root or with TAGARELA_PACKAGING=1")


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "tagarela"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "installed" in r.stdout


def run(*args, timeout=120):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def deb(tmp_path):
    if installed() or os.path.exists("/etc/tagarela") or os.path.exists("/usr/bin/tagarela"):
        pytest.skip("a tagarela is already installed here: the test would change it")
    r = run("make", "--no-print-directory", "-C", str(REPO), "deb", "BUILD=%s" % tmp_path,
            timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    debs = list((tmp_path / "deb").glob("tagarela_*.deb"))
    assert len(debs) == 1, r.stdout
    # lintian's verdict: every tag left is explained in docs/operating.md
    doc = (REPO / "docs" / "operating.md").read_text()
    for tag in re.findall(r"^[EW]: tagarela[^:]*: ([\w-]+)", r.stdout, re.M):
        assert "`%s`" % tag in doc, "lintian tag %s is not explained in docs/operating.md" % tag
    yield debs[0]
    if installed():
        run("dpkg", "--purge", "tagarela")


def serve_once(tmp_path):
    """The installed binary with the packaged config on free ports."""
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(["/usr/bin/tagarela", "serve", "--config", CONF,
                                 "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0",
                                 "--data", str(tmp_path / "data")],
                                stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and out.read_text().count("listening on") < 2:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
        ports = [int(p) for p in re.findall(r"listening on 127\.0\.0\.1:(\d+)", out.read_text())]
        assert len(ports) == 2, (out.read_text(), err.read_text())
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % ports[1], timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
    assert rc == 0, err.read_text()
    assert "event=started" in err.read_text()


def test_deb_installs_runs_and_purges(deb, tmp_path):
    files = run("dpkg-deb", "-c", str(deb)).stdout
    for path in ("./usr/bin/tagarela", "./usr/share/man/man1/tagarela-serve.1.gz",
                 "./usr/share/man/man5/tagarela.conf.5.gz", "./etc/tagarela/tagarela.conf",
                 "./usr/lib/systemd/system/tagarela.service"):
        assert path in files, files

    r = run("dpkg", "-i", str(deb))
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed()
    r = run("/usr/bin/tagarela", "--version")
    assert r.returncode == 0 and r.stdout.startswith("tagarela "), r
    r = run("/usr/bin/tagarela", "serve", "--config", CONF, "--check-config")
    assert r.returncode == 0, r.stderr
    assert run("dpkg-query", "-W", "-f=${Conffiles}", "tagarela").stdout.strip().startswith(CONF)
    serve_once(tmp_path)

    r = run("dpkg", "--purge", "tagarela")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not installed()
    for path in ("/usr/bin/tagarela", "/etc/tagarela", "/usr/lib/systemd/system/tagarela.service",
                 "/usr/share/man/man1/tagarela-serve.1.gz", "/usr/share/doc/tagarela"):
        assert not os.path.exists(path), path
