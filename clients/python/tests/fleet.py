"""Multi-process fleet harness for the Python SDK's tests.

A real fleet on 127.0.0.1: fuseboxd, the demo's flaky upstream
(`fusebox-example upstream`), example services (Swift ones, and Python ones
running `python -m fusebox.example service`) and the `fusebox` CLI.

Modelled on Tests/FuseboxFleetTests/FleetHarness.swift and
Sources/FuseboxTesting/{LaunchedProcess,TestCertificates}.swift. Standard
library only; every wait is bounded; every child is killed at tear-down.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

#: The repository root (three levels up from tests/).
REPO = Path(__file__).resolve().parents[3]
#: clients/python/src, put on PYTHONPATH of Python services.
def _python_sdk_root() -> Path:
    """Where the `fusebox` package the tests import lives (the installed one under
    scripts/test-python, else clients/python/src): Python services run that same copy."""
    try:
        import fusebox
        return Path(fusebox.__file__).resolve().parents[1]
    except ImportError:
        return Path(__file__).resolve().parents[1] / "src"


PYTHON_SRC = _python_sdk_root()
#: The Swift executables the harness runs.
BINARIES = ("fuseboxd", "fusebox", "fusebox-example")

#: The same policy as `fleetPolicy` in FleetHarness.swift.
FLEET_POLICY = """\
name: fleet-test
description: Trips after 3 consecutive failures; 1.5 s open; 2 probes, both must pass.
circuitBreaker:
  consecutiveFailuresThreshold: 3
  minimumCalls: 1
  openDuration:
    baseMs: 1500
  halfOpen:
    permittedCalls: 2
    successThreshold: 2
    maxWaitMs: 5000
timeout:
  attemptMs: 1000
"""


class FleetHarnessFailure(AssertionError):
    """The fleet's own infrastructure failed: the test fails (never skips)."""


# MARK: binaries and certificates


def bin_dir() -> Path:
    """$FUSEBOX_BIN_DIR if set, else <repo>/.build/debug."""
    env = os.environ.get("FUSEBOX_BIN_DIR")
    return Path(env).resolve() if env else REPO / ".build" / "debug"


def binary(name: str) -> Path:
    """The path of the built executable `name`; fails clearly if missing."""
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FleetHarnessFailure(
            f"the Swift executable {name!r} is missing: no executable file at {path} "
            f"(build it with `swift build`, or point FUSEBOX_BIN_DIR at the directory holding "
            f"{', '.join(BINARIES)})"
        )
    return path


def check_binaries() -> Path:
    """Fails unless every executable in BINARIES exists; returns their directory."""
    for name in BINARIES:
        binary(name)
    return bin_dir()


def make_certs(directory: Path | str, days: int = 30, timeout: float = 60) -> Path:
    """Runs `bash scripts/gen-certs --out DIR --days N` from the repo root.

    Gives ca.pem/.key, server.pem/.key and reader/reporter/admin/replica .pem/.key.
    """
    directory = Path(directory)
    try:
        r = subprocess.run(
            ["bash", "scripts/gen-certs", "--out", str(directory), "--days", str(days)],
            cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise FleetHarnessFailure(f"scripts/gen-certs took more than {timeout} s: {e}") from e
    if r.returncode != 0:
        raise FleetHarnessFailure(f"could not make test certificates (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    for name in ("ca.pem", "server.pem", "server.key", "reader.pem", "reporter.pem", "admin.pem", "admin.key"):
        if not (directory / name).is_file():
            raise FleetHarnessFailure(f"scripts/gen-certs did not make {name} in {directory}")
    return directory


# MARK: processes

#: Every Proc still possibly running (see kill_all()).
_LIVE: "weakref.WeakSet[Proc]" = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


class Proc:
    """A child process whose stdout is collected line by line while it runs.

    A background thread reads stdout into a list (under a lock); another keeps
    the last 64 KB of stderr. stdin is /dev/null.
    """

    STDERR_KEEP = 64 * 1024

    def __init__(self, argv: Sequence[Any], name: Optional[str] = None, env: Optional[dict] = None,
                 cwd: Optional[Path | str] = None):
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self._lines: list[str] = []
        self._stderr = bytearray()
        self._cond = threading.Condition()
        full_env = None if env is None else {**os.environ, **env}
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=full_env, cwd=None if cwd is None else str(cwd),
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._readers = [
            threading.Thread(target=self._read_stdout, name=f"{self.name}-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"{self.name}-stderr", daemon=True),
        ]
        for t in self._readers:
            t.start()

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} returncode={self.popen.returncode}>"

    def _read_stdout(self) -> None:
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        while True:
            chunk = self.popen.stderr.read1(8192)
            if not chunk:
                return
            with self._cond:
                self._stderr += chunk
                if len(self._stderr) > self.STDERR_KEEP:
                    del self._stderr[: len(self._stderr) - self.STDERR_KEEP]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def lines(self) -> list[str]:
        """The lines printed to stdout so far (a copy)."""
        with self._cond:
            return list(self._lines)

    def text(self) -> str:
        """Everything printed to stdout so far."""
        return "".join(line + "\n" for line in self.lines())

    def events(self) -> list[dict]:
        """The stdout lines that parse as JSON objects (others skipped)."""
        out = []
        for line in self.lines():
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def stderr_tail(self, limit: int = 4000) -> str:
        """The last `limit` bytes written to stderr."""
        with self._cond:
            return bytes(self._stderr[-limit:]).decode("utf-8", "replace")

    def _outputs_drained(self) -> bool:
        return not self._readers[0].is_alive()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> Optional[str]:
        """Waits (bounded) for a stdout line satisfying `predicate`; returns it, or None
        on timeout or once the process exited without printing one."""
        deadline = time.monotonic() + timeout
        checked = 0
        with self._cond:
            while True:
                while checked < len(self._lines):
                    line = self._lines[checked]
                    checked += 1
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if self.popen.poll() is not None and self._outputs_drained():
                    return None
                self._cond.wait(min(remaining, 0.05))

    def wait_event(self, predicate: Callable[[dict], bool], timeout: float) -> Optional[dict]:
        """Like wait_line, for JSON-object lines; returns the parsed event."""
        found: list[dict] = []

        def match(line: str) -> bool:
            if not line.startswith("{"):
                return False
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            if isinstance(obj, dict) and predicate(obj):
                found.append(obj)
                return True
            return False

        return found[0] if self.wait_line(match, timeout) is not None else None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Sends `sig` (if still running), waits at most `timeout` s, then SIGKILLs;
        returns the exit status (negative: killed by that signal)."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # unkillable: nothing more to do
            pass
        for t in self._readers:
            t.join(timeout=2)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return self.popen.returncode

    def kill(self) -> int:
        """stop(SIGKILL)."""
        return self.stop(signal.SIGKILL, timeout=5)


def kill_all() -> list[str]:
    """SIGKILLs every Proc still running; returns their names (a safety net)."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    killed = []
    for p in procs:
        if p.running:
            killed.append(f"{p.name} (pid {p.pid})")
        p.kill()
    return killed


atexit.register(kill_all)


def eventually(timeout: float, condition: Callable[[], Any]) -> bool:
    """Polls `condition` every 10 ms until it is truthy; False after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


_LISTENING = "listening on 127.0.0.1:"
_OBSERVABILITY = "observability on http://127.0.0.1:"


def _port_after(marker: str, line: str) -> Optional[int]:
    i = line.find(marker)
    if i < 0:
        return None
    m = re.match(r"\d+", line[i + len(marker):])
    return int(m.group()) if m else None


class Fuseboxd:
    """`fuseboxd` started with the test certificates on 127.0.0.1 (like FuseboxdProcess)."""

    def __init__(self, certs: Path, data_dir: Path | str, port: int = 0, extra: Sequence[str] = (),
                 env: Optional[dict] = None, timeout: float = 30):
        self.data_dir = Path(data_dir)
        self.proc = Proc([
            binary("fuseboxd"), "--host", "127.0.0.1", "--port", port, "--data-dir", self.data_dir,
            "--cert", certs / "server.pem", "--key", certs / "server.key", "--client-ca", certs / "ca.pem",
            "--metrics-port", "0", *extra,
        ], name="fuseboxd", env=env)
        observability = self.proc.wait_line(lambda l: _OBSERVABILITY in l, timeout)
        listening = next((l for l in self.proc.lines() if _LISTENING in l), None)
        p = _port_after(_LISTENING, listening) if listening else None
        m = _port_after(_OBSERVABILITY, observability) if observability else None
        if p is None or m is None:
            self.proc.kill()
            raise FleetHarnessFailure(
                f"fuseboxd did not start (port {port}, data {self.data_dir}, exit {self.proc.returncode}):\n"
                f"{self.proc.text()}\n{self.proc.stderr_tail()}"
            )
        self.port: int = p
        self.metrics_port: int = m

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        """Sends `sig`, waits (bounded); returns (status, seconds)."""
        start = time.monotonic()
        status = self.proc.stop(sig, timeout)
        return status, time.monotonic() - start


class Transition(NamedTuple):
    """A "state" event: the breaker went to `to` at `generation`, at `at_ms` (wall clock)."""

    to: str
    generation: int
    at_ms: int


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Fleet:
    """fuseboxd + the flaky upstream + services, all on 127.0.0.1, under `directory`."""

    def __init__(self, directory: Path | str, certs: Path | str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.certs = Path(certs)
        check_binaries()
        self.services: dict[str, Proc] = {}
        #: More fuseboxd processes a test started (killed at tear-down).
        self.other_servers: list[Fuseboxd] = []
        self._old_servers: list[Fuseboxd] = []
        self.server: Fuseboxd = Fuseboxd(self.certs, self.directory / "data")
        self.upstream: Optional[Proc] = None
        try:
            self.upstream = Proc([binary("fusebox-example"), "upstream", "--port", "0"], name="upstream")
            line = self.upstream.wait_line(lambda l: l.startswith("upstream listening on"), 20)
            m = re.search(r":(\d+)\s*$", line) if line else None
            port = int(m.group(1)) if m else None
            if port is None:
                raise FleetHarnessFailure(
                    f"upstream did not start: {self.upstream.text()} {self.upstream.stderr_tail()}")
            self.upstream_port: int = port
        except BaseException:
            self.teardown()
            raise

    # MARK: servers

    @property
    def server_address(self) -> str:
        return self.server.address

    def start_server(self, data_dir: Path | str, port: int = 0, extra: Sequence[str] = ()) -> Fuseboxd:
        """Starts another fuseboxd (killed at tear-down)."""
        s = Fuseboxd(self.certs, data_dir, port=port, extra=extra)
        self.other_servers.append(s)
        return s

    def kill_server(self) -> int:
        """SIGKILLs the fleet's fuseboxd; returns its status."""
        return self.server.stop(signal.SIGKILL)[0]

    def restart_server(self, extra: Sequence[str] = (), timeout: float = 30) -> Fuseboxd:
        """Starts a new fuseboxd on the SAME port and data directory as the (killed)
        current one; SIGKILLs the old one first if it still runs. Retries (bounded)
        while the port is briefly unavailable."""
        old = self.server
        if old.proc.running:
            old.stop(signal.SIGKILL)
        self._old_servers.append(old)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.server = Fuseboxd(self.certs, old.data_dir, port=old.port, extra=extra,
                                       timeout=max(1.0, deadline - time.monotonic()))
                return self.server
            except FleetHarnessFailure:
                if time.monotonic() + 0.2 >= deadline:
                    raise
                time.sleep(0.2)

    # MARK: CLI

    def cli(self, args: Sequence[Any], identity: str = "admin", input: Optional[str] = None,
            server: Optional[str] = None, timeout: float = 30) -> subprocess.CompletedProcess:
        """Runs `fusebox ARGS --server … --ca … --cert/--key IDENTITY` (stdout and stderr
        captured separately, as text); `server` overrides the address."""
        argv = [str(binary("fusebox")), *map(str, args),
                "--server", server or self.server.address, "--ca", str(self.certs / "ca.pem"),
                "--cert", str(self.certs / f"{identity}.pem"), "--key", str(self.certs / f"{identity}.key")]
        try:
            return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise FleetHarnessFailure(f"`fusebox {' '.join(map(str, args))}` took more than {timeout} s") from e

    def apply(self, yaml: str, server: Optional[str] = None) -> None:
        """`fusebox policies apply -f FILE --reason "fleet test"`; asserts exit 0."""
        file = self.directory / f"policy-{uuid.uuid4()}.yaml"
        file.write_text(yaml)
        r = self.cli(["policies", "apply", "-f", file, "--reason", "fleet test"], server=server)
        if r.returncode != 0:
            raise FleetHarnessFailure(f"policies apply failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")

    def server_breaker(self, name: str = "orders-upstream", server: Optional[str] = None) -> Optional[tuple[str, int]]:
        """The server's view of breaker `name` via `fusebox breakers get NAME -o json`
        (identity reader): (state, generation), or None."""
        r = self.cli(["breakers", "get", name, "-o", "json"], identity="reader", server=server)
        if r.returncode != 0:
            return None
        try:
            status = json.loads(r.stdout).get("status")
        except (ValueError, AttributeError):
            return None
        if not isinstance(status, dict):
            return None
        state, generation = status.get("state"), _int(status.get("generation"))
        if not isinstance(state, str) or generation is None:
            return None
        return state, generation

    # MARK: services

    def _service_flags(self, id: str, identity: str, policy: str, staleness: float, cache_dir, upstream_port,
                       servers) -> list[str]:
        return [
            "--upstream", f"127.0.0.1:{upstream_port or self.upstream_port}",
            "--server", servers or self.server.address,
            "--ca", str(self.certs / "ca.pem"), "--cert", str(self.certs / f"{identity}.pem"),
            "--key", str(self.certs / f"{identity}.key"), "--guard-name", "orders-upstream", "--policy", policy,
            "--client-id", id, "--cache-dir", str(cache_dir or self.directory / f"cache-{id}"),
            "--interval-ms", "20", "--status-ms", "100",
            "--staleness-seconds", str(staleness), "--startup-timeout-seconds", "2",
        ]

    def start_swift_service(self, id: str, policy: str = "fleet-test", staleness: float = 30,
                            extra: Sequence[str] = (), cache_dir=None, upstream_port: Optional[int] = None,
                            servers: Optional[str] = None) -> Proc:
        """Starts `fusebox-example service` (the Swift SDK) guarding "orders-upstream"
        with the Swift harness's arguments; `servers` is "a:1,b:2"."""
        self._check_new(id)
        argv = [binary("fusebox-example"), "service",
                *self._service_flags(id, "reporter", policy, staleness, cache_dir, upstream_port, servers), *extra]
        s = Proc(argv, name=f"swift:{id}")
        self.services[id] = s
        return s

    def start_python_service(self, id: str, policy: str = "fleet-test", staleness: float = 30,
                             extra: Sequence[str] = (), cache_dir=None, upstream_port: Optional[int] = None,
                             servers: Optional[str] = None) -> Proc:
        """Starts `python -m fusebox.example service` (the Python SDK, from
        clients/python/src) with the same flags as start_swift_service."""
        self._check_new(id)
        argv = [sys.executable, "-m", "fusebox.example", "service",
                *self._service_flags(id, "reporter", policy, staleness, cache_dir, upstream_port, servers), *extra]
        path = os.environ.get("PYTHONPATH")
        env = {"PYTHONPATH": str(PYTHON_SRC) + (os.pathsep + path if path else ""), "PYTHONUNBUFFERED": "1"}
        s = Proc(argv, name=f"python:{id}", env=env, cwd=self.directory)
        self.services[id] = s
        return s

    def _check_new(self, id: str) -> None:
        old = self.services.get(id)
        if old is not None and old.running:
            raise FleetHarnessFailure(f"service {id!r} is already running")

    def events(self, id: str) -> list[dict]:
        """The JSON events service `id` printed."""
        s = self.services.get(id)
        return s.events() if s else []

    def transitions(self, id: str) -> list[Transition]:
        """State changes service `id` saw ("state" events): (to, generation, at_ms)."""
        out = []
        for e in self.events(id):
            if e.get("event") != "state":
                continue
            to, g, at = e.get("to"), _int(e.get("generation")), _int(e.get("atMs"))
            if isinstance(to, str) and g is not None and at is not None:
                out.append(Transition(to, g, at))
        return out

    def last_status(self, id: str) -> Optional[dict]:
        """The last "status" event of service `id`."""
        return next((e for e in reversed(self.events(id)) if e.get("event") == "status"), None)

    def wait_started(self, id: str, timeout: float = 30) -> dict:
        """Waits for service `id`'s "started" event; fails (with its stderr) without one."""
        s = self.services[id]
        e = s.wait_event(lambda e: e.get("event") == "started", timeout)
        if e is None:
            raise FleetHarnessFailure(
                f"{id} did not start (exit {s.returncode}):\n{s.text()[-2000:]}\n{s.stderr_tail()}")
        return e

    # MARK: upstream

    def upstream_request(self, method: str, path: str, timeout: float = 5) -> str:
        """GETs or POSTs the upstream's control endpoints (/fail, /recover, /slow?ms=N, /stats)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.upstream_port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        try:
            with _NO_PROXY.open(req, timeout=timeout) as r:
                return r.read().decode()
        except (urllib.error.URLError, OSError) as e:
            raise FleetHarnessFailure(f"upstream request {method} {path} failed: {e}") from e

    def upstream_calls(self) -> int:
        """Calls that reached the upstream so far (GET /stats: "calls=N failing=…")."""
        stats = self.upstream_request("GET", "/stats")
        m = re.search(r"calls=(\d+)", stats)
        if not m:
            raise FleetHarnessFailure(f"unexpected /stats answer: {stats!r}")
        return int(m.group(1))

    # MARK: diagnostics and tear-down

    def report(self, stderr_bytes: int = 1500) -> str:
        """Each process's state and stderr tail, for failure messages."""
        parts = []
        procs = [("fuseboxd", self.server.proc)] + ([("upstream", self.upstream)] if self.upstream else [])
        procs += list(self.services.items())
        for name, p in procs:
            parts.append(f"--- {name} (pid {p.pid}, exit {p.returncode}) stderr:\n{p.stderr_tail(stderr_bytes)}")
        return "\n".join(parts)

    def teardown(self) -> None:
        """SIGKILLs every process of the fleet (the directory is left for post-mortems)."""
        for s in self.services.values():
            s.kill()
        for srv in self.other_servers + self._old_servers:
            srv.proc.kill()
        if self.upstream is not None:
            self.upstream.kill()
        self.server.proc.kill()


def first_seen(fleet: "Fleet", state: str, ids, generation_above: int) -> dict:
    """The first transition to `state` above `generation_above` of each service that saw one."""
    out = {}
    for id in ids:
        t = next((t for t in fleet.transitions(id) if t.to == state and t.generation > generation_above), None)
        if t is not None:
            out[id] = t
    return out
