"""Guards against a real fuseboxd, with the policies applied through the
`fusebox` CLI: every pattern, sync and asyncio, the decorator and the
context managers, typed exceptions, startup sources and metrics names."""
from __future__ import annotations

import asyncio
import errno
import threading
import time

import pytest

import fusebox
from fleet import eventually

POLICIES = """
name: retry-example
retry:
  maxAttempts: 3
  backoff: {kind: exponential, initialMs: 20, maxMs: 100, multiplier: 2}
  jitter: full
  retryOn: [networkError, serverError, timeout]
  budget: {maxTokens: 10, tokenRatio: 0.1}
---
name: timeout-example
timeout: {attemptMs: 300, totalMs: 2000}
retry: {maxAttempts: 2, retryOn: [timeout], backoff: {initialMs: 10}}
---
name: total-timeout-example
timeout: {totalMs: 400}
retry: {maxAttempts: 10, retryOn: [anyFailure], backoff: {kind: fixed, initialMs: 100}, jitter: none}
---
name: breaker-example
circuitBreaker:
  consecutiveFailuresThreshold: 3
  minimumCalls: 1
  openDuration: {baseMs: 60000}
---
name: bulkhead-example
bulkhead: {maxConcurrent: 2, maxQueued: 1, maxWaitMs: 2000}
---
name: ratelimit-example
rateLimit: {limitPerPeriod: 10, periodMs: 1000, burst: 5, maxWaitMs: 0}
---
name: fallback-example
circuitBreaker: {failureRateThreshold: 50, minimumCalls: 10}
fallback:
  triggers: [circuitOpen, timeout]
  action:
    staticResponse: {contentType: application/json, body: '{"recommendations": []}'}
---
name: fallback-handler-example
fallback:
  action: {handler: cached-prices}
---
name: hung-example
timeout: {attemptMs: 200}
bulkhead: {maxConcurrent: 1, maxQueued: 0}
---
name: cache-example
cache: {ttlMs: 150, maxEntries: 1000, staleWhileRevalidateMs: 0}
fallback:
  action: staleCache
"""


@pytest.fixture
def server(fleet):
    fleet.apply(POLICIES)
    return fleet


def configuration(server, client_id, **kw):
    c = server.certs
    return fusebox.FuseboxConfig(endpoints=server.server_address, ca=str(c / "ca.pem"), cert=str(c / "reporter.pem"),
                                 key=str(c / "reporter.key"), client_id=client_id,
                                 cache_dir=str(server.directory / f"cache-{client_id}"), **kw)


@pytest.fixture
def fb(server):
    f = fusebox.Fusebox.start(configuration(server, "guards-test"))
    assert f.policy_source == "server"
    yield f
    f.shutdown()


class Flaky:
    """Fails `failures` times with `error`, then answers `value`; counts calls."""

    def __init__(self, failures, error, value="ok", sleep=0.0):
        self.failures, self.error, self.value, self.sleep = failures, error, value, sleep
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
            n = self.calls
        if self.sleep:
            time.sleep(self.sleep)
        if n <= self.failures:
            raise self.error
        return self.value


class HTTPError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status_code = status


def test_retry_retries_network_and_server_errors_but_not_client_errors(server):
    events = []
    fb = fusebox.Fusebox.start(configuration(server, "retry-test", on_event=events.append))
    g = fb.guard("inventory-api", policy="retry-example")
    flaky = Flaky(2, ConnectionResetError(errno.ECONNRESET, "reset"), 42)
    assert g.call(flaky) == 42 and flaky.calls == 3
    server_error = Flaky(5, HTTPError(503))
    with pytest.raises(HTTPError):
        g.call(server_error)
    assert server_error.calls == 3, "3 attempts for a 503"
    not_found = Flaky(5, HTTPError(404))
    with pytest.raises(HTTPError):
        g.call(not_found)
    assert not_found.calls == 1, "a 404 is not retried"
    fb.shutdown()
    retries = [e for e in events if e.kind == "retry"]
    assert len(retries) == 4 and all(e.guard == "inventory-api" for e in retries), retries
    assert [e.detail[0] for e in retries] == [1, 2, 1, 2], "attempt numbers of the two retried calls"
    assert all(0 <= e.detail[1] <= 0.1 for e in retries), "full jitter under the 100 ms cap"
    calls = [e for e in events if e.kind == "call"]
    assert len(calls) == 7 and [e.detail[0] for e in calls].count("success") == 1


def test_attempt_timeout_cuts_each_attempt_and_retries_it(fb):
    g = fb.guard("search", policy="timeout-example")
    slow = Flaky(0, None, sleep=2.0)
    started = time.monotonic()
    with pytest.raises(fusebox.GuardTimeoutError) as e:
        g.call(slow)
    took = time.monotonic() - started
    assert e.value.kind == "attempt" and e.value.trigger == "timeout"
    assert slow.calls == 2 and 0.55 < took < 1.5, (slow.calls, took)


def test_an_abandoned_attempt_keeps_its_bulkhead_slot_until_it_ends(fb):
    """Python cannot stop a thread: a timed-out `call` leaves the function running,
    and the bulkhead counts it until it returns."""
    g = fb.guard("hung", policy="hung-example")
    release = threading.Event()
    with pytest.raises(fusebox.GuardTimeoutError):
        g.call(release.wait, 5)
    with pytest.raises(fusebox.BulkheadFullError):
        g.call(lambda: "second")
    release.set()

    def passes():
        try:
            return g.call(lambda: "third") == "third"
        except fusebox.BulkheadFullError:
            return False
    assert eventually(2, passes), "the slot was not given back when the abandoned attempt ended"


def test_total_timeout_bounds_the_call_with_its_retries(fb):
    g = fb.guard("total", policy="total-timeout-example")
    failing = Flaky(100, RuntimeError("down"))
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        g.call(failing)
    took = time.monotonic() - started
    # Attempts at 0, 100, 200 and 300 ms; the next would start past the 400 ms budget, so the last error ends the call.
    assert failing.calls == 4 and took < 0.4, (took, failing.calls)
    hanging = Flaky(0, None, sleep=2.0)
    started = time.monotonic()
    with pytest.raises(fusebox.GuardTimeoutError) as e:
        g.call(hanging)
    took = time.monotonic() - started
    assert e.value.kind == "total" and hanging.calls == 1 and 0.35 < took < 0.6, (took, e.value.kind)


def test_asyncio_attempt_timeout_cancels_the_attempt(server):
    async def main():
        fb = await fusebox.AsyncFusebox.start(configuration(server, "async-timeout"))
        g = fb.guard("search", policy="timeout-example")
        cancelled = []

        async def hang():
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        started = time.monotonic()
        with pytest.raises(fusebox.GuardTimeoutError):
            await g.run(hang)
        took = time.monotonic() - started
        await fb.shutdown()
        return took, cancelled

    took, cancelled = asyncio.run(main())
    assert len(cancelled) == 2 and 0.55 < took < 1.5, (took, cancelled)


def test_the_shared_breaker_trips_for_the_fleet_and_rejects_with_a_typed_error(fb, server):
    g = fb.guard("payments-api", policy="breaker-example")
    for _ in range(3):
        with pytest.raises(RuntimeError):
            g.call(Flaky(1, RuntimeError("card network down")))
    assert eventually(5, lambda: g.breaker_state.state == "OPEN"), g.breaker_state
    assert server.server_breaker("payments-api")[0] == "OPEN"
    assert g.breaker_state.generation == server.server_breaker("payments-api")[1]
    with pytest.raises(fusebox.CircuitOpenError) as e:
        g.call(lambda: "never")
    assert e.value.retry_after is not None and 50 < e.value.retry_after <= 60
    assert e.value.guard == "payments-api" and e.value.generation == g.breaker_state.generation
    # An operator's force-close reaches the guard through the watch.
    r = server.cli(["breaker", "force-close", "payments-api", "--reason", "python sdk test"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert eventually(5, lambda: g.breaker_state.state == "FORCED_CLOSED")
    assert g.call(lambda: "through") == "through"


def test_bulkhead_runs_two_queues_one_and_refuses_the_rest(fb):
    g = fb.guard("report-db", policy="bulkhead-example")
    results, lock = [], threading.Lock()

    def worker():
        try:
            g.call(time.sleep, 0.3)
            outcome = "ok"
        except fusebox.BulkheadFullError:
            outcome = "full"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(5)
    assert sorted(results) == ["full", "full", "ok", "ok", "ok"], results


def test_rate_limiter_lets_the_burst_through_and_refuses_the_rest(fb):
    g = fb.guard("geocoder", policy="ratelimit-example")
    passed = limited = 0
    for _ in range(20):
        try:
            g.call(lambda: None)
            passed += 1
        except fusebox.RateLimitedError as e:
            assert e.retry_after is not None and e.retry_after > 0
            limited += 1
    assert 5 <= passed <= 6 and passed + limited == 20, (passed, limited)


def test_static_fallback_answers_an_open_breaker(fb, server):
    g = fb.guard("recs", policy="fallback-example")
    assert g.call(lambda: "fine") == "fine"
    assert eventually(5, lambda: server.server_breaker("recs") is not None), "the report did not create the breaker"
    r = server.cli(["breaker", "force-open", "recs", "--reason", "python sdk test"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert eventually(5, lambda: g.breaker_state.state == "FORCED_OPEN")
    answer = g.call(lambda: "never")
    assert isinstance(answer, fusebox.StaticResponse) and answer.content_type == "application/json"
    assert answer.json() == {"recommendations": []}
    decoded = fb.guard("recs", policy="fallback-example", static_decoder=lambda r: r.json()["recommendations"])
    assert decoded.call(lambda: "never") == []
    # A failure is not among its triggers: it reaches the caller.
    with pytest.raises(fusebox.CircuitOpenError):
        fb.guard("recs", policy="breaker-example").call(lambda: "never")


def test_handler_fallback_and_stale_cache(fb):
    seen = []
    fb.register_fallback("cached-prices", lambda ctx: seen.append(ctx) or [9.99])
    prices = fb.guard("prices", policy="fallback-handler-example")
    assert prices.call(Flaky(1, RuntimeError("pricing down"))) == [9.99]
    assert seen[0].trigger == "failure" and seen[0].guard == "prices" and isinstance(seen[0].error, RuntimeError)

    fx = fb.guard("fx-rates", policy="cache-example")
    loads = Flaky(0, None, {"EUR": 1.1})
    assert fx.call(loads, cache_key="EUR") == {"EUR": 1.1}
    assert fx.call(loads, cache_key="EUR") == {"EUR": 1.1}
    assert loads.calls == 1, "the second call came from the cache"
    fx.invalidate_cache("EUR")
    fx.call(loads, cache_key="EUR")
    assert loads.calls == 2
    time.sleep(0.2)  # expired: the next call loads, fails, and the stale value answers
    assert fx.call(Flaky(1, RuntimeError("fx down")), cache_key="EUR") == {"EUR": 1.1}


def test_decorator_and_context_manager_count_as_calls(fb, server):
    g = fb.guard("legacy", policy="breaker-example")

    @g
    def fetch(x):
        return x * 2

    assert fetch(21) == 42 and fetch.__name__ == "fetch"
    for _ in range(3):
        with pytest.raises(ValueError):
            with g:
                raise ValueError("legacy down")
    assert eventually(5, lambda: g.breaker_state.state == "OPEN"), g.breaker_state
    with pytest.raises(fusebox.CircuitOpenError):
        with g:
            pass


def test_metrics_carry_the_swift_sdks_names(server):
    prometheus = pytest.importorskip("prometheus_client")
    registry = prometheus.CollectorRegistry()
    fb = fusebox.Fusebox.start(configuration(server, "metrics-test", metrics=fusebox.PrometheusMetrics(registry)))
    try:
        g = fb.guard("inventory-api", policy="retry-example")
        g.call(Flaky(1, ConnectionResetError(errno.ECONNRESET, "reset")))
        b = fb.guard("payments-api", policy="breaker-example")
        for _ in range(3):
            with pytest.raises(RuntimeError):
                b.call(Flaky(1, RuntimeError("down")))
        assert eventually(5, lambda: b.breaker_state.state == "OPEN")
        with pytest.raises(fusebox.CircuitOpenError):
            b.call(lambda: 1)
        value = registry.get_sample_value
        labels = {"registry": "default", "breaker": "inventory-api"}
        assert value("circuit_breaker_calls_total", {**labels, "result": "success"}) == 1
        assert value("circuit_breaker_calls_total", {**labels, "result": "failure"}) == 1
        assert value("retry_attempts_total", labels) == 1
        pay = {"registry": "default", "breaker": "payments-api"}
        assert value("circuit_breaker_state_changes_total", {**pay, "from": "closed", "to": "open"}) == 1
        assert value("circuit_breaker_not_permitted_calls_total", pay) == 1
        assert value("circuit_breaker_call_duration_seconds_count", {**pay, "result": "failure"}) == 3
        assert value("fusebox_client_policy_source", {"source": "server"}) == 1
        assert value("fusebox_client_mode", {"mode": "fleet"}) == 1
        assert value("fusebox_client_staleness_seconds") == 0
        fb.guard("report-db", policy="bulkhead-example").call(lambda: None)
        db = {"registry": "default", "breaker": "report-db"}
        assert value("bulkhead_executions_total", {**db, "state": "permitted"}) == 1
        assert value("bulkhead_active_calls", db) == 0 and value("bulkhead_queued_calls", db) == 0
    finally:
        fb.shutdown()


def test_startup_falls_back_to_the_cache_then_the_presets(server, tmp_path):
    first = fusebox.Fusebox.start(configuration(server, "cache-test"))
    assert first.policy_source == "server"
    first.shutdown()
    server.kill_server()
    config = configuration(server, "cache-test", startup_timeout=0.5)
    second = fusebox.Fusebox.start(config)
    try:
        assert second.policy_source == "cache"
        assert second.guard("x", policy="retry-example").policy.retry.max_attempts == 3
    finally:
        second.shutdown()
    config.cache_dir = str(tmp_path / "empty")
    third = fusebox.Fusebox.start(config)
    try:
        assert third.policy_source == "presets"
        assert third.guard("x", policy="retry-example").policy is None
        assert third.guard("y", policy="api").policy.breaker.consecutive_failures == 5
    finally:
        third.shutdown()


def test_configuration_errors_name_the_field(server, tmp_path):
    good = configuration(server, "config-test")
    for field, change in [
        ("tls", {"ca": str(tmp_path / "missing.pem")}),
        ("endpoints", {"endpoints": "127.0.0.1"}),
        ("endpoints", {"endpoints": "a:1,a:1"}),
        ("endpoints", {"endpoints": ""}),
        ("client_id", {"client_id": "x" * 300}),
        ("staleness_bound", {"staleness_bound": 0}),
        ("reconnect_backoff_base", {"reconnect_backoff_base": 0}),
        ("keepalive_interval", {"keepalive_interval": -1}),
        ("report_batch_size", {"report_batch_size": 0}),
        ("registries", {"registries": ["default", "default"]}),
        ("registries", {"registries": "default"}),
        ("endpoints", {"endpoints": None}),
    ]:
        bad = fusebox.FuseboxConfig(**{**good.__dict__, **change})
        with pytest.raises(fusebox.FuseboxConfigurationError) as e:
            fusebox.Fusebox.start(bad)
        assert e.value.field == field, (change, e.value)
