/// Checks a policy and reports every problem at once, each with its field
/// path and a message a person can act on, e.g.
/// `retry.backoff.maxMs (100) must be ≥ retry.backoff.initialMs (500)`.
public enum PolicyValidator {
    /// The longest OPEN period, timeout or wait a policy may set: 24 hours.
    public static let maxDurationMs: Int64 = 86_400_000

    /// Every problem with `policy`; empty when it is valid.
    public static func violations(of policy: Policy) -> [PolicyViolation] {
        var v = Violations()
        v.name(policy.name, field: "name")
        v.check(policy.description.utf8.count <= 1024, "description", "is \(policy.description.utf8.count) bytes; at most 1024 are allowed")
        v.check(policy.labels.count <= 32, "labels", "has \(policy.labels.count) labels; at most 32 are allowed")
        for key in policy.labels.keys.sorted() {
            let ok = (1...63).contains(key.count) && key.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._/-".contains($0)) }
            v.check(ok, "labels.\(key)", "label keys are 1-63 characters of A-Z a-z 0-9 . _ / -")
            v.check((policy.labels[key]?.utf8.count ?? 0) <= 256, "labels.\(key)", "label values are at most 256 bytes")
        }
        if let cb = policy.circuitBreaker { circuitBreaker(cb, into: &v) }
        if let retry = policy.retry { self.retry(retry, into: &v) }
        if let timeout = policy.timeout { self.timeout(timeout, into: &v) }
        if let b = policy.bulkhead {
            v.range(b.maxConcurrent, 1...100_000, "bulkhead.maxConcurrent")
            v.range(b.maxQueued, 0...1_000_000, "bulkhead.maxQueued")
            v.range(b.maxWaitMs, 0...maxDurationMs, "bulkhead.maxWaitMs")
        }
        if let r = policy.rateLimit {
            v.range(r.limitPerPeriod, 1...1_000_000_000, "rateLimit.limitPerPeriod")
            v.range(r.periodMs, 1...maxDurationMs, "rateLimit.periodMs")
            // A burst equal to the limit (the default when burst is not set, 0 on
            // the wire) is valid exactly when the limit is: report the limit only.
            if r.burst != r.limitPerPeriod { v.range(r.burst, 1...1_000_000_000, "rateLimit.burst") }
            v.range(r.maxWaitMs, 0...maxDurationMs, "rateLimit.maxWaitMs")
        }
        if let f = policy.fallback { fallback(f, cache: policy.cache, into: &v) }
        if let c = policy.cache {
            v.range(c.ttlMs, 1...maxDurationMs, "cache.ttlMs")
            v.range(c.maxEntries, 1...1_000_000, "cache.maxEntries")
            v.range(c.staleWhileRevalidateMs, 0...maxDurationMs, "cache.staleWhileRevalidateMs")
        }
        return v.found
    }

    /// Throws `PolicyValidationError` with every problem, if there are any.
    public static func validate(_ policy: Policy) throws(PolicyValidationError) {
        let found = violations(of: policy)
        guard found.isEmpty else { throw PolicyValidationError(policy: policy.name, violations: found) }
    }

    private static func circuitBreaker(_ cb: CircuitBreakerPolicy, into v: inout Violations) {
        let p = "circuitBreaker"
        v.percent(cb.failureRateThreshold, "\(p).failureRateThreshold")
        v.percent(cb.slowCallRateThreshold, "\(p).slowCallRateThreshold")
        v.check(
            cb.failureRateThreshold > 0 || cb.slowCallRateThreshold > 0 || cb.consecutiveFailuresThreshold > 0, p,
            "no trip rule is enabled, so the breaker would never open; set failureRateThreshold, slowCallRateThreshold or consecutiveFailuresThreshold")
        v.range(cb.slowCallDurationThresholdMs, 1...maxDurationMs, "\(p).slowCallDurationThresholdMs")
        v.range(cb.minimumCalls, 1...1_000_000, "\(p).minimumCalls")
        v.range(cb.consecutiveFailuresThreshold, 0...1_000_000, "\(p).consecutiveFailuresThreshold")
        v.range(cb.minimumClients, 1...10_000, "\(p).minimumClients")
        let w = cb.window
        switch w.kind {
        case .count:
            v.range(w.size, 1...100_000, "\(p).window.size")
            v.range(w.buckets, 1...max(1, min(w.size, 10_000)), "\(p).window.buckets")
        case .time:
            v.range(w.size, 1...86_400, "\(p).window.size")
            v.range(w.buckets, 1...max(1, min(w.size * 10, 10_000)), "\(p).window.buckets")
        }
        let o = cb.openDuration
        v.range(o.baseMs, 1...maxDurationMs, "\(p).openDuration.baseMs")
        v.check(o.multiplier.isFinite && o.multiplier >= 1 && o.multiplier <= 100, "\(p).openDuration.multiplier", "(\(o.multiplier)) must be between 1 and 100")
        v.range(o.maxMs, 1...maxDurationMs, "\(p).openDuration.maxMs")
        v.check(o.maxMs >= o.baseMs, "\(p).openDuration.maxMs", "(\(o.maxMs)) must be ≥ \(p).openDuration.baseMs (\(o.baseMs))")
        v.range(o.jitterPercent, 0...100, "\(p).openDuration.jitterPercent")
        let h = cb.halfOpen
        v.range(h.permittedCalls, 1...1_000, "\(p).halfOpen.permittedCalls")
        v.range(h.maxWaitMs, 1...maxDurationMs, "\(p).halfOpen.maxWaitMs")
        v.range(h.successThreshold, 1...1_000_000, "\(p).halfOpen.successThreshold")
        for code in cb.ignoredErrors.sorted() where code.isEmpty || code.utf8.count > 128 {
            v.check(false, "\(p).ignoredErrors", "error codes are 1-128 bytes, not \"\(code)\"")
        }
    }

    private static func retry(_ r: RetryPolicy, into v: inout Violations) {
        v.range(r.maxAttempts, 1...10, "retry.maxAttempts")
        let b = r.backoff
        v.range(b.initialMs, 0...maxDurationMs, "retry.backoff.initialMs")
        v.range(b.maxMs, 0...maxDurationMs, "retry.backoff.maxMs")
        v.check(b.maxMs >= b.initialMs, "retry.backoff.maxMs", "(\(b.maxMs)) must be ≥ retry.backoff.initialMs (\(b.initialMs))")
        v.check(b.multiplier.isFinite && b.multiplier >= 1 && b.multiplier <= 100, "retry.backoff.multiplier", "(\(b.multiplier)) must be between 1 and 100")
        v.range(r.jitterPercent, 1...100, "retry.jitterPercent")
        let both = r.retryableErrors.intersection(r.nonRetryableErrors).sorted()
        v.check(both.isEmpty, "retry.nonRetryableErrors", "\(both) also appear in retry.retryableErrors; list each code in one of them")
        if let budget = r.budget {
            v.range(budget.maxTokens, 1...1_000, "retry.budget.maxTokens")
            v.check(budget.tokenRatio > 0 && budget.tokenRatio <= 1, "retry.budget.tokenRatio", "(\(budget.tokenRatio)) must be > 0 and ≤ 1")
        }
    }

    private static func timeout(_ t: TimeoutPolicy, into v: inout Violations) {
        v.check(t.attemptMs != nil || t.totalMs != nil, "timeout", "sets neither attemptMs nor totalMs; remove the section or set one")
        if let a = t.attemptMs { v.range(a, 1...maxDurationMs, "timeout.attemptMs") }
        if let total = t.totalMs { v.range(total, 1...maxDurationMs, "timeout.totalMs") }
        if let a = t.attemptMs, let total = t.totalMs {
            v.check(a <= total, "timeout.attemptMs", "(\(a)) must be ≤ timeout.totalMs (\(total))")
        }
    }

    private static func fallback(_ f: FallbackPolicy, cache: CachePolicy?, into v: inout Violations) {
        switch f.action {
        case .staticResponse(let contentType, let body):
            v.check(body.count <= 65_536, "fallback.staticResponse.body", "is \(body.count) bytes; at most 65536 are allowed")
            v.check(contentType.utf8.count <= 256, "fallback.staticResponse.contentType", "is longer than 256 bytes")
        case .staleCache:
            v.check(cache != nil, "fallback.staleCache", "needs a cache section to serve stale values from")
        case .handler(let name):
            v.check(!name.isEmpty && name.utf8.count <= 128, "fallback.handler", "names a registered handler: 1-128 bytes")
        }
    }
}

/// Accumulates violations.
private struct Violations {
    var found: [PolicyViolation] = []

    mutating func check(_ ok: Bool, _ field: String, _ message: String) {
        if !ok { found.append(PolicyViolation(field: field, message: message)) }
    }

    mutating func range<T: BinaryInteger>(_ value: T, _ allowed: ClosedRange<T>, _ field: String) {
        check(allowed.contains(value), field, "(\(value)) must be between \(allowed.lowerBound) and \(allowed.upperBound)")
    }

    mutating func percent(_ value: Double, _ field: String) {
        check(value.isFinite && value >= 0 && value <= 100, field, "(\(value)) must be a percentage from 0 to 100 (0 disables the rule)")
    }

    mutating func name(_ name: String, field: String) {
        let ok = (1...128).contains(name.count)
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        check(ok, field, "(\"\(name)\") must be 1-128 characters of A-Z a-z 0-9 . _ -")
    }
}
