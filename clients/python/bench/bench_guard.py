#!/usr/bin/env python3
"""The Python SDK's hot-path overhead: microseconds per guarded call in CLOSED,
next to pybreaker in the same run (docs/BENCHMARKS.md, "Python SDK: hot-path
overhead (issue 19)").

    cd /work/main && PYTHONPATH=clients/python/src FUSEBOX_BIN_DIR=.build-dev/debug \\
        python3 clients/python/bench/bench_guard.py [--calls N] [--repeats R]

Starts a real fuseboxd on 127.0.0.1 (throw-away certificates from
scripts/gen-certs), applies two policies with the `fusebox` CLI:

    bench-breaker   circuitBreaker {failureRateThreshold: 50, minimumCalls: 100}
    bench-pipeline  the same breaker + retry (3 attempts, retry budget)
                    + rateLimit (10^9 per second: never refuses)
                    + bulkhead (100 concurrent); no timeout

then starts `fusebox.Fusebox` (reporter identity) against it and times, with
time.perf_counter_ns over N calls after a warm-up:

    bare call             f()                      f returns 1
    fusebox g.call        g.call(f)                guard on bench-breaker
    pybreaker             CircuitBreaker(fail_max=5, reset_timeout=60).call(f)
    fusebox pipeline      p.call(f)                guard on bench-pipeline
    bare await            await af()               af is `async def af(): return 1`
    fusebox g.run         await g.run(af)
    fusebox pipeline run  await p.run(af)

The cases run round-robin, R rounds (default 5); each case's figure is the
median of its R rounds. Every call must pass (a rejection raises and ends the
run); both breakers must be CLOSED, the client in fleet mode with its
policies from the server, before and after. The SDK runs as shipped: its
session thread reports outcomes meanwhile (every 100 ms, and when 1,000
outcomes are waiting), and the garbage collector stays on.

Options, after the measurement: --profile N runs cProfile over N calls each
of g.call(f), p.call(f) and pybreaker's cb.call(f) (by cumulative and by own
time); --breakdown
times the pieces of g.call, and the pipeline's extra pieces, each alone.
--count-wakes counts how often guarded calls woke the SDK's reporter.
--breakdown and --count-wakes reach into private SDK internals (to measure
only; pieces the SDK no longer has are left out). --report-batch-size sets
FuseboxConfig.report_batch_size. The SDK files measured are named by a
sha256 over the imported package and the git HEAD.
Prints one summary table and one JSON line (prefixed "JSON ").
Standard library + fusebox + pybreaker only. Every wait is bounded; the run
is killed after --max-seconds (default 600).
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from time import perf_counter_ns

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fleet  # noqa: E402  (clients/python/tests/fleet.py: Fuseboxd, make_certs, binary)

try:
    import pybreaker  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("bench_guard.py needs pybreaker: pip install pybreaker")

import fusebox  # noqa: E402
from importlib.metadata import PackageNotFoundError, version as dist_version  # noqa: E402

try:
    PYBREAKER_VERSION = dist_version("pybreaker")
except PackageNotFoundError:  # pragma: no cover
    PYBREAKER_VERSION = getattr(pybreaker, "__version__", "?")

BREAKER_POLICY = """\
name: bench-breaker
description: Hot-path benchmark; breaker only.
circuitBreaker:
  failureRateThreshold: 50
  minimumCalls: 100
"""

PIPELINE_POLICY = """\
name: bench-pipeline
description: Hot-path benchmark; breaker + retry + rate limit + bulkhead, no timeout.
circuitBreaker:
  failureRateThreshold: 50
  minimumCalls: 100
retry:
  maxAttempts: 3
  backoff: {kind: exponential, initialMs: 100, maxMs: 2000, multiplier: 2}
  budget: {maxTokens: 10, tokenRatio: 0.1}
rateLimit: {limitPerPeriod: 1000000000, periodMs: 1000, maxWaitMs: 0}
bulkhead: {maxConcurrent: 100, maxQueued: 0, maxWaitMs: 1000}
"""

TIMEOUT_POLICY = """\
name: bench-timeout
description: Hot-path benchmark; breaker + attempt timeout (call() runs the attempt on a helper thread).
circuitBreaker:
  failureRateThreshold: 50
  minimumCalls: 100
timeout: {attemptMs: 1000}
"""

# Cases whose calls are far slower run this fraction of --calls (their µs/call stays comparable).
SLOW_CASE_DIVISOR = {"fusebox t.call(f), breaker + attempt timeout": 50}


def f():
    return 1


async def af():
    return 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sdk_source() -> dict:
    """Which SDK was measured: the imported package's files (sha256 over its .py files),
    the repository's HEAD, and whether clients/python/src differs from it."""
    import hashlib
    root = Path(fusebox.__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(root.rglob("*.py"))
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    out = {"path": str(root), "sha256": h.hexdigest()[:16],
           "newest_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(p.stat().st_mtime for p in files)))}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=root, capture_output=True, text=True,
                               timeout=10)
        if head.returncode == 0:
            out["head"] = head.stdout.strip()
            out["modified_files"] = len([l for l in dirty.stdout.splitlines() if l.strip()])
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return platform.processor() or "unknown"


# MARK: CPU accounting (Linux /proc): how busy the machine was besides us


def _ticks() -> tuple:
    """(busy ticks of all CPUs, steal ticks) from /proc/stat; (0, 0) where there is none."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, steal


def _proc_ticks(pid) -> int:
    """utime + stime of process `pid` (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


class CpuWatch:
    """CPU seconds used during a span: by this process, by fuseboxd, by everything else."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def sample(self) -> tuple:
        busy, steal = _ticks()
        return time.monotonic(), busy, steal, _proc_ticks("self"), _proc_ticks(self.server_pid)

    def since(self, start: tuple) -> dict:
        end = self.sample()
        wall = end[0] - start[0]
        busy, steal, me, srv = ((end[i] - start[i]) / self.hz for i in range(1, 5))
        return {"wall_s": round(wall, 2), "cpu_capacity_s": round(wall * (os.cpu_count() or 1), 2),
                "bench_cpu_s": round(me, 2), "fuseboxd_cpu_s": round(srv, 2),
                "others_cpu_s": round(max(0.0, busy - me - srv), 2), "steal_s": round(steal, 2)}


# MARK: timing loops (same shape for every case: a range loop, one call per iteration)


def bare_loop(n: int) -> int:
    fn = f
    t0 = perf_counter_ns()
    for _ in range(n):
        fn()
    return perf_counter_ns() - t0


def call_loop(call):
    def loop(n: int) -> int:
        fn = f
        t0 = perf_counter_ns()
        for _ in range(n):
            call(fn)
        return perf_counter_ns() - t0
    return loop


async def abare_loop(n: int) -> int:
    fn = af
    t0 = perf_counter_ns()
    for _ in range(n):
        await fn()
    return perf_counter_ns() - t0


def arun_loop(run):
    async def loop(n: int) -> int:
        fn = af
        t0 = perf_counter_ns()
        for _ in range(n):
            await run(fn)
        return perf_counter_ns() - t0
    return loop


# MARK: the fleet side


def apply_policy(certs: Path, address: str, text: str, work: Path, name: str) -> None:
    file = work / f"{name}.yaml"
    file.write_text(text)
    argv = [str(fleet.binary("fusebox")), "policies", "apply", "-f", str(file), "--reason", "bench",
            "--server", address, "--ca", str(certs / "ca.pem"), "--cert", str(certs / "admin.pem"),
            "--key", str(certs / "admin.key")]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise SystemExit(f"policies apply {name} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")


def server_breaker(certs: Path, address: str, name: str) -> dict:
    argv = [str(fleet.binary("fusebox")), "breakers", "get", name, "-o", "json",
            "--server", address, "--ca", str(certs / "ca.pem"), "--cert", str(certs / "reader.pem"),
            "--key", str(certs / "reader.key")]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        return {"error": (r.stdout + r.stderr).strip()}
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"error": r.stdout.strip()}


def check_client(fb, guards) -> None:
    problems = []
    if fb.policy_source != "server":
        problems.append(f"policy_source is {fb.policy_source!r}, not 'server'")
    if fb.mode != "fleet":
        problems.append(f"mode is {fb.mode!r}, not 'fleet'")
    for g, policy, want in guards:
        p = g.policy
        if p is None or p.name != policy:
            problems.append(f"guard {g.name}: policy {None if p is None else p.name!r}, not {policy!r}")
            continue
        have = tuple(s for s in ("breaker", "retry", "timeout", "rate_limit", "bulkhead", "fallback", "cache")
                     if getattr(p, s) is not None)
        if have != want:
            problems.append(f"guard {g.name}: sections {have}, expected {want}")
        state = g.breaker_state.state
        if state != "CLOSED":
            problems.append(f"guard {g.name}: breaker {state}, not CLOSED")
        if g.local_open_until is not None:
            problems.append(f"guard {g.name}: open locally below quorum")
    if problems:
        raise SystemExit("benchmark precondition failed: " + "; ".join(problems))


# MARK: breakdown and profile (private SDK internals, read only)


def breakdown(g, p, n: int) -> dict:
    """Times the pieces g.call runs for a CLOSED breaker-only guard, and the
    pipeline's extra pieces (guard p), each on its own in a loop of n. These
    are private SDK internals: a piece the SDK no longer has is left out."""
    from fusebox import breaker as fb_breaker
    policy, _ = g._resolve()
    sb = g._breaker
    state = g._state
    generation = g.breaker_state.generation
    pieces = {
        "g._resolve()": lambda: g._resolve(),
        "time.monotonic()": time.monotonic,
        "breaker.now_ms()": fb_breaker.now_ms,
        "state.record(sb, 'success', gen, None)": lambda: state.record(sb, "success", generation, None),
    }
    if hasattr(g, "_admit"):  # since the guard refactor: _admit(policy) -> (decision, ticket, error)
        pieces["g._admit(policy)"] = lambda: g._admit(policy)
        ticket = g._admit(policy)[1]
        if hasattr(g, "_finish"):
            pieces["g._finish(policy, ticket, None, 0.0)"] = lambda: g._finish(policy, ticket, None, 0.0)
        if hasattr(g, "_leave"):
            pieces["g._leave(ticket)"] = lambda: g._leave(ticket)
    if hasattr(g, "_admit_locally"):
        pieces["g._admit_locally()"] = lambda: g._admit_locally()
    if hasattr(g, "_outcome"):
        pieces["g._outcome(policy, None, 0.0)"] = lambda: g._outcome(policy, None, 0.0)
    if hasattr(g, "_record"):
        pieces["g._record(policy, gen, None, 'success', 0.0)"] = lambda: g._record(policy, generation, None, "success", 0.0)
    pc = p._components
    if pc.bucket is not None:
        pieces["pipeline: bucket.reserve()"] = pc.bucket.reserve
    if pc.bulkhead is not None:
        bulkhead = pc.bulkhead

        def bulkhead_pair():
            bulkhead.acquire(0)
            bulkhead.release()
        pieces["pipeline: bulkhead.acquire(0) + release()"] = bulkhead_pair
        pieces["pipeline: bulkhead.active, bulkhead.queued"] = lambda: (bulkhead.active, bulkhead.queued)
    if pc.budget is not None:
        pieces["pipeline: budget.record(True)"] = lambda: pc.budget.record(True)
    out = {}
    for name, fn in pieces.items():
        for _ in range(min(n, 10_000)):
            fn()
        t0 = perf_counter_ns()
        for _ in range(n):
            fn()
        out[name] = (perf_counter_ns() - t0) / n / 1000
    t0 = perf_counter_ns()
    for _ in range(n):
        pass
    out["(empty loop)"] = (perf_counter_ns() - t0) / n / 1000
    return out


def profile(call, n: int, lines: int = 25) -> str:
    """cProfile of n call(f), by cumulative and by own time (the main thread only)."""
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        call(f)
    pr.disable()
    s = io.StringIO()
    ps = pstats.Stats(pr, stream=s).sort_stats("cumulative")
    ps.print_stats(lines)
    s.write("\n--- by own time ---\n")
    ps.sort_stats("tottime").print_stats(lines)
    return s.getvalue()


# MARK: main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200_000, help="calls per measurement (default 200,000)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds; each case's figure is the median (default 5)")
    ap.add_argument("--warmup", type=int, default=20_000, help="warm-up calls per case (default 20,000)")
    ap.add_argument("--report-batch-size", type=int, default=None,
                    help="FuseboxConfig.report_batch_size (default: the SDK's, 1,000)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="also cProfile N g.call calls")
    ap.add_argument("--breakdown", action="store_true", help="also time the pieces of g.call on their own")
    ap.add_argument("--count-wakes", action="store_true",
                    help="count the guards' wake-ups of the reporter per case (wraps a private hook)")
    ap.add_argument("--max-seconds", type=float, default=600, help="kill the run after this long (default 600)")
    args = ap.parse_args()
    if args.calls < 1 or args.repeats < 1:
        ap.error("--calls and --repeats must be at least 1")

    server_box: dict = {}

    def watchdog():
        log(f"bench_guard: still running after {args.max_seconds:.0f} s; killing fuseboxd and exiting")
        s = server_box.get("server")
        if s is not None:
            s.proc.kill()
        os._exit(3)

    timer = threading.Timer(args.max_seconds, watchdog)
    timer.daemon = True
    timer.start()

    fleet.check_binaries()
    source = sdk_source()  # the files just imported: what is measured
    work = Path(tempfile.mkdtemp(prefix="fusebox-bench-guard-"))
    certs = fleet.make_certs(work / "certs", days=30)
    server = fleet.Fuseboxd(certs, work / "data")
    server_box["server"] = server
    fb = None
    loop = None
    try:
        apply_policy(certs, server.address, BREAKER_POLICY, work, "bench-breaker")
        apply_policy(certs, server.address, PIPELINE_POLICY, work, "bench-pipeline")
        apply_policy(certs, server.address, TIMEOUT_POLICY, work, "bench-timeout")
        config = fusebox.FuseboxConfig(
            endpoints=server.address, ca=str(certs / "ca.pem"), cert=str(certs / "reporter.pem"),
            key=str(certs / "reporter.key"), client_id="bench", cache_dir=str(work / "cache"))
        if args.report_batch_size is not None:
            config.report_batch_size = args.report_batch_size
        fb = fusebox.Fusebox.start(config)
        g = fb.guard("bench", policy="bench-breaker")
        p = fb.guard("bench-pipeline", policy="bench-pipeline")
        t = fb.guard("bench-timeout", policy="bench-timeout")
        guards = [(g, "bench-breaker", ("breaker",)),
                  (p, "bench-pipeline", ("breaker", "retry", "rate_limit", "bulkhead")),
                  (t, "bench-timeout", ("breaker", "timeout"))]
        # The session's breaker watch open (private: Session.unconfirmed_since is None while one is).
        session = getattr(fb, "_session", None)
        if session is not None and hasattr(session, "unconfirmed_since"):
            deadline = time.monotonic() + 15
            while session.unconfirmed_since is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if session.unconfirmed_since is not None:
                raise SystemExit("the client's breaker watch did not open within 15 s")
        else:
            log("cannot see whether the breaker watch is open (SDK internals changed); waiting 1 s")
            time.sleep(1)
        check_client(fb, guards)
        wakes = [0]
        if args.count_wakes:  # private: FleetState.wake_reporter, which FleetState.record calls
            inner = fb._state.wake_reporter

            def counting_wake():
                wakes[0] += 1
                inner()
            fb._state.wake_reporter = counting_wake

        cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
        loop = asyncio.new_event_loop()

        sync_cases = {
            "bare call f()": bare_loop,
            "fusebox g.call(f), breaker only": call_loop(g.call),
            "pybreaker cb.call(f)": call_loop(cb.call),
            "fusebox p.call(f), pipeline": call_loop(p.call),
            "fusebox t.call(f), breaker + attempt timeout": call_loop(t.call),
        }
        async_cases = {
            "bare await af()": abare_loop,
            "fusebox await g.run(af), breaker only": arun_loop(g.run),
            "fusebox await p.run(af), pipeline": arun_loop(p.run),
            "fusebox await t.run(af), breaker + attempt timeout": arun_loop(t.run),
        }

        def run_case(name: str, n: int) -> int:
            n = max(1, n // SLOW_CASE_DIVISOR.get(name, 1))
            if name in sync_cases:
                return sync_cases[name](n)
            return loop.run_until_complete(async_cases[name](n))

        names = list(sync_cases) + list(async_cases)
        log(f"warm-up: {args.warmup} calls per case")
        for name in names:
            run_case(name, args.warmup)
        rounds: dict = {name: [] for name in names}
        wake_rounds: dict = {name: [] for name in names}
        started = time.monotonic()
        cpu_watch = CpuWatch(server.proc.pid)
        cpu_start = cpu_watch.sample()
        for r in range(args.repeats):
            for name in names:
                before = wakes[0]
                ns = run_case(name, args.calls)
                rounds[name].append(ns / max(1, args.calls // SLOW_CASE_DIVISOR.get(name, 1)) / 1000)
                wake_rounds[name].append(wakes[0] - before)
            log(f"round {r + 1}/{args.repeats}: " + ", ".join(f"{rounds[n][-1]:.3f}" for n in names))
        elapsed = time.monotonic() - started
        cpu_used = cpu_watch.since(cpu_start)
        if cb.current_state != "closed":
            raise SystemExit(f"pybreaker ended {cb.current_state}")
        check_client(fb, guards)

        extra_breakdown = breakdown(g, p, args.calls) if args.breakdown else None
        extra_profile = ({"g.call (breaker only)": profile(g.call, args.profile),
                          "p.call (pipeline)": profile(p.call, args.profile),
                          "pybreaker cb.call": profile(cb.call, args.profile)} if args.profile else None)

        # Give the reporter a moment, then ask fuseboxd what it saw.
        time.sleep(0.5)
        seen = {name: server_breaker(certs, server.address, name) for name in ("bench", "bench-pipeline", "bench-timeout")}
    finally:
        if loop is not None:
            loop.close()
        if fb is not None:
            t0 = time.monotonic()
            fb.shutdown(timeout=5)
            log(f"fb.shutdown() took {time.monotonic() - t0:.2f} s")
        status, seconds = server.stop(timeout=10)
        log(f"fuseboxd stopped (status {status}) in {seconds:.2f} s")
        shutil.rmtree(work, ignore_errors=True)
        timer.cancel()

    med = {name: statistics.median(v) for name, v in rounds.items()}
    bare, abare = med["bare call f()"], med["bare await af()"]
    pyb = med["pybreaker cb.call(f)"]
    pyb_over = pyb - bare

    def base_of(name):
        return abare if name in async_cases else bare

    rows = []
    for name in names:
        v = med[name]
        over = v - base_of(name)
        ratio = ratio_over = None
        if name.startswith("fusebox") and name in sync_cases:
            ratio = v / pyb
            ratio_over = over / pyb_over if pyb_over > 0 else None
        rows.append((name, v, min(rounds[name]), max(rounds[name]), over, ratio, ratio_over))

    cpu = cpu_model()
    source_end = sdk_source()
    if source_end["sha256"] != source["sha256"]:
        source["changed_during_run"] = source_end["sha256"]
    print()
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), pybreaker {PYBREAKER_VERSION}, "
          f"fusebox {fusebox.__version__}; {os.cpu_count()} CPUs, {cpu}")
    print(f"SDK measured: {source['path']} sha256 {source['sha256']} (newest file {source['newest_mtime']}), "
          f"git HEAD {source.get('head', '?')}, {source.get('modified_files', '?')} file(s) modified against HEAD"
          + (f"; WARNING: the files changed during the run (now {source['changed_during_run']})"
             if "changed_during_run" in source else ""))
    print(f"{args.calls} calls x {args.repeats} rounds per case (median of rounds), warm-up {args.warmup}; "
          f"report_batch_size {config.report_batch_size}; measuring took {elapsed:.1f} s")
    print(f"CPU seconds while measuring: this process {cpu_used['bench_cpu_s']}, fuseboxd {cpu_used['fuseboxd_cpu_s']}, "
          f"other processes {cpu_used['others_cpu_s']}, steal {cpu_used['steal_s']} "
          f"(of {cpu_used['cpu_capacity_s']} CPU-seconds in {cpu_used['wall_s']} s)")
    header = ("case", "us/call", "min..max", "over bare", "/pybreaker", "over/pyb over")
    print(f"{header[0]:<40} {header[1]:>9} {header[2]:>16} {header[3]:>10} {header[4]:>10} {header[5]:>14}")
    for name, v, lo, hi, over, ratio, ratio_over in rows:
        print(f"{name:<40} {v:>9.3f} {f'{lo:.3f}..{hi:.3f}':>16} {over:>10.3f} "
              f"{'' if ratio is None else f'{ratio:.2f}':>10} {'' if ratio_over is None else f'{ratio_over:.2f}':>14}")
    for name in ("bench", "bench-pipeline", "bench-timeout"):
        s = seen[name]
        status = s.get("status", {}) if isinstance(s, dict) else {}
        window = s.get("window", {}) if isinstance(s, dict) else {}
        reporters = [c.get("clientId") for c in s.get("contributions", [])] if isinstance(s, dict) else []
        print(f"fuseboxd's view of breaker {name}: state {status.get('state', s.get('error', '?'))}, "
              f"generation {status.get('generation', '?')}, window {window.get('calls', '?')} calls "
              f"({window.get('counts', {}).get('failure', '?')} failures), reported by {reporters}")
    if args.count_wakes:
        print("\nreporter wake-ups per round of each case (call_soon_threadsafe from the calling thread):")
        for name in names:
            print(f"  {name:<40} {wake_rounds[name]}")
    if extra_breakdown:
        print("\nbreakdown (each piece alone in a loop of --calls, us/call, loop and lambda included):")
        for k, v in extra_breakdown.items():
            print(f"  {k:<48} {v:.3f}")
    if extra_profile:
        for which, text in extra_profile.items():
            print(f"\ncProfile of {args.profile} calls of {which}:\n{text}")

    summary = {
        "bench": "python-sdk-hot-path",
        "calls": args.calls, "repeats": args.repeats, "warmup": args.warmup,
        "report_batch_size": config.report_batch_size,
        "python": platform.python_version(), "pybreaker": PYBREAKER_VERSION, "fusebox": fusebox.__version__,
        "cpus": os.cpu_count(), "cpu": cpu, "sdk_source": source,
        "us_per_call": {n: round(med[n], 4) for n in names},
        "rounds_us": {n: [round(x, 4) for x in rounds[n]] for n in names},
        "overhead_us": {n: round(med[n] - base_of(n), 4) for n in names},
        "ratio_to_pybreaker": {n: round(med[n] / pyb, 3) for n in names if n.startswith("fusebox") and n in sync_cases},
        "overhead_ratio_to_pybreaker": {n: round((med[n] - bare) / pyb_over, 3)
                                        for n in names if n.startswith("fusebox") and n in sync_cases and pyb_over > 0},
        "server_view": {n: (seen[n].get("status", {}) or {}).get("state") for n in seen},
        "breakdown_us": extra_breakdown,
        "cpu_while_measuring": cpu_used,
        "wakes_per_round": wake_rounds if args.count_wakes else None,
    }
    print("JSON " + json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
