import NIOConcurrencyHelpers
import Atomics
public import FuseboxCore
import Logging
import Synchronization
import CoreMetrics
import NIOCore

/// Guards the calls to one dependency with a named policy, e.g.
///
/// ```swift
/// let payments = fusebox.guard("stripe-api", policy: "external")
/// let charge = try await payments.run { try await stripe.charge(order) }
/// ```
///
/// Patterns apply outer to inner: fallback → cache → total timeout → retry
/// (with budget) → circuit breaker → rate limiter → bulkhead → attempt
/// timeout → operation. Every attempt is one breaker outcome; breaker,
/// bulkhead and rate-limit rejections are never retried. A policy change
/// pushed by fuseboxd applies to the next call.
public final class Guard: Sendable {
    /// The guard's name, which is also its breaker's name.
    public let name: String
    /// The registry its policy and breaker live in.
    public let registry: String
    /// The policy's name.
    public let policyName: String

    /// How the guard classifies the errors its operations throw.
    public let classifier: ErrorClassifier
    let runtime: ManagedAtomic<GuardRuntime>
    let metrics: GuardMetrics
    /// The last 100 calls and the last hour, for `health()`.
    let healthRecorder = HealthRecorder()
    let session: FleetSession
    let onEvent: (@Sendable (GuardEvent) -> Void)?
    private let random = ManagedAtomic<UInt64>(0x9E37_79B9_7F4A_7C15)

    init(name: String, registry: String, policyName: String, classifier: ErrorClassifier, runtime: GuardRuntime, session: FleetSession) {
        self.name = name
        self.classifier = classifier
        self.registry = registry
        self.policyName = policyName
        self.runtime = ManagedAtomic(runtime)
        self.metrics = GuardMetrics(registry: registry, breaker: name)
        self.session = session
        self.onEvent = session.configuration.onEvent
    }

    /// The policy in force now.
    public var policy: Policy { runtime.load(ordering: .acquiring).policy }

    /// The breaker's state and generation as the fleet (or, in local mode,
    /// the local breaker) decided them; nil when the policy has no circuit
    /// breaker. While this client's breaker alone is open below quorum, this
    /// stays the fleet's state: see `localOpenUntil`.
    public var breakerState: BreakerGate.Snapshot? { runtime.load(ordering: .acquiring).breaker?.gate.snapshot }

    /// Until when this client's breaker alone is open, because fuseboxd saw
    /// a trip rule fire on this client's failures while fewer clients than
    /// the policy's `minimumClients` were failing; nil when it is not. Calls
    /// are rejected as `circuitOpen` until then, while the fleet's breaker
    /// (`breakerState`) stays as it is.
    public var localOpenUntil: Timestamp? { runtime.load(ordering: .acquiring).breaker?.gate.localOpenUntil }

    /// The bulkhead's calls holding a slot and queued, now; nil without a bulkhead.
    var bulkheadCounts: BulkheadStateMachine.Counts? { runtime.load(ordering: .acquiring).bulkhead?.counts }

    // MARK: Running calls

    /// Runs `operation` through the guard's patterns. When it fails in a way
    /// the policy's fallback section answers, the section's static response
    /// (for a result type adopting `StaticFallbackRepresentable`) or named
    /// handler (`Fusebox.registerFallback`) answers instead. When the
    /// bulkhead is full, queued calls of a higher `priority` get a slot first
    /// (first come, first served within a priority).
    public func run<T: Sendable>(priority: Int = 0, _ operation: @Sendable () async throws -> T) async throws -> T {
        if priority != 0 { return try await BulkheadPriority.$value.withValue(priority) { try await run(operation) } }
        return try await traced {
            let rt = runtime.load(ordering: .acquiring)
            do {
                guard rt.policy.timeout?.totalMs != nil else { return try await retrying(rt, operation) }
                return try await withTotalTimeout(rt) { try await self.retrying(rt, operation) }
            } catch {
                if let value: T = try await policyFallback(rt, error, cacheKey: nil) { return value }
                throw error
            }
        }
    }

    /// Runs `operation`; when it fails in a way the policy's fallback answers
    /// (any failure, without a fallback section), returns what the policy's
    /// fallback gives, or else `fallback(error)`.
    public func run<T: Sendable>(
        priority: Int = 0, fallback: @Sendable (any Error) async throws -> T, _ operation: @Sendable () async throws -> T
    ) async throws -> T {
        if priority != 0 {
            return try await BulkheadPriority.$value.withValue(priority) { try await run(fallback: fallback, operation) }
        }
        return try await traced {
            let rt = runtime.load(ordering: .acquiring)
            do {
                return try await withTotalTimeout(rt) { try await self.retrying(rt, operation) }
            } catch {
                guard answers(rt, error) else { throw error }
                if let value: T = try await policyFallback(rt, error, cacheKey: nil) { return value }
                CallTrace.current?.fellBack()
                return try await fallback(error)
            }
        }
    }

    /// Runs `operation` with its result cached under `cacheKey` as the
    /// policy's cache section says (TTL, size, stale-while-revalidate;
    /// identical concurrent loads run once). Without a cache section nothing
    /// is cached. Failures the policy's fallback answers return the last
    /// cached value when the fallback action is `staleCache` (or the static
    /// response or handler the section names), or else `fallback(error)`.
    public func run<T: Sendable>(
        cacheKey: String, priority: Int = 0, fallback: (@Sendable (any Error) async throws -> T)? = nil,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        if priority != 0 {
            return try await BulkheadPriority.$value.withValue(priority) { try await run(cacheKey: cacheKey, fallback: fallback, operation) }
        }
        return try await traced {
            let rt = runtime.load(ordering: .acquiring)
            do {
                return try await cached(rt, key: cacheKey, operation)
            } catch {
                guard answers(rt, error) else { throw error }
                if let value: T = try await policyFallback(rt, error, cacheKey: cacheKey) { return value }
                guard let fallback else { throw error }
                CallTrace.current?.fellBack()
                return try await fallback(error)
            }
        }
    }

    /// Drops the cached result for `cacheKey`: the next `run(cacheKey:)`
    /// runs its operation again (a load already running still stores its result).
    public func invalidateCache(_ cacheKey: String) {
        runtime.load(ordering: .acquiring).cache?.invalidate(cacheKey)
    }

    /// This guard's health: its last 100 calls and last hour, its last
    /// errors, and the status the configured thresholds give.
    public func health(thresholds: HealthThresholds? = nil) -> GuardHealth {
        healthRecorder.report(
            registry: registry, name: name, policy: policyName, breakerState: breakerState?.state.displayName,
            thresholds: thresholds ?? session.configuration.healthThresholds)
    }

    /// Drops every cached result of this guard.
    public func clearCache() {
        runtime.load(ordering: .acquiring).cache?.clear()
    }

    // MARK: Patterns

    private func answers(_ rt: GuardRuntime, _ error: any Error) -> Bool {
        if error is CancellationError { return false }
        guard let policy = rt.policy.fallback else { return true }
        return policy.answers((error as? GuardError)?.trigger ?? .failure)
    }

    private func cached<T: Sendable>(
        _ rt: GuardRuntime, key: String, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let load: @Sendable () async throws -> T = { try await self.withTotalTimeout(rt) { try await self.retrying(rt, operation) } }
        guard let cache = rt.cache else { return try await load() }
        for _ in 0..<2 {
            switch cache.lookup(key) {
            case .value(let value as T, let refresh):
                if refresh {
                    // Stale-while-revalidate: the refresh outlives this call, which returns
                    // the stale value at once, so it runs as a child of the session's run();
                    // the cache coalesces refreshes, so at most one runs per key. With the
                    // session not running, the entry is left to expire instead.
                    if !session.submit({
                        do { cache.store(key, try await load()) } catch { cache.loadFailed(key) }
                    }) {
                        cache.loadFailed(key)
                    }
                }
                return value
            case .value:
                // Stored by a call with another result type: treat as a miss.
                break
            case .load:
                do {
                    let value = try await load()
                    cache.store(key, value)
                    return value
                } catch {
                    cache.loadFailed(key)
                    throw error
                }
            case .wait:
                if let value = await cache.wait(key) as? T { return value }
                continue
            }
            break
        }
        return try await load()
    }

    @inline(__always) nonisolated(nonsending) private func withTotalTimeout<T: Sendable>(_ rt: GuardRuntime, _ body: @Sendable () async throws -> T) async throws -> T {
        guard let total = rt.policy.timeout?.totalMs else { return try await body() }
        return try await withDeadline(milliseconds: total, rt: rt, kind: .total, body)
    }

    @inline(__always) nonisolated(nonsending) private func retrying<T: Sendable>(_ rt: GuardRuntime, _ operation: @Sendable () async throws -> T) async throws -> T {
        guard let retry = rt.policy.retry, let budget = rt.budget else { return try await attempt(rt, operation) }
        var schedule = RetrySchedule(policy: retry)
        let deadline = rt.policy.timeout?.totalMs.map { wallNow().adding(milliseconds: $0) }
        while true {
            do {
                let value = try await attempt(rt, operation)
                budget.success()
                return value
            } catch {
                let failure = ClassifiedFailure(error, classifier: classifier)
                if failure.cancelled { throw error }
                var rng = SplitMix64(seed: random.loadThenWrappingIncrement(by: 0x9E37_79B9_7F4A_7C15, ordering: .relaxed))
                let decision = budget.budget.withLockedValue { b in
                    schedule.afterFailure(failure.attempt, at: wallNow(), deadline: deadline, budget: &b, using: &rng)
                }
                guard case .retry(let delayMs) = decision else { throw error }
                metrics.retryAttempts.increment()
                CallTrace.current?.retried()
                emit(.retry(attempt: schedule.attempts, delay: .milliseconds(delayMs), error: "\(error)"))
                try await Task.sleep(for: .milliseconds(delayMs))
            }
        }
    }

    /// One attempt: breaker → rate limiter → bulkhead → attempt timeout → operation.
    @inline(__always) nonisolated(nonsending) private func attempt<T: Sendable>(_ rt: GuardRuntime, _ operation: @Sendable () async throws -> T) async throws -> T {
        CallTrace.current?.attempt(breakerState: rt.breaker?.gate.snapshot.state.displayName)
        guard let breaker = rt.breaker else { return try await unbroken(rt, operation) }
        var permit: UInt64?
        var local = false
        var permitWait = Duration.zero
        let generation: BreakerGeneration
        switch breaker.gate.admit() {
        case .pass(let g):
            generation = g
        case .reject(_, let g):
            breaker.calls.notPermitted.add(1, ordering: .relaxed)
            throw rejected(GuardError(.circuitOpen(retryAfter: breaker.retryAfter(now: wallNow())), breaker: name, generation: g.value))
        case .needsPermit(let g):
            let asked = ContinuousClock.now
            defer { permitWait = ContinuousClock.now - asked }
            switch await session.permits.acquire(breaker, generation: g, timeout: permitTimeout(rt)) {
            case .granted(let id, let isLocal, let granted):
                permit = id
                local = isLocal
                generation = granted
            case .denied(let retryAfter, let current):
                breaker.calls.notPermitted.add(1, ordering: .relaxed)
                throw rejected(GuardError(.circuitOpen(retryAfter: retryAfter), breaker: name, generation: current.value))
            }
        }
        let start = monotonicNanos()
        do {
            let value = try await limited(rt, generation: generation.value, spent: permitWait, operation)
            finish(breaker, rt, failed: false, error: nil, start: start, generation: generation, permit: permit, local: local)
            return value
        } catch {
            if let e = error as? GuardError, e.kind != .timeout {
                // The rate limiter or bulkhead refused: the dependency was not called, nothing to count.
                if let permit { breaker.recordProbe(permit, .ignored, local: local) }
                throw error
            }
            finish(breaker, rt, failed: true, error: error, start: start, generation: generation, permit: permit, local: local)
            throw error
        }
    }

    @inline(__always)
    private func finish(
        _ breaker: SharedBreaker, _ rt: GuardRuntime, failed: Bool, error: (any Error)?, start: Int64,
        generation: BreakerGeneration, permit: UInt64?, local: Bool
    ) {
        let nanos = max(monotonicNanos() - start, 0)
        var outcome: Outcome
        if failed, let error {
            let failure = ClassifiedFailure(error, classifier: classifier)
            if failure.cancelled || (failure.code.map { rt.policy.circuitBreaker?.ignoredErrors.contains($0) ?? false } ?? false) {
                outcome = .ignored
            } else {
                outcome = nanos > rt.slowThresholdNanos ? .slowFailure : .failure
            }
        } else {
            outcome = nanos > rt.slowThresholdNanos ? .slowSuccess : .success
        }
        breaker.calls.count(outcome)
        switch outcome {
        case .success, .slowSuccess:
            metrics.durationSuccess.recordNanoseconds(nanos)
            healthRecorder.record(latencyNs: nanos, failed: false, error: nil)
        case .failure, .slowFailure:
            metrics.durationFailure.recordNanoseconds(nanos)
            healthRecorder.record(latencyNs: nanos, failed: true, error: error)
        case .ignored: break
        }
        emit(.call(outcome: outcome, latency: .nanoseconds(nanos)))
        if let permit {
            breaker.recordProbe(permit, outcome, local: local)
            session.reporter.requestFlush()
        } else if breaker.tally.record(outcome, generation: generation) == session.reporter.batchSize {
            session.reporter.requestFlush()
        }
    }

    /// How long a HALF_OPEN call may wait for fuseboxd's probe permit:
    /// `permitTimeout`, but at most half the attempt timeout. The wait is part
    /// of the attempt, so a frozen or slow fuseboxd cannot hold a call past
    /// its attempt timeout; the probe itself keeps at least the other half.
    private func permitTimeout(_ rt: GuardRuntime) -> Duration {
        guard let attemptMs = rt.policy.timeout?.attemptMs else { return session.configuration.permitTimeout }
        return min(session.configuration.permitTimeout, .milliseconds(max(attemptMs / 2, 1)))
    }

    /// Rate limiter → bulkhead → attempt timeout → operation. `spent`: what
    /// the attempt already used waiting for a probe permit.
    @inline(__always) nonisolated(nonsending) func limited<T: Sendable>(
        _ rt: GuardRuntime, generation: UInt64, spent: Duration = .zero, _ operation: @Sendable () async throws -> T
    ) async throws -> T {
        if let limiter = rt.limiter {
            switch limiter.acquire(now: wallNow()) {
            case .granted: break
            case .delayed(let ms): try await Task.sleep(for: .milliseconds(ms))
            case .rejected(let after):
                throw rejected(GuardError(.rateLimited(retryAfter: .milliseconds(after)), breaker: name, generation: generation))
            }
        }
        guard let bulkhead = rt.bulkhead else { return try await timed(rt, generation: generation, spent: spent, operation) }
        if let trace = CallTrace.current, let max = rt.policy.bulkhead?.maxConcurrent {
            let counts = bulkhead.counts
            if counts.active >= max { trace.queued(at: counts.queued + 1) }
        }
        guard await bulkhead.acquire(priority: BulkheadPriority.value) else {
            metrics.bulkheadRejected.increment()
            throw rejected(GuardError(.bulkheadFull, breaker: name, generation: generation))
        }
        metrics.bulkheadPermitted.increment()
        defer { bulkhead.release() }
        return try await timed(rt, generation: generation, spent: spent, operation)
    }

    @inline(__always) nonisolated(nonsending) private func timed<T: Sendable>(
        _ rt: GuardRuntime, generation: UInt64, spent: Duration, _ operation: @Sendable () async throws -> T
    ) async throws -> T {
        guard let attemptMs = rt.policy.timeout?.attemptMs else { return try await operation() }
        let spentMs = spent.components.seconds * 1000 + spent.components.attoseconds / 1_000_000_000_000_000
        let ms = max(attemptMs - spentMs, 1)
        return try await withDeadline(milliseconds: ms, rt: rt, kind: .attempt, generation: generation, operation)
    }
}
