"""Fixtures that run `tagarela serve` on free ports for each test.

Run with Debian's interpreter (it has websockets and pytest):
    /usr/bin/python3 -m pytest tests/integration
The binary is $TAGARELA_BIN, by default <repo>/build/tagarela.
"""

import os

import pytest

from server_proc import BIN, Server

# Without --config the server reads /etc/tagarela/tagarela.conf when it
# exists: the tests never depend on the machine's, unless one names its own.
os.environ.setdefault("TAGARELA_CONFIG", "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def make_server(tmp_path, request):
    """Factory: make_server(*options, env=None) -> started Server. At the end
    of the test each server still running gets SIGTERM and must exit 0; a
    server that died on its own during the test is an error too."""
    servers = []

    def make(*args, env=None):
        s = Server(tmp_path / ("srv%d" % len(servers)), args, env=env)
        servers.append(s)
        return s.start()

    yield make
    problems = []
    failed = getattr(request.node, "rep_call", None) is not None and \
        request.node.rep_call.failed
    for s in servers:
        if s.proc is None:
            continue
        if s.stopped:           # the test stopped it and checked the result
            continue
        was_running = s.alive()
        rc = s.terminate()
        if not was_running:
            problems.append("server died during the test (rc=%r)\n%s"
                            % (rc, s.describe()))
        elif rc != 0:
            problems.append("server did not exit 0 on SIGTERM (rc=%r)\n%s"
                            % (rc, s.describe()))
        elif failed:
            print("---- server %s\n%s" % (s.workdir.name, s.describe()))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def server(make_server):
    """A server with the default options."""
    return make_server()


def pytest_report_header(config):
    return "tagarela binary: %s (%s)" % (BIN, "present" if os.access(BIN, os.X_OK)
                                          else "MISSING")
