"""The SDK's parts on their own: the local breaker, the tally, the patterns'
state, the classifier, endpoints and the policy cache, without a server."""
from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
import urllib.error

import pytest

import fusebox
from fusebox.breaker import BreakerStatus, LocalBreaker, Tally
from fusebox.classify import standard
from fusebox.config import parse_endpoints
from fusebox.patterns import Bulkhead, RetryBudget, TokenBucket, backoff_delay_ms
from fusebox.policy import BreakerSettings, BulkheadSettings, Policy, RateLimitSettings, RetrySettings
from fusebox.v1 import policy_pb2 as ppb


def test_the_local_breaker_trips_half_opens_and_closes_by_the_policys_rules():
    s = BreakerSettings(failure_rate=50, minimum_calls=4, open_base_ms=1_000, open_multiplier=2, open_max_ms=3_000,
                        permitted_calls=2, success_threshold=2)
    b = LocalBreaker(s, BreakerStatus("CLOSED", 7), at_ms=0)
    assert b.record("success", False, 10) is None
    assert b.record("failure", False, 20) is None
    assert b.record("success", False, 30) is None
    change = b.record("failure", False, 40)  # 2 of 4 failed: 50 % ≥ 50 %
    assert change[:2] == ("CLOSED", "OPEN") and b.generation == 8 and b.until_ms == 1_040
    assert b.admit(500)[:3] == (False, False, 0.54)
    allowed, probe, _, change = b.admit(1_040)
    assert (allowed, probe) == (True, True) and b.state == "HALF_OPEN"
    assert change[:2] == ("OPEN", "HALF_OPEN"), "the call that half-opens the breaker hands the change over to be announced"
    assert b.admit(1_041)[:2] == (True, True)
    assert b.admit(1_042)[:2] == (False, False), "only 2 probes at once"
    assert b.record("failure", True, 1_100)[1] == "OPEN" and b.until_ms == 1_100 + 2_000, "a failed probe doubles the period"
    b.tick(3_100)
    assert b.state == "HALF_OPEN"
    b.admit(3_100), b.admit(3_100)
    assert b.record("success", True, 3_200) is None
    assert b.record("success", True, 3_300)[1] == "CLOSED"
    assert b.generation == 12


def test_the_local_breaker_keeps_an_operators_override_and_an_open_period():
    forced = LocalBreaker(BreakerSettings(consecutive_failures=1), BreakerStatus("FORCED_OPEN", 3), at_ms=0)
    assert forced.admit(10)[0] is False
    opened = LocalBreaker(BreakerSettings(consecutive_failures=1), BreakerStatus("OPEN", 4, until_ms=5_000), at_ms=0)
    assert opened.admit(4_999)[0] is False and opened.admit(5_000)[:2] == (True, True)


def test_consecutive_failures_and_a_time_window():
    b = LocalBreaker(BreakerSettings(consecutive_failures=3, minimum_calls=100), BreakerStatus(), at_ms=0)
    assert b.record("failure", False, 1) is None and b.record("failure", False, 2) is None
    assert b.record("success", False, 3) is None, "a success ends the run"
    b.record("failure", False, 4), b.record("failure", False, 5)
    assert b.record("failure", False, 6)[1] == "OPEN"
    t = LocalBreaker(BreakerSettings(window_time=True, window_size=2, failure_rate=50, minimum_calls=2), BreakerStatus(), at_ms=0)
    t.record("failure", False, 0)
    assert t.record("success", False, 5_000) is None, "the failure left the 2 s window"
    assert t.record("failure", False, 5_100)[1] == "OPEN"


def test_the_tally_drops_outcomes_of_another_generation():
    t = Tally(5)
    t.record("failure", 5), t.record("failure", 5)
    t.record("success", 4)
    assert t.counts["success"] == 0 and t.dropped == 1
    t.record("failure", 6)  # a newer generation starts a new tally
    assert t.generation == 6 and t.counts["failure"] == 1 and t.trailing == 1
    generation, counts, trailing, _ = t.drain()
    assert (generation, counts["failure"], trailing) == (6, 1, 1) and t.empty()
    t.record("failure", 6)
    assert t.trailing == 2, "the trailing run continues across reports"


def test_an_outcome_the_local_breaker_admitted_is_dropped_once_the_fleet_is_back(tmp_path):
    from fusebox.state import FleetState
    config = fusebox.FuseboxConfig(endpoints="127.0.0.1:1", ca="", cert="", key="", client_id="t")
    state = FleetState(config, fusebox.Metrics())
    state.set_registry("default", [Policy.from_proto(_breaker_policy("p"))], 1)
    sb = state.breaker("default", "b", "p")
    sb.fleet = BreakerStatus("CLOSED", 5)
    sb.tally.reset(5)
    state.record(sb, "failure", 9, None, local=True)  # admitted in local mode at local generation 9
    assert sb.tally.generation == 5 and sb.tally.empty() and sb.tally.dropped == 1
    state.record(sb, "failure", 5, None)
    assert sb.tally.counts["failure"] == 1


def _breaker_policy(name):
    p = ppb.Policy(name=name)
    p.circuit_breaker.consecutive_failures_threshold = 2
    return p


def test_bulkhead_serves_higher_priority_first_and_times_out_waiters():
    b = Bulkhead(BulkheadSettings(max_concurrent=1, max_queued=2, max_wait_ms=2_000))
    assert b.acquire() == (True, 0)
    order = []

    def wait(priority, name):
        ok, _ = b.acquire(priority)
        order.append((name, ok))
        if ok:
            time.sleep(0.01)
            b.release()

    low = threading.Thread(target=wait, args=(0, "low"))
    low.start()
    time.sleep(0.05)
    high = threading.Thread(target=wait, args=(10, "high"))
    high.start()
    time.sleep(0.05)
    assert b.acquire() == (False, 0), "the queue of 2 is full"
    b.release()
    low.join(2), high.join(2)
    assert order == [("high", True), ("low", True)]
    quick = Bulkhead(BulkheadSettings(max_concurrent=1, max_queued=1, max_wait_ms=50))
    quick.acquire()
    started = time.monotonic()
    assert quick.acquire()[0] is False and 0.04 < time.monotonic() - started < 0.5
    quick.release()
    assert quick.acquire()[0] is True and quick.active == 1


def test_the_bulkhead_is_shared_by_threads_and_asyncio():
    b = Bulkhead(BulkheadSettings(max_concurrent=1, max_queued=1, max_wait_ms=1_000))
    b.acquire()

    async def waiter():
        return await b.acquire_async()

    threading.Timer(0.05, b.release).start()
    assert asyncio.run(waiter())[0] is True and b.active == 1


def test_token_bucket_and_retry_budget():
    bucket = TokenBucket(RateLimitSettings(limit_per_period=10, period_ms=1_000, burst=2, max_wait_ms=150), now=0.0)
    assert bucket.reserve(0.0) == (True, 0.0) and bucket.reserve(0.0) == (True, 0.0)
    granted, wait = bucket.reserve(0.0)
    assert granted and wait == pytest.approx(0.1), "the next token comes in 100 ms, within the 150 ms wait"
    granted, wait = bucket.reserve(0.0)
    assert not granted and wait == pytest.approx(0.2)
    budget = RetryBudget(4, 0.5)
    budget.record(False)
    assert budget.allows_retry()
    budget.record(False)
    assert not budget.allows_retry(), "2 of 4 tokens left: not more than half"
    budget.record(True)
    assert budget.allows_retry()


def test_backoff_shapes():
    r = RetrySettings(initial_ms=100, max_ms=1_000, multiplier=2, jitter="none")
    assert [backoff_delay_ms(r, n, 0) for n in (1, 2, 3, 4, 5)] == [100, 200, 400, 800, 1_000]
    full = RetrySettings(initial_ms=100, max_ms=1_000, jitter="full")
    assert all(0 <= backoff_delay_ms(full, 3, 0) <= 400 for _ in range(200))
    equal = RetrySettings(initial_ms=100, max_ms=1_000, jitter="equal")
    assert all(200 <= backoff_delay_ms(equal, 3, 0) <= 400 for _ in range(200))
    prop = RetrySettings(initial_ms=100, max_ms=1_000, jitter="proportional", jitter_percent=20)
    assert all(320 <= backoff_delay_ms(prop, 3, 0) <= 480 for _ in range(200))


class Quota(Exception):
    pass


def test_the_standard_classifier():
    assert standard(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == fusebox.Classification("networkError", "net.ECONNREFUSED")
    assert standard(socket.gaierror(-2, "no name")).code == "net.dns"
    assert standard(socket.timeout()).condition == "timeout"
    assert standard(fusebox.GuardTimeoutError("t")).condition == "timeout"
    assert standard(asyncio.CancelledError()).code == "cancelled"
    h = urllib.error.HTTPError("http://x", 429, "slow down", {"Retry-After": "3"}, None)
    assert standard(h) == fusebox.Classification("rateLimited", "http.429", 3_000)
    bad = urllib.error.HTTPError("http://x", 503, "down", {"Retry-After": "soon"}, None)
    assert standard(bad) == fusebox.Classification("serverError", "http.503", None), "a malformed Retry-After is ignored"
    assert standard(urllib.error.HTTPError("http://x", 404, "nope", {}, None)).condition is None
    assert standard(Quota()) == fusebox.Classification(None, "Quota")
    custom = fusebox.or_else(lambda e: fusebox.Classification("rateLimited", "quota") if isinstance(e, Quota) else None)
    assert custom(Quota()).condition == "rateLimited" and custom(ConnectionResetError()).condition == "networkError"


def test_endpoints_parse_like_the_swift_sdks():
    assert parse_endpoints("a:1,[::1]:2, b:3") == [("a", 1), ("::1", 2), ("b", 3)]
    for bad in ["", "a", "a:1,,b:2", "a:1,a:1", "a:70000", ":5"]:
        with pytest.raises(fusebox.FuseboxConfigurationError) as e:
            parse_endpoints(bad)
        assert e.value.field == "endpoints"


def unused_port() -> int:
    """A port on 127.0.0.1 nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cache_file_without_a_registry_name_loads_under_its_files_name(tmp_path, certs):
    """The Swift SDK writes a registry's later changes without the name field."""
    cache = tmp_path / "cache"
    cache.mkdir()
    snapshot = ppb.RegistrySnapshot(version=4, policies=[ppb.PolicyRecord(policy=_breaker_policy("from-swift"))])
    (cache / "default.registry.pb").write_bytes(snapshot.SerializeToString())
    port = unused_port()
    fb = fusebox.Fusebox.start(fusebox.FuseboxConfig(
        endpoints=f"127.0.0.1:{port}", ca=str(certs / "ca.pem"), cert=str(certs / "reporter.pem"),
        key=str(certs / "reporter.key"), client_id="cache-test", cache_dir=str(cache), startup_timeout=0.3))
    try:
        assert fb.policy_source == "cache"
        assert fb.guard("x", policy="from-swift").policy.breaker.consecutive_failures == 2
    finally:
        fb.shutdown()


def test_guards_of_one_name_and_policy_share_their_patterns_whatever_the_classifier(tmp_path, certs):
    port = unused_port()
    fb = fusebox.Fusebox.start(fusebox.FuseboxConfig(
        endpoints=f"127.0.0.1:{port}", ca=str(certs / "ca.pem"), cert=str(certs / "reporter.pem"),
        key=str(certs / "reporter.key"), client_id="share-test", cache_dir=str(tmp_path), startup_timeout=0.3))
    try:
        a = fb.guard("db", policy="critical")  # the preset: bulkhead of 5, 10 queued
        b = fb.guard("db", policy="critical", classifier=lambda e: None)
        assert a is not b and a._components is b._components
        assert b.call(lambda: 1) == 1, "a classifier that knows nothing leaves the error to the standard one"
    finally:
        fb.shutdown()
