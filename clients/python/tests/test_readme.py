"""The README's Python service runs as printed, against a real fuseboxd and
the flaky upstream: it calls, the failing upstream trips the fleet's breaker,
and the rejections say so."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from fleet import PYTHON_SRC, eventually

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def readme_service() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no Python service"
    return blocks[0]


def test_the_readmes_python_service_runs_and_trips_the_fleets_breaker(fleet):
    code = readme_service()
    assert len([l for l in code.splitlines() if l.strip() and not l.strip().startswith("#")]) <= 15
    work = fleet.directory / "readme-service"
    (work / ".fusebox").mkdir(parents=True)
    (work / ".fusebox" / "certs").symlink_to(fleet.certs)
    (work / "service.py").write_text(code)
    fleet.upstream_request("POST", "/fail")
    env = {**os.environ, "FUSEBOX_SERVER": fleet.server_address, "UPSTREAM": f"http://127.0.0.1:{fleet.upstream_port}",
           "PYTHONPATH": str(PYTHON_SRC)}
    r = subprocess.run([sys.executable, "service.py"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 50, r.stdout
    assert lines[0].startswith("failed: HTTP Error 503"), (lines[:3], r.stderr[-3000:])
    assert any(l.startswith("breaker open; retry after") for l in lines), r.stdout + r.stderr[-3000:]
    assert eventually(5, lambda: (fleet.server_breaker("flaky-upstream") or ("", 0))[0] == "OPEN")
