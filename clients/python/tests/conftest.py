"""Fixtures for the multi-process fleet tests (see fleet.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The harness module sits next to this file; make it importable whatever the
# import mode (rootdir/prepend or importlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet as fleet_harness  # noqa: E402
from fleet import FLEET_POLICY, Fleet  # noqa: E402


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """The directory of the Swift executables; fails (never skips) if one is missing."""
    try:
        return fleet_harness.check_binaries()
    except fleet_harness.FleetHarnessFailure as e:
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    """A certificate directory made once per session by scripts/gen-certs."""
    try:
        return fleet_harness.make_certs(tmp_path_factory.mktemp("certs"), days=30)
    except fleet_harness.FleetHarnessFailure as e:
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.fixture
def fleet(bin_dir, certs, tmp_path):
    """A Fleet (fuseboxd + upstream) with FLEET_POLICY applied; torn down after the test."""
    f = Fleet(tmp_path / "fleet", certs)
    try:
        f.apply(FLEET_POLICY)
        yield f
    finally:
        f.teardown()


@pytest.fixture(autouse=True)
def _no_surviving_children():
    """Safety net: SIGKILLs any harness process a test left running."""
    yield
    fleet_harness.kill_all()


def pytest_sessionfinish(session, exitstatus):
    """Last safety net, at the end of the session."""
    fleet_harness.kill_all()
