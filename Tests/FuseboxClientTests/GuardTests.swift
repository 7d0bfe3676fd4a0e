import Foundation
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization
import XCTest

@testable import FuseboxClient

/// The guard pipeline against a real fuseboxd (in process, real TLS).
final class GuardTests: GuardTestCase {
    func testEachRetryAttemptIsOneOutcomeAndAnOpenBreakerIsNeverRetried() async throws {
        var policy = breakerPolicy("retrying", failures: 3)
        var retry = quickRetry(attempts: 3, on: [.serverError])
        retry.jitter = .none
        policy.retry = retry
        let f = try await start([policy])
        let g = f.guard("payments", policy: "retrying")
        let calls = Calls()

        // One call, three attempts: each is an outcome, so the three failures trip the fleet's breaker.
        do {
            _ = try await g.run { () async throws -> Int in
                _ = calls.hit()
                throw Boom()
            }
            XCTFail("a failing operation succeeded")
        } catch is Boom {}
        XCTAssertEqual(calls.count, 3, "retry did not make maxAttempts attempts")
        await waitUntil("the breaker opens from one call's three attempts") { g.breakerState?.state == .open }

        // Now calls are rejected at once, with the breaker's name and generation, and not retried.
        do {
            _ = try await g.run { () async throws -> Int in
                _ = calls.hit()
                return 1
            }
            XCTFail("an open breaker let a call through")
        } catch let e as GuardError {
            guard case .circuitOpen(let after) = e.kind else { return XCTFail("\(e)") }
            XCTAssertEqual(e.breaker, "payments")
            XCTAssertEqual(e.generation, g.breakerState?.generation.value)
            XCTAssertGreaterThan(e.generation, 0)
            XCTAssertNotNil(after, "circuitOpen carries no retryAfter")
        }
        XCTAssertEqual(calls.count, 3, "the open breaker's rejection was retried or reached the operation")
    }

    func testBulkheadRateLimitAndTimeoutRejectionsAreTyped() async throws {
        var bulk = Policy(name: "one-at-a-time")
        bulk.bulkhead = BulkheadPolicy(maxConcurrent: 1, maxQueued: 0)
        var rate = Policy(name: "rare")
        rate.rateLimit = RateLimitPolicy(limitPerPeriod: 1, periodMs: 60_000, burst: 1)
        var slow = breakerPolicy("impatient", failures: 100)
        slow.timeout = TimeoutPolicy(attemptMs: 50)
        let f = try await start([bulk, rate, slow])

        let b = f.guard("inventory", policy: "one-at-a-time")
        let holding = Task { try await b.run { try await Task.sleep(for: .milliseconds(500)); return 1 } }
        try await Task.sleep(for: .milliseconds(100))
        do {
            _ = try await b.run { 2 }
            XCTFail("a full bulkhead admitted a call")
        } catch let e as GuardError {
            XCTAssertEqual(e.kind, .bulkheadFull)
            XCTAssertEqual(e.breaker, "inventory")
        }
        _ = try await holding.value
        let after = try await b.run { 3 }
        XCTAssertEqual(after, 3, "the bulkhead did not free its slot")

        let r = f.guard("geo", policy: "rare")
        _ = try await r.run { 1 }
        do {
            _ = try await r.run { 2 }
            XCTFail("the rate limiter let a second call through")
        } catch let e as GuardError {
            guard case .rateLimited(let retryAfter) = e.kind else { return XCTFail("\(e)") }
            XCTAssertGreaterThan(retryAfter ?? .zero, .seconds(30))
        }

        let t = f.guard("reports", policy: "impatient")
        let started = ContinuousClock.now
        do {
            _ = try await t.run { try await Task.sleep(for: .seconds(5)); return 1 }
            XCTFail("the attempt timeout did not fire")
        } catch let e as GuardError {
            XCTAssertEqual(e.kind, .timeout)
            XCTAssertEqual(e.breaker, "reports")
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
    }

    func testAnAttemptThatTimedOutIsRetried() async throws {
        var policy = breakerPolicy("slow-then-fast", failures: 100)
        policy.timeout = TimeoutPolicy(attemptMs: 100)
        policy.retry = quickRetry(attempts: 2, on: [.timeout])
        let f = try await start([policy])
        let g = f.guard("ledger", policy: "slow-then-fast")
        let calls = Calls()
        let value = try await g.run { () async throws -> String in
            if calls.hit() == 1 { try await Task.sleep(for: .seconds(10)) }
            return "second attempt"
        }
        XCTAssertEqual(value, "second attempt")
        XCTAssertEqual(calls.count, 2)
    }

    func testFallbackAndCacheVariants() async throws {
        var policy = breakerPolicy("catalog", failures: 100)
        policy.cache = CachePolicy(ttlMs: 60_000)
        policy.fallback = FallbackPolicy(triggers: [.failure, .circuitOpen], action: .staleCache)
        var shortLived = breakerPolicy("catalog-short", failures: 100)
        shortLived.cache = CachePolicy(ttlMs: 1)
        shortLived.fallback = FallbackPolicy(triggers: [.failure], action: .staleCache)
        let f = try await start([policy, shortLived])
        let g = f.guard("catalog-api", policy: "catalog")
        let calls = Calls()

        let first = try await g.run(cacheKey: "sku-1") { () async throws -> String in
            _ = calls.hit()
            return "blue shoes"
        }
        let second = try await g.run(cacheKey: "sku-1") { () async throws -> String in
            _ = calls.hit()
            return "changed"
        }
        XCTAssertEqual([first, second], ["blue shoes", "blue shoes"])
        XCTAssertEqual(calls.count, 1, "a fresh cached value was loaded again")

        // Invalidated, the key loads again; cleared, every key does.
        let loads = Calls()
        let load = { (value: String) in { @Sendable () async throws -> String in _ = loads.hit(); return value } }
        g.invalidateCache("sku-1")
        let reloaded = try await g.run(cacheKey: "sku-1", load("red shoes"))
        _ = try await g.run(cacheKey: "sku-2", load("green hat"))
        XCTAssertEqual(reloaded, "red shoes")
        XCTAssertEqual(loads.count, 2)
        let kept = try await g.run(cacheKey: "sku-2", load("not loaded"))
        XCTAssertEqual(kept, "green hat", "only sku-1 was invalidated")
        g.clearCache()
        let afterClear = [try await g.run(cacheKey: "sku-1", load("sku-1 again")), try await g.run(cacheKey: "sku-2", load("sku-2 again"))]
        XCTAssertEqual(afterClear, ["sku-1 again", "sku-2 again"])
        XCTAssertEqual(loads.count, 4)

        let answer = try await g.run(fallback: { error in "fallback after \(type(of: error))" }) { () async throws -> String in throw Boom() }
        XCTAssertEqual(answer, "fallback after Boom")

        // Without a fallback closure, staleCache answers a failed load with
        // what the cache last held, though it has expired.
        let g2 = f.guard("catalog-short-api", policy: "catalog-short")
        let loaded = try await g2.run(cacheKey: "sku-2") { () async throws -> String in "red hat" }
        XCTAssertEqual(loaded, "red hat")
        try await Task.sleep(for: .milliseconds(20))
        let stale = try await g2.run(cacheKey: "sku-2") { () async throws -> String in
            _ = calls.hit()
            throw Boom()
        }
        XCTAssertEqual(stale, "red hat", "the stale-cache fallback served the expired value")
        XCTAssertEqual(calls.count, 2, "the expired value was loaded again before the fallback")
        do {
            _ = try await g2.run(cacheKey: "sku-3") { () async throws -> String in throw Boom() }
            XCTFail("a stale-cache fallback with nothing cached answered")
        } catch is Boom {}
    }

    func testMetricsUseTheDocumentedNames() async throws {
        let metrics = RecordingMetrics.shared
        var policy = breakerPolicy("measured", failures: 2)
        policy.retry = quickRetry(attempts: 2, on: [.serverError])
        policy.bulkhead = BulkheadPolicy(maxConcurrent: 5)
        let f = try await start([policy])
        XCTAssertEqual(metrics.value("fusebox_client_policy_source", [("source", "server")]), 1)
        XCTAssertEqual(metrics.value("fusebox_client_mode", [("mode", "fleet")]), 1)
        let g = f.guard("metered", policy: "measured")
        let base = [("registry", "default"), ("breaker", "metered")]
        _ = try await g.run { 1 }
        _ = try? await g.run { () async throws -> Int in throw Boom() }
        await waitUntil("the breaker opens") { g.breakerState?.state == .open }
        _ = try? await g.run { 1 }
        await waitUntil("call counts reach the metrics") {
            metrics.value("circuit_breaker_not_permitted_calls_total", base) == 1
        }
        XCTAssertEqual(metrics.value("circuit_breaker_calls_total", base + [("result", "success")]), 1)
        XCTAssertEqual(metrics.value("circuit_breaker_calls_total", base + [("result", "failure")]), 2)
        // The latency histogram, per result: one successful call, two failed attempts.
        XCTAssertEqual(metrics.timer("circuit_breaker_call_duration_seconds", base + [("result", "success")]).count, 1)
        XCTAssertEqual(metrics.timer("circuit_breaker_call_duration_seconds", base + [("result", "failure")]).count, 2)
        XCTAssertEqual(metrics.value("retry_attempts_total", base), 1)
        XCTAssertEqual(metrics.value("bulkhead_executions_total", base + [("state", "permitted")]), 3)
        XCTAssertEqual(metrics.value("circuit_breaker_state_changes_total", base + [("from", "closed"), ("to", "open")]), 1)
        XCTAssertEqual(metrics.value("fusebox_client_staleness_seconds"), 0)
    }

    func testPolicyChangesReachALiveGuard() async throws {
        let f = try await start([breakerPolicy("tunable", failures: 5)])
        let g = f.guard("search", policy: "tunable")
        XCTAssertEqual(g.policy.circuitBreaker?.consecutiveFailuresThreshold, 5)
        try await ServerHarness.put(breakerPolicy("tunable", failures: 9), with: admin)
        await waitUntil("the guard runs the new policy") { g.policy.circuitBreaker?.consecutiveFailuresThreshold == 9 }
    }
}

/// Reconnects back off exponentially with full jitter.
final class ReconnectBackoffTests: XCTestCase {
    func testDelaysAreUniformUpToACappedExponentialCeiling() {
        var random = SplitMix64(seed: 42)
        for failures in 1...12 {
            let ceiling = min(10_000.0, 100.0 * pow(2, Double(failures - 1)))
            let delays = (0..<2_000).map {
                _ in Double(Reconnecting.delay(failures: failures, base: .milliseconds(100), cap: .seconds(10), using: &random).milliseconds)
            }
            XCTAssertGreaterThanOrEqual(delays.min() ?? -1, 0)
            XCTAssertLessThanOrEqual(delays.max() ?? .infinity, ceiling, "failure \(failures) waited past the ceiling")
            // Full jitter: spread over the whole range, not clustered at the ceiling.
            XCTAssertLessThan(delays.min() ?? .infinity, ceiling * 0.05, "failure \(failures): no short delays")
            XCTAssertGreaterThan(delays.max() ?? 0, ceiling * 0.95, "failure \(failures): no long delays")
            let mean = delays.reduce(0, +) / Double(delays.count)
            XCTAssertEqual(mean, ceiling / 2, accuracy: ceiling * 0.06, "failure \(failures): not uniform")
        }
    }
}
