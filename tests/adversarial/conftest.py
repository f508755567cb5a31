"""Fixtures of the adversarial suite (issue 10): the integration suite's
server fixtures, reused by loading its conftest under another name, so both
suites start and stop the real binary the same way.

Run with Debian's interpreter:
    TAGARELA_BIN=$PWD/build/tagarela /usr/bin/python3 -m pytest -q tests/adversarial
TAGARELA_THREADS picks the server shape as in the integration suite;
TAGARELA_SLOW=1 also runs the tests marked slow (each over a minute).
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))


def _load_integration_conftest():
    spec = importlib.util.spec_from_file_location("integration_conftest",
                                                  INTEGRATION / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_integration = _load_integration_conftest()
# make_server starts `tagarela serve` with only --ws/--http/--data (and
# --threads from TAGARELA_THREADS): the default limits under attack. At the
# end each server must still run and exit 0 on SIGTERM.
make_server = _integration.make_server
pytest_runtest_makereport = _integration.pytest_runtest_makereport
pytest_report_header = _integration.pytest_report_header


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: over a minute; runs only with TAGARELA_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TAGARELA_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set TAGARELA_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
