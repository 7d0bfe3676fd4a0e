"""The Python twin of `fusebox-example service`: calls a flaky HTTP upstream
through a guard and prints its breaker's events as JSON lines (`started`,
`state`, `local-open`, `local-open-ended`, `mode`, `status`).

    python -m fusebox.example service --upstream 127.0.0.1:8081 --server 127.0.0.1:7443 \\
        --ca .fusebox/certs/ca.pem --cert .fusebox/certs/reporter.pem --key .fusebox/certs/reporter.key
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import signal
import sys
import threading
import time

from . import Fusebox, FuseboxConfig, GuardError

_out = threading.Lock()


def emit(**fields) -> None:
    fields["atMs"] = int(time.time() * 1000)
    line = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class UpstreamError(Exception):
    """The upstream answered an error status (a server error for retries) or could not be reached."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status_code = status


def call_upstream(host: str, port: int) -> int:
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/call")
        status = connection.getresponse().status
    finally:
        connection.close()
    if status != 200:
        raise UpstreamError(status, f"upstream answered {status}")
    return status


def service(args) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = args.upstream.rpartition(":")

    def on_change(change):
        event = "state" if not change.client_only else ("local-open" if change.to_state == "OPEN" else "local-open-ended")
        emit(event=event, breaker=change.breaker, **{"from": change.from_state}, to=change.to_state,
             generation=change.generation, reason=change.reason)

    config = FuseboxConfig(
        endpoints=args.server, ca=args.ca, cert=args.cert, key=args.key, client_id=args.client_id,
        cache_dir=args.cache_dir, staleness_bound=args.staleness_seconds, startup_timeout=args.startup_timeout_seconds,
        keepalive_interval=args.keepalive_seconds or None, keepalive_timeout=args.keepalive_timeout_seconds,
        on_state_change=on_change)
    fusebox = Fusebox.start(config)
    upstream = fusebox.guard(args.guard_name, policy=args.policy)
    emit(event="started", source=fusebox.policy_source, policy=upstream.policy.name if upstream.policy else args.policy,
         guard=args.guard_name, incarnation=fusebox.incarnation, sdk="python")
    stop = threading.Event()
    # SIGTERM (a graceful stop) ends the loop, so shutdown() says goodbye and
    # fuseboxd forgets this client at once instead of counting it silent.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = last_status = time.monotonic()
    ok = failed = rejected = 0
    last_mode = fusebox.mode
    try:
        while not stop.is_set() and (args.duration_seconds <= 0 or time.monotonic() - started < args.duration_seconds):
            try:
                upstream.call(call_upstream, host, int(port))
                ok += 1
            except GuardError:
                rejected += 1
            except Exception:  # noqa: BLE001 - the upstream's failure, counted by the breaker
                failed += 1
            if fusebox.mode != last_mode:
                last_mode = fusebox.mode
                emit(event="mode", mode=last_mode)
            if args.status_ms > 0 and (time.monotonic() - last_status) * 1000 >= args.status_ms:
                last_status = time.monotonic()
                s = upstream.breaker_state
                emit(event="status", state=s.state, generation=s.generation, mode=fusebox.mode, ok=ok, failed=failed,
                     rejected=rejected, localOpen=upstream.local_open_until is not None,
                     policy=upstream.policy.name if upstream.policy else args.policy)
            stop.wait(args.interval_ms / 1000)
    except KeyboardInterrupt:
        pass
    finally:
        fusebox.shutdown()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusebox.example", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("service", help="call the upstream through a Fusebox guard and print breaker events as JSON lines")
    s.add_argument("--upstream", default="127.0.0.1:8081", help="the upstream, HOST:PORT")
    s.add_argument("--server", default="127.0.0.1:7443", help="fuseboxd, HOST:PORT[,HOST:PORT…]")
    s.add_argument("--ca", default=".fusebox/certs/ca.pem")
    s.add_argument("--cert", default=".fusebox/certs/reporter.pem")
    s.add_argument("--key", default=".fusebox/certs/reporter.key")
    s.add_argument("--guard-name", default="flaky-upstream")
    s.add_argument("--policy", default="api")
    s.add_argument("--client-id", default=None)
    s.add_argument("--cache-dir", default=".fusebox/cache")
    s.add_argument("--interval-ms", type=int, default=50)
    s.add_argument("--status-ms", type=int, default=1000)
    s.add_argument("--staleness-seconds", type=float, default=10)
    s.add_argument("--startup-timeout-seconds", type=float, default=5)
    s.add_argument("--keepalive-seconds", type=float, default=10)
    s.add_argument("--keepalive-timeout-seconds", type=float, default=5)
    s.add_argument("--duration-seconds", type=float, default=0)
    args = parser.parse_args(argv)
    return service(args)


if __name__ == "__main__":
    sys.exit(main())
