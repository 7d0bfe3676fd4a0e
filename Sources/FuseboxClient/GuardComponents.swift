import NIOConcurrencyHelpers
import Atomics
import FuseboxCore
import NIOCore
import Synchronization

/// A guard's policy and the stateful pieces that outlive a policy change
/// (the retry budget, the token bucket, the bulkhead, the cache). Immutable:
/// a policy change builds a new one, handing the pieces over, and swaps it in
/// atomically, so a call reads its policy without a lock.
final class GuardRuntime: AtomicReference, Sendable {
    let policy: Policy
    /// nil when the policy has no circuit breaker.
    let breaker: SharedBreaker?
    let budget: RetryBudgetBox?
    let limiter: RateLimiterBox?
    let bulkhead: AsyncBulkhead?
    let cache: ResultCacheBox?
    /// Slow-call threshold of the breaker, in nanoseconds.
    let slowThresholdNanos: Int64

    /// `timer`: where the bulkhead's queued calls are given up at their deadline.
    init(policy: Policy, registry: String, name: String, breaker: SharedBreaker?, previous: GuardRuntime?, now: Timestamp, timer: DeadlineTimer) {
        self.policy = policy
        self.breaker = policy.circuitBreaker == nil ? nil : breaker
        self.slowThresholdNanos = (policy.circuitBreaker?.slowCallDurationThresholdMs ?? 60_000) * 1_000_000
        if let retry = policy.retry {
            if let kept = previous?.budget, kept.policy == retry.budget { budget = kept } else { budget = RetryBudgetBox(retry.budget) }
        } else {
            budget = nil
        }
        if let rate = policy.rateLimit {
            let box = previous?.limiter ?? RateLimiterBox(rate, now: now)
            box.update(rate, now: now)
            limiter = box
        } else {
            limiter = nil
        }
        if let b = policy.bulkhead {
            let box = previous?.bulkhead ?? AsyncBulkhead(b, timer: timer, gauges: BulkheadGauges(registry: registry, breaker: name))
            box.update(b)
            bulkhead = box
        } else {
            bulkhead = nil
        }
        if let c = policy.cache {
            if let kept = previous?.cache, kept.policy == c { cache = kept } else { cache = ResultCacheBox(c) }
        } else {
            cache = nil
        }
    }
}

/// The retry budget a guard's calls share.
final class RetryBudgetBox: Sendable {
    let policy: RetryBudgetPolicy?
    let budget: NIOLockedValueBox<RetryBudget>

    init(_ policy: RetryBudgetPolicy?) {
        self.policy = policy
        self.budget = NIOLockedValueBox(RetryBudget(policy: policy))
    }

    func success() {
        guard policy != nil else { return }
        budget.withLockedValue { $0.recordSuccess() }
    }
}

/// A token bucket shared by a guard's calls.
final class RateLimiterBox: Sendable {
    private let bucket: NIOLockedValueBox<TokenBucket>

    init(_ policy: RateLimitPolicy, now: Timestamp) {
        bucket = NIOLockedValueBox(TokenBucket(policy: policy, at: now))
    }

    func update(_ policy: RateLimitPolicy, now: Timestamp) {
        bucket.withLockedValue { b in
            if b.policy != policy { b.updatePolicy(policy, at: now) }
        }
    }

    func acquire(now: Timestamp) -> TokenBucket.Decision {
        bucket.withLockedValue { $0.acquire(at: now) }
    }
}

/// A bulkhead for async calls: `BulkheadStateMachine` plus the suspended
/// callers it queues. Its calls running and queued are gauges.
final class AsyncBulkhead: Sendable {
    private struct State {
        var machine: BulkheadStateMachine
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextID: UInt64 = 1
    }

    private let state: NIOLockedValueBox<State>
    private let gauges: BulkheadGauges?
    private let timer: DeadlineTimer

    init(_ policy: BulkheadPolicy, timer: DeadlineTimer, gauges: BulkheadGauges? = nil) {
        state = NIOLockedValueBox(State(machine: BulkheadStateMachine(policy: policy)))
        self.timer = timer
        self.gauges = gauges
        gauges?.record(state.withLockedValue { $0.machine.counts })
    }

    func update(_ policy: BulkheadPolicy) {
        let (started, counts) = state.withLockedValue { s -> ([CheckedContinuation<Bool, Never>], BulkheadStateMachine.Counts) in
            guard s.machine.policy != policy else { return ([], s.machine.counts) }
            return (s.machine.updatePolicy(policy, at: wallNow()).compactMap { s.waiters.removeValue(forKey: $0) }, s.machine.counts)
        }
        gauges?.record(counts)
        for waiter in started { waiter.resume(returning: true) }
    }

    /// Waits for a slot, queued by `priority` (higher first); false when
    /// rejected (full, or waited too long).
    func acquire(priority: Int = 0) async -> Bool {
        // Fast path: a free slot and nobody queued, taken without suspending.
        let (id, admitted, counts) = state.withLockedValue { s -> (UInt64, Bool, BulkheadStateMachine.Counts) in
            defer { s.nextID &+= 1 }
            let c = s.machine.counts
            guard c.active < s.machine.policy.maxConcurrent, c.queued == 0 else { return (s.nextID, false, c) }
            return (s.nextID, s.machine.acquire(s.nextID, priority: priority, at: wallNow()) == .run, s.machine.counts)
        }
        if admitted {
            gauges?.record(counts)
            return true
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let (queuedUntil, counts) = state.withLockedValue { s -> (Timestamp?, BulkheadStateMachine.Counts) in
                    switch s.machine.acquire(id, priority: priority, at: wallNow()) {
                    case .run:
                        continuation.resume(returning: true)
                        return (nil, s.machine.counts)
                    case .rejected:
                        continuation.resume(returning: false)
                        return (nil, s.machine.counts)
                    case .queued(let deadline):
                        s.waiters[id] = continuation
                        return (deadline, s.machine.counts)
                    }
                }
                gauges?.record(counts)
                if let queuedUntil {
                    // The waiter is given up at its deadline by the session's deadline timer
                    // (no task); a waiter that got a slot before is simply not expired then.
                    let wait = max(0, queuedUntil.milliseconds(since: wallNow())) + 1
                    _ = timer.arm(at: .now() + .milliseconds(wait), QueueExpiry(self))
                }
            }
        } onCancel: {
            let (waiter, counts) = state.withLockedValue { s -> (CheckedContinuation<Bool, Never>?, BulkheadStateMachine.Counts) in
                guard s.machine.cancel(id) else { return (nil, s.machine.counts) }
                return (s.waiters.removeValue(forKey: id), s.machine.counts)
            }
            gauges?.record(counts)
            waiter?.resume(returning: false)
        }
    }

    /// Calls holding a slot and calls queued for one, now.
    var counts: BulkheadStateMachine.Counts { state.withLockedValue { $0.machine.counts } }

    /// A call that held a slot finished.
    func release() {
        let (next, expired, counts) = state.withLockedValue { s in
            var expired: [UInt64] = []
            let next = s.machine.release(at: wallNow(), expired: &expired).flatMap { s.waiters.removeValue(forKey: $0) }
            return (next, expired.compactMap { s.waiters.removeValue(forKey: $0) }, s.machine.counts)
        }
        gauges?.record(counts)
        for waiter in expired { waiter.resume(returning: false) }
        next?.resume(returning: true)
    }

    /// Tells a bulkhead (if still in memory) that a queued call's deadline passed.
    private final class QueueExpiry: DeadlineAction {
        weak let bulkhead: AsyncBulkhead?
        init(_ bulkhead: AsyncBulkhead) { self.bulkhead = bulkhead }
        func deadlinePassed() { bulkhead?.expire() }
    }

    private func expire() {
        let (expired, counts) = state.withLockedValue { s in
            (s.machine.expire(at: wallNow()).compactMap { s.waiters.removeValue(forKey: $0) }, s.machine.counts)
        }
        gauges?.record(counts)
        for waiter in expired { waiter.resume(returning: false) }
    }
}

/// A guard's result cache: `ResultCache` plus callers waiting for a load
/// another caller is running (identical concurrent loads are coalesced).
final class ResultCacheBox: Sendable {
    let policy: CachePolicy
    private struct State {
        var cache: ResultCache<String, any Sendable>
        var waiters: [String: [CheckedContinuation<(any Sendable)?, Never>]] = [:]
    }
    private let state: NIOLockedValueBox<State>

    init(_ policy: CachePolicy) {
        self.policy = policy
        state = NIOLockedValueBox(State(cache: ResultCache(policy: policy)))
    }

    enum Lookup {
        case value(any Sendable, refresh: Bool)
        case load
        case wait
    }

    func lookup(_ key: String) -> Lookup {
        state.withLockedValue { s in
            switch s.cache.lookup(key, at: wallNow()) {
            case .fresh(let v): return .value(v, refresh: false)
            case .stale(let v, let refresh): return .value(v, refresh: refresh)
            case .miss(let load): return load ? .load : .wait
            }
        }
    }

    /// Waits for the load another caller runs; nil if it failed.
    func wait(_ key: String) async -> (any Sendable)? {
        await withCheckedContinuation { continuation in
            let ready = state.withLockedValue { s -> Bool in
                guard s.cache.inFlight.contains(key) else { return true }
                s.waiters[key, default: []].append(continuation)
                return false
            }
            if ready { continuation.resume(returning: nil) }
        }
    }

    func store(_ key: String, _ value: any Sendable) {
        let waiters = state.withLockedValue { s in
            s.cache.store(key, value, at: wallNow())
            return s.waiters.removeValue(forKey: key) ?? []
        }
        for w in waiters { w.resume(returning: value) }
    }

    func loadFailed(_ key: String) {
        let waiters = state.withLockedValue { s in
            s.cache.loadFailed(key)
            return s.waiters.removeValue(forKey: key) ?? []
        }
        for w in waiters { w.resume(returning: nil) }
    }

    func invalidate(_ key: String) {
        state.withLockedValue { $0.cache.invalidate(key) }
    }

    func clear() {
        state.withLockedValue { $0.cache.removeAll() }
    }

    /// The last value stored for `key`, even expired (for a stale-cache fallback).
    func lastValue(_ key: String) -> (any Sendable)? {
        state.withLockedValue { $0.cache.lastValue(key) }
    }
}
