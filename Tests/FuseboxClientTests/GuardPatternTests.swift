import Foundation
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization
import InMemoryTracing
import Tracing
import XCTest

@testable import FuseboxClient

/// The patterns around the breaker, end to end through `Guard`: error
/// classification, bulkhead priority and waits, total timeout, the rate
/// limiter's wait.
final class GuardPatternTests: GuardTestCase {
    /// Errors the operation throws are classified without adopting any SDK
    /// protocol: a refused connection is retried under `networkError`, a
    /// gRPC pushback of -1 stops retries, and a guard's own classifier comes first.
    func testErrorsAreClassifiedOutOfTheBox() async throws {
        var policy = breakerPolicy("classified", failures: 100)
        policy.retry = quickRetry(attempts: 3, on: [.networkError, .serverError])
        let f = try await start([policy])

        // A real connection refused, as any client library would meet it.
        let closed = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try XCTUnwrap(closed.localAddress?.port)
        try await closed.close()
        let group = self.group!
        let refused = Calls()
        do {
            _ = try await f.guard("upstream", policy: "classified").run {
                _ = refused.hit()
                return try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get().close()
            }
            XCTFail("connected to a closed port")
        } catch {}
        XCTAssertEqual(refused.count, 3, "a refused connection is a network error, retried")

        // UNAVAILABLE is retried, unless the server pushes back with -1.
        var pushback = RPCMetadata()
        pushback.add("grpc-retry-pushback-ms", "-1")
        let stop = pushback
        let pushedBack = Calls()
        do {
            _ = try await f.guard("grpc-upstream", policy: "classified").run { () async throws -> Int in
                _ = pushedBack.hit()
                throw RPCError(.unavailable, "draining", metadata: stop)
            }
        } catch {}
        XCTAssertEqual(pushedBack.count, 1, "the server's pushback said not to retry")

        // A guard's own classifier: a quota error is a server error for it.
        struct QuotaExceeded: Error {}
        let custom = ErrorClassifier { $0 is QuotaExceeded ? ErrorClassification(condition: .serverError, code: "quota") : nil }
        let quota = Calls()
        do {
            _ = try await f.guard("quota-upstream", policy: "classified", classifier: custom.orElse(.standard)).run { () async throws -> Int in
                _ = quota.hit()
                throw QuotaExceeded()
            }
        } catch {}
        XCTAssertEqual(quota.count, 3, "the guard's classifier made it retryable")
        let standard = Calls()
        do {
            _ = try await f.guard("plain-upstream", policy: "classified").run { () async throws -> Int in
                _ = standard.hit()
                throw QuotaExceeded()
            }
        } catch {}
        XCTAssertEqual(standard.count, 1, "unknown to the standard classifier: not retried")
    }

    /// A full bulkhead queues calls by priority (higher first, then first
    /// come, first served); a queued call waits at most `maxWaitMs`; a call
    /// finding the queue full is refused at once.
    func testBulkheadQueuesByPriorityAndBoundsTheWait() async throws {
        let metrics = RecordingMetrics.shared  // bootstrapped before the guards make their gauges
        var ordered = Policy(name: "one-at-a-time")
        ordered.bulkhead = BulkheadPolicy(maxConcurrent: 1, maxQueued: 3, maxWaitMs: 30_000)
        var impatient = Policy(name: "impatient")
        impatient.bulkhead = BulkheadPolicy(maxConcurrent: 1, maxQueued: 1, maxWaitMs: 100)
        let f = try await start([ordered, impatient])

        let g = f.guard("printer", policy: "one-at-a-time")
        let order = NIOLockedValueBox<[String]>([])
        let (release, releaser) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await g.run { () async throws -> Void in
                order.withLockedValue { $0.append("holder") }
                for await _ in release { break }
            }
        }
        await waitUntil("the holder has the slot") { g.bulkheadCounts?.active == 1 }
        var queued: [Task<Void, any Error>] = []
        for (name, priority) in [("low-1", 0), ("low-2", 0), ("high", 5)] {
            queued.append(Task { try await g.run(priority: priority) { order.withLockedValue { $0.append(name) } } })
            let expected = queued.count
            await waitUntil("\(name) queued") { g.bulkheadCounts?.queued == expected }
        }
        let labels = [("registry", "default"), ("breaker", "printer")]
        XCTAssertEqual(metrics.value("bulkhead_active_calls", labels), 1)
        XCTAssertEqual(metrics.value("bulkhead_queued_calls", labels), 3)
        releaser.yield()
        try await holder.value
        for task in queued { try await task.value }
        XCTAssertEqual(order.withLockedValue { $0 }, ["holder", "high", "low-1", "low-2"])
        XCTAssertEqual(metrics.value("bulkhead_active_calls", labels), 0)
        XCTAssertEqual(metrics.value("bulkhead_queued_calls", labels), 0)

        let h = f.guard("scanner", policy: "impatient")
        let (hold, holdEnds) = AsyncStream<Void>.makeStream()
        let blocker = Task { try await h.run { () async throws -> Void in for await _ in hold { break } } }
        await waitUntil("the slot is taken") { h.bulkheadCounts?.active == 1 }
        let waiting = Task { try await h.run { "served" } }
        await waitUntil("one call queued") { h.bulkheadCounts?.queued == 1 }
        do {
            _ = try await h.run { "served" }
            XCTFail("the queue was full")
        } catch let error as GuardError {
            XCTAssertEqual(error.kind, .bulkheadFull, "refused at once: the queue was full")
        }
        do {
            _ = try await waiting.value
            XCTFail("a queued call outlived maxWaitMs")
        } catch let error as GuardError {
            XCTAssertEqual(error.kind, .bulkheadFull, "refused after waiting maxWaitMs")
        }
        holdEnds.yield()
        try await blocker.value
    }

    /// The total timeout bounds the whole call, retries and backoff included:
    /// an upstream that never answers gets a few attempts, not the ten
    /// the retry policy allows, and the caller gets `.timeout`.
    func testTheTotalTimeoutEndsACallAcrossItsRetries() async throws {
        var policy = Policy(name: "bounded")
        policy.timeout = TimeoutPolicy(attemptMs: 100, totalMs: 350)
        policy.retry = quickRetry(attempts: 10, on: [.timeout])
        let f = try await start([policy])
        let attempts = Calls()
        do {
            _ = try await f.guard("hanging-upstream", policy: "bounded").run { () async throws -> Int in
                _ = attempts.hit()
                try await Task.sleep(for: .seconds(30))
                return 0
            }
            XCTFail("a call that never answers returned")
        } catch let error as GuardError {
            XCTAssertEqual(error.kind, .timeout)
        }
        XCTAssertGreaterThanOrEqual(attempts.count, 2, "the attempt timeout came first and was retried")
        XCTAssertLessThanOrEqual(attempts.count, 4, "the total timeout (350 ms over 100 ms attempts) stopped the retries")
    }

    /// With `maxWaitMs`, a call finding no token waits for the next one
    /// instead of being refused; without, it is refused at once.
    func testTheRateLimiterWaitsForATokenWithinMaxWait() async throws {
        var patient = Policy(name: "patient")
        patient.rateLimit = RateLimitPolicy(limitPerPeriod: 1, periodMs: 200, burst: 1, maxWaitMs: 1_000)
        var strict = Policy(name: "strict")
        strict.rateLimit = RateLimitPolicy(limitPerPeriod: 1, periodMs: 60_000, burst: 1, maxWaitMs: 0)
        let f = try await start([patient, strict])

        let g = f.guard("metered", policy: "patient")
        let served = Calls()
        for _ in 0..<3 { try await g.run { _ = served.hit() } }
        XCTAssertEqual(served.count, 3, "calls past the burst waited for tokens rather than being refused")

        let h = f.guard("quota", policy: "strict")
        try await h.run {}
        do {
            try await h.run {}
            XCTFail("a second call within the period got a token")
        } catch let error as GuardError {
            guard case .rateLimited(let after) = error.kind else { return XCTFail("\(error)") }
            XCTAssertNotNil(after, "the rejection says when a token comes")
        }
    }

    /// The policy's fallback section answers through `Guard.run` with no
    /// closure: its static response for result types that can hold it, its
    /// named handler; failures it does not name, types it cannot give and
    /// handlers never registered leave the error as it was.
    func testThePolicysFallbackAnswersStaticAndWithANamedHandler() async throws {
        var fixed = breakerPolicy("fixed-answer", failures: 100)
        fixed.fallback = FallbackPolicy(
            triggers: [.failure], action: .staticResponse(contentType: "application/json", body: Array(#"{"items":[]}"#.utf8)))
        var handled = breakerPolicy("handled", failures: 100)
        handled.fallback = FallbackPolicy(triggers: [.failure], action: .handler("inventory-estimate"))
        var onlyTimeouts = breakerPolicy("only-timeouts", failures: 100)
        onlyTimeouts.fallback = FallbackPolicy(triggers: [.timeout], action: .handler("inventory-estimate"))
        var unregistered = breakerPolicy("unregistered", failures: 100)
        unregistered.fallback = FallbackPolicy(triggers: [.failure], action: .handler("nobody-registered-this"))
        let f = try await start([fixed, handled, onlyTimeouts, unregistered])

        let search = f.guard("search", policy: "fixed-answer")
        let text: String = try await search.run { throw Boom() }
        XCTAssertEqual(text, #"{"items":[]}"#)
        let response: StaticFallbackResponse = try await search.run { throw Boom() }
        XCTAssertEqual(response.contentType, "application/json")
        do {
            let _: Int = try await search.run { throw Boom() }
            XCTFail("an Int cannot hold the static response")
        } catch is Boom {}

        let seen = NIOLockedValueBox<[String]>([])
        f.registerFallback("inventory-estimate") { context in
            seen.withLockedValue { $0.append("\(context.guardName) \(context.trigger) \(type(of: context.error))") }
            return 42
        }
        let stock: Int = try await f.guard("inventory", policy: "handled").run { throw Boom() }
        XCTAssertEqual(stock, 42)
        XCTAssertEqual(seen.withLockedValue { $0 }, ["inventory failure Boom"])
        do {
            let _: Int = try await f.guard("inventory-2", policy: "only-timeouts").run { throw Boom() }
            XCTFail("the policy's fallback answers timeouts only")
        } catch is Boom {}
        do {
            let _: String = try await f.guard("inventory-3", policy: "handled").run { throw Boom() }
            XCTFail("the handler returns an Int, not a String")
        } catch is Boom {}
        do {
            let _: Int = try await f.guard("inventory-4", policy: "unregistered").run { throw Boom() }
            XCTFail("no handler of that name was registered")
        } catch is Boom {}
        XCTAssertEqual(seen.withLockedValue { $0 }.count, 2, "the handler ran for the String call too, and only then")
    }

    /// `onEvent` hears each retry, rejection, timeout and call, and the
    /// breaker's state change with the clients fuseboxd says caused it.
    func testEventsTellRetriesRejectionsTimeoutsCallsAndStateChanges() async throws {
        var flaky = breakerPolicy("flaky", failures: 4)
        flaky.retry = quickRetry(attempts: 2, on: [.serverError])
        flaky.timeout = TimeoutPolicy(attemptMs: 100)
        var metered = Policy(name: "metered-once")
        metered.rateLimit = RateLimitPolicy(limitPerPeriod: 1, periodMs: 60_000, burst: 1, maxWaitMs: 0)
        var narrow = Policy(name: "one-at-a-time")
        narrow.bulkhead = BulkheadPolicy(maxConcurrent: 1, maxQueued: 0)
        let events = NIOLockedValueBox<[String]>([])
        let f = try await start([flaky, metered, narrow]) { configuration in
            configuration.onEvent = { event in
                let text: String = switch event.kind {
                case .retry(let attempt, _, let error): "retry \(attempt) after \(error)"
                case .rejected(let kind): "rejected \(kind)"
                case .timeout(let kind): "timeout \(kind.rawValue)"
                case .call(let outcome, _): "call \(outcome)"
                case .stateChanged(let change): "state \(change.from.displayName)->\(change.to.displayName) by \(change.contributingClients)"
                }
                events.withLockedValue { $0.append("\(event.guardName): \(text)") }
            }
        }
        let g = f.guard("ledger", policy: "flaky")
        _ = try? await g.run { () async throws -> Int in throw Boom() }
        XCTAssertEqual(events.withLockedValue { $0 }, ["ledger: call failure", "ledger: retry 1 after Boom()", "ledger: call failure"])

        events.withLockedValue { $0 = [] }
        _ = try? await g.run { () async throws -> Int in try await Task.sleep(for: .seconds(30)); return 0 }
        XCTAssertEqual(events.withLockedValue { $0 }, ["ledger: timeout attempt", "ledger: call failure"], "a timeout is not retried under serverError")

        let quota = f.guard("quota", policy: "metered-once")
        try await quota.run {}
        _ = try? await quota.run {}
        let quotaEvents = events.withLockedValue { $0 }.filter { $0.hasPrefix("quota: ") }
        XCTAssertEqual(quotaEvents.first, "quota: call success")
        XCTAssertEqual(quotaEvents.count, 2)
        XCTAssertTrue(quotaEvents.last?.hasPrefix("quota: rejected rateLimited") ?? false, "\(quotaEvents)")

        // A fourth consecutive failure trips the breaker; fuseboxd names this client.
        _ = try? await g.run { () async throws -> Int in throw RPCError(.notFound, "not retried") }
        await waitUntil("the breaker's state change") {
            events.withLockedValue { $0 }.contains("ledger: state CLOSED->OPEN by [\"guard-test\"]")
        }
        // The open breaker refuses the next call, and says so.
        events.withLockedValue { $0 = [] }
        _ = try? await g.run { 1 }
        let refused = events.withLockedValue { $0 }
        XCTAssertTrue(refused.first?.hasPrefix("ledger: rejected circuitOpen") ?? false, "\(refused)")
        XCTAssertEqual(refused.count, 1, "a refused call runs nothing: \(refused)")

        // A full bulkhead refuses a second concurrent call, and says so.
        let single = f.guard("single", policy: "one-at-a-time")
        let (hold, release) = AsyncStream<Void>.makeStream()
        let (entered, enter) = AsyncStream<Void>.makeStream()
        let first = Task { try await single.run { () async -> Int in
            enter.yield()
            for await _ in hold { break }
            return 1
        } }
        for await _ in entered { break }
        _ = try? await single.run { 2 }
        release.yield()
        let firstAnswer = try await first.value
        XCTAssertEqual(firstAnswer, 1)
        let bulkhead = events.withLockedValue { $0 }.filter { $0.hasPrefix("single: ") }
        XCTAssertEqual(bulkhead, ["single: rejected bulkheadFull", "single: call success"])
    }

    /// Identical concurrent loads run once; an expired value inside the
    /// stale-while-revalidate window is served at once while one background
    /// refresh replaces it.
    func testCacheCoalescesLoadsAndRevalidatesInTheBackground() async throws {
        var policy = Policy(name: "catalog-swr")
        policy.cache = CachePolicy(ttlMs: 200, staleWhileRevalidateMs: 60_000)
        let f = try await start([policy])
        let g = f.guard("catalog", policy: "catalog-swr")

        // Five callers of a cold key: one load, five answers.
        let loads = Calls()
        let (gate, opener) = AsyncStream<Void>.makeStream()
        let answers = try await withThrowingTaskGroup(of: String.self) { callers in
            for _ in 0..<5 {
                callers.addTask {
                    try await g.run(cacheKey: "sku-9") { () async throws -> String in
                        _ = loads.hit()
                        for await _ in gate { break }
                        return "v1"
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(100))  // let them all ask; late ones find v1 cached either way
            opener.yield()
            return try await callers.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(answers, Array(repeating: "v1", count: 5))
        XCTAssertEqual(loads.count, 1, "identical concurrent loads ran once")

        // Expired but within the window: served stale at once, refreshed once behind.
        try await Task.sleep(for: .milliseconds(250))
        let refreshes = Calls()
        let (refreshGate, refreshOpener) = AsyncStream<Void>.makeStream()
        for _ in 0..<3 {
            let stale = try await g.run(cacheKey: "sku-9") { () async throws -> String in
                _ = refreshes.hit()
                for await _ in refreshGate { break }
                return "v2"
            }
            XCTAssertEqual(stale, "v1", "the stale value, without waiting for the refresh")
        }
        refreshOpener.yield()
        var latest = ""
        for _ in 0..<250 where latest != "v2" {
            latest = try await g.run(cacheKey: "sku-9") { () async throws -> String in "unexpected load" }
            XCTAssertNotEqual(latest, "unexpected load", "a second load ran while the refresh was in flight")
            if latest != "v2" { try await Task.sleep(for: .milliseconds(20)) }
        }
        XCTAssertEqual(latest, "v2", "the refresh stored its value")
        XCTAssertEqual(refreshes.count, 1, "one background refresh for three stale reads")
    }

    /// While fuseboxd is away, staleness (how long the client's view has not
    /// been confirmed) grows from 0, and past the bound the breakers run locally.
    func testStalenessGrowsWhileTheServerIsAwayAndPastTheBoundGoesLocal() async throws {
        let metrics = RecordingMetrics.shared
        let f = try await start([breakerPolicy("watched")]) { $0.stalenessBound = .seconds(2) }
        _ = f.guard("orders", policy: "watched")
        await waitUntil("connected: staleness 0") { f.staleness == .zero && f.mode == .fleet }
        try await server.stop()
        server = nil
        await waitUntil("staleness above 0") { f.staleness > .zero && metrics.value("fusebox_client_staleness_seconds") > 0 }
        await waitUntil("local mode past the bound") { f.mode == .local }
        XCTAssertGreaterThanOrEqual(f.staleness, .seconds(2))
        XCTAssertGreaterThanOrEqual(metrics.value("fusebox_client_staleness_seconds"), 2)
    }
}

extension GuardPatternTests {
    /// `Fusebox.health()` follows the calls and the breaker: healthy, then
    /// critical with the reason once the breaker opens, counting rejections.
    func testTheHealthReportFollowsTheCallsAndTheBreaker() async throws {
        let f = try await start([breakerPolicy("watched", failures: 3)])
        let g = f.guard("inventory", policy: "watched")
        for i in 0..<20 { _ = try await g.run { i } }
        XCTAssertEqual(f.health().status, .healthy)
        for _ in 0..<3 { _ = try? await g.run { () async throws -> Int in throw Boom() } }
        await waitUntil("the breaker opens") { g.breakerState?.state == .open }
        _ = try? await g.run { 1 }
        let h = f.health()
        XCTAssertEqual(h.status, .critical)
        XCTAssertTrue(h.reasons.contains("default/inventory: breaker OPEN: calls are rejected"), "\(h.reasons)")
        let inventory = try XCTUnwrap(h.guards.first { $0.name == "inventory" })
        XCTAssertEqual(inventory.lastCalls.calls, 23)
        XCTAssertEqual(inventory.lastCalls.failures, 3)
        XCTAssertEqual(inventory.lastCalls.rejected, 1)
        XCTAssertNotNil(inventory.lastFailureAt)
        XCTAssertEqual(inventory.lastErrors.count, 3)
        XCTAssertTrue(h.json().contains("\"name\":\"inventory\""))
    }
}

extension GuardPatternTests {
    /// One span per guarded operation, named fusebox.guard, with the
    /// breaker's state, attempts, retries, timeouts, the bulkhead queue
    /// position and the fallback as attributes; the error recorded on failure.
    func testEachGuardedOperationIsOneSpanWithItsAttributes() async throws {
        let tracer = InMemoryTracer()
        var policy = breakerPolicy("traced", failures: 50)
        policy.retry = quickRetry(attempts: 3, on: [.serverError])
        policy.timeout = TimeoutPolicy(attemptMs: 200)
        policy.bulkhead = BulkheadPolicy(maxConcurrent: 1, maxQueued: 5, maxWaitMs: 5_000)
        let f = try await start([policy]) { $0.tracer = tracer }
        let g = f.guard("traced-dep", policy: "traced")

        // Fails once (retried), then succeeds: one span, two attempts, one retry.
        let calls = Calls()
        _ = try await g.run { () async throws -> Int in
            if calls.hit() == 1 { throw Boom() }
            return 1
        }
        var spans = tracer.popFinishedSpans()
        XCTAssertEqual(spans.count, 1)
        let first = try XCTUnwrap(spans.first)
        XCTAssertEqual(first.operationName, "fusebox.guard")
        XCTAssertEqual(first.kind, .client)
        XCTAssertEqual(first.attributes.get("fusebox.guard"), .string("traced-dep"))
        XCTAssertEqual(first.attributes.get("fusebox.policy"), .string("traced"))
        XCTAssertEqual(first.attributes.get("fusebox.breaker.state"), .string("CLOSED"))
        XCTAssertEqual(first.attributes.get("fusebox.attempts"), .int64(2))
        XCTAssertEqual(first.attributes.get("fusebox.retries"), .int64(1))
        XCTAssertEqual(first.attributes.get("fusebox.bulkhead.queue_position"), .int64(0))
        XCTAssertEqual(first.attributes.get("fusebox.fallback"), .bool(false))
        XCTAssertTrue(first.errors.isEmpty)

        // The attempt times out (the policy retries server errors only): the span says so and carries the error.
        _ = try? await g.run { () async throws -> Int in
            try await Task.sleep(for: .seconds(5))
            return 1
        }
        spans = tracer.popFinishedSpans()
        XCTAssertEqual(spans.first?.attributes.get("fusebox.timeout"), .string("attempt"))
        XCTAssertEqual(spans.first?.attributes.get("fusebox.attempts"), .int64(1))
        XCTAssertEqual(spans.first?.errors.count, 1)

        // A call queued behind a running one: its queue position.
        let release = AsyncStream<Void>.makeStream()
        let holder = Task { try await g.run { () async throws -> Int in
            for await _ in release.stream { break }
            return 1
        } }
        await waitUntil("the first call holds the bulkhead's slot") { g.bulkheadCounts?.active == 1 }
        let queued = Task { try await g.run { 2 } }
        await waitUntil("the second call is queued") { g.bulkheadCounts?.queued == 1 }
        release.continuation.yield()
        _ = try await holder.value
        _ = try await queued.value
        spans = tracer.popFinishedSpans()
        XCTAssertEqual(spans.count, 2)
        XCTAssertTrue(spans.contains { $0.attributes.get("fusebox.bulkhead.queue_position") == .int64(1) }, "\(spans.map(\.attributes))")

        // A fallback answering: marked on the span, which then has no error.
        _ = try await g.run(fallback: { _ in 7 }) { () async throws -> Int in throw Boom() }
        spans = tracer.popFinishedSpans()
        XCTAssertEqual(spans.first?.attributes.get("fusebox.fallback"), .bool(true))
        XCTAssertEqual(spans.first?.errors.count, 0)
    }
}
