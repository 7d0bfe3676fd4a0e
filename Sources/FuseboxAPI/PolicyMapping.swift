public import FuseboxCore
public import FuseboxWire

/// The one place where API messages become domain values and back.
///
/// Wire → domain applies the documented zero-defaults of `Protos/` (a field
/// left at 0 takes its default) and reports values the domain cannot hold
/// (enum numbers this version does not know, a fallback without an action)
/// as violations. Domain → wire writes every value explicitly, so the round
/// trip domain → wire → domain is the identity.
///
/// Every violation this type returns names its field the way the API does
/// (`FieldViolation.field` in `common.proto`): the proto path relative to the
/// policy, e.g. `retry.backoff.max_ms`, `retry.retry_on[2]`, `labels["team"]`,
/// or a section such as `circuit_breaker` for a problem with the section as a
/// whole. Messages name other fields the same way. `PolicyValidator` reports
/// in the domain's camelCase; `PolicyFieldPath` translates.
public enum PolicyMapping {
    /// The domain policy for `wire`, or every problem found converting it
    /// (field paths in proto names; see the type's comment).
    public static func policy(from wire: Fusebox_V1_Policy) -> Result<Policy, PolicyValidationError> {
        let converted = convert(wire)
        return converted.problems.isEmpty ? .success(converted.policy) : .failure(PolicyValidationError(policy: wire.name, violations: converted.problems))
    }

    /// Converts and validates: every problem, of either kind, at once, in the
    /// order of the fields in `fusebox.v1.Policy`, with proto field paths
    /// relative to the policy. This is what ValidatePolicy returns as is and
    /// what PutPolicy returns with each path under `policy.` (see
    /// `fieldViolations(_:under:)`).
    public static func validatedPolicy(from wire: Fusebox_V1_Policy) -> Result<Policy, PolicyValidationError> {
        let converted = convert(wire)
        let checked = PolicyValidator.violations(of: converted.policy).map(protoViolation).filter { v in
            // A value the conversion could not read was replaced by its default;
            // checks of fields that depend on it would report that default.
            !converted.unreadable.contains { v.field == $0 || v.field.hasPrefix($0 + ".") }
        }
        let all = converted.problems + checked
        guard !all.isEmpty else { return .success(converted.policy) }
        let sorted = all.enumerated().sorted { a, b in
            (PolicyFieldPath.order(ofProto: a.element.field), a.offset) < (PolicyFieldPath.order(ofProto: b.element.field), b.offset)
        }.map(\.element)
        return .failure(PolicyValidationError(policy: wire.name, violations: sorted))
    }

    /// A violation of `PolicyValidator` (domain names) as the API reports it.
    public static func protoViolation(_ v: PolicyViolation) -> PolicyViolation {
        let field = v.field.isEmpty ? "" : (PolicyFieldPath.proto(fromDomain: v.field) ?? v.field)
        return PolicyViolation(field: field, message: PolicyFieldPath.protoMessage(v.message, field: v.field))
    }

    /// The violations of `error` as `FieldViolation`s, each path under
    /// `prefix`: `"policy"` for PutPolicy (`policy.retry.backoff.max_ms`;
    /// a problem with the whole policy names `policy`), empty for
    /// ValidatePolicy, whose paths are relative to the policy.
    public static func fieldViolations(_ error: PolicyValidationError, under prefix: String = "") -> [Fusebox_V1_FieldViolation] {
        error.violations.map { v in
            var w = Fusebox_V1_FieldViolation()
            w.field = prefix.isEmpty ? v.field : (v.field.isEmpty ? prefix : "\(prefix).\(v.field)")
            w.description = v.message
            return w
        }
    }

    /// The converted policy, the problems converting it, and the proto paths
    /// of values that could not be read (replaced by defaults).
    private struct Conversion {
        var policy: Policy
        var problems: [PolicyViolation] = []
        var unreadable: [String] = []
    }

    private static func convert(_ wire: Fusebox_V1_Policy) -> Conversion {
        var c = Conversion(policy: Policy(name: wire.name))
        c.policy.description = wire.description
        c.policy.labels = wire.labels
        if let cb = wire.circuitBreaker { c.policy.circuitBreaker = circuitBreaker(cb, &c) }
        if let r = wire.retry { c.policy.retry = retry(r, &c.problems) }
        if let t = wire.timeout {
            c.policy.timeout = TimeoutPolicy(attemptMs: t.attemptMs == 0 ? nil : Int64(t.attemptMs), totalMs: t.totalMs == 0 ? nil : Int64(t.totalMs))
        }
        if let b = wire.bulkhead {
            c.policy.bulkhead = BulkheadPolicy(maxConcurrent: Int(b.maxConcurrent), maxQueued: Int(b.maxQueued), maxWaitMs: b.maxWaitMs == 0 ? 1_000 : Int64(b.maxWaitMs))
        }
        if let r = wire.rateLimit {
            // burst 0 means limit_per_period; the validator then reports only limit_per_period.
            c.policy.rateLimit = RateLimitPolicy(
                limitPerPeriod: Int(r.limitPerPeriod), periodMs: r.periodMs == 0 ? 1_000 : Int64(r.periodMs),
                burst: r.burst == 0 ? nil : Int(r.burst), maxWaitMs: Int64(r.maxWaitMs))
        }
        if let f = wire.fallback { c.policy.fallback = fallback(f, &c.problems) }
        if let cache = wire.cache {
            c.policy.cache = CachePolicy(
                ttlMs: Int64(cache.ttlMs), maxEntries: cache.maxEntries == 0 ? 1_000 : Int(cache.maxEntries),
                staleWhileRevalidateMs: Int64(cache.staleWhileRevalidateMs))
        }
        return c
    }

    /// The API message for `policy`, every value explicit.
    public static func wire(_ p: Policy) -> Fusebox_V1_Policy {
        var w = Fusebox_V1_Policy()
        w.name = p.name
        w.description = p.description
        w.labels = p.labels
        if let cb = p.circuitBreaker { w.circuitBreaker = wire(cb) }
        if let r = p.retry { w.retry = wire(r) }
        if let t = p.timeout {
            var wt = Fusebox_V1_TimeoutPolicy()
            wt.attemptMs = UInt32(clamping: t.attemptMs ?? 0)
            wt.totalMs = UInt32(clamping: t.totalMs ?? 0)
            w.timeout = wt
        }
        if let b = p.bulkhead {
            var wb = Fusebox_V1_BulkheadPolicy()
            wb.maxConcurrent = UInt32(clamping: b.maxConcurrent)
            wb.maxQueued = UInt32(clamping: b.maxQueued)
            wb.maxWaitMs = UInt32(clamping: b.maxWaitMs)
            w.bulkhead = wb
        }
        if let r = p.rateLimit {
            var wr = Fusebox_V1_RateLimitPolicy()
            wr.limitPerPeriod = UInt32(clamping: r.limitPerPeriod)
            wr.periodMs = UInt32(clamping: r.periodMs)
            wr.burst = UInt32(clamping: r.burst)
            wr.maxWaitMs = UInt32(clamping: r.maxWaitMs)
            w.rateLimit = wr
        }
        if let f = p.fallback { w.fallback = wire(f) }
        if let c = p.cache {
            var wc = Fusebox_V1_CachePolicy()
            wc.ttlMs = UInt32(clamping: c.ttlMs)
            wc.maxEntries = UInt32(clamping: c.maxEntries)
            wc.staleWhileRevalidateMs = UInt32(clamping: c.staleWhileRevalidateMs)
            w.cache = wc
        }
        return w
    }

    // MARK: Circuit breaker

    private static func circuitBreaker(_ w: Fusebox_V1_CircuitBreakerPolicy, _ c: inout Conversion) -> CircuitBreakerPolicy {
        var cb = CircuitBreakerPolicy()
        let window = w.window ?? Fusebox_V1_SlidingWindow()
        let kind: WindowShape.Kind
        switch window.type {
        case .unspecified, .count: kind = .count
        case .time: kind = .time
        case .unrecognized(let n):
            c.problems.append(PolicyViolation(field: "circuit_breaker.window.type", message: "(\(n)) is not a window type this server knows; use WINDOW_TYPE_COUNT or WINDOW_TYPE_TIME"))
            c.unreadable.append("circuit_breaker.window")
            kind = .count
        }
        let size = window.size == 0 ? (kind == .count ? 100 : 60) : Int(window.size)
        cb.window = WindowShape(kind: kind, size: size, buckets: window.buckets == 0 ? nil : Int(window.buckets))
        cb.failureRateThreshold = w.failureRateThresholdPercent
        cb.slowCallRateThreshold = w.slowCallRateThresholdPercent
        cb.slowCallDurationThresholdMs = w.slowCallDurationThresholdMs == 0 ? 60_000 : Int64(w.slowCallDurationThresholdMs)
        cb.minimumCalls = w.minimumCalls == 0 ? 10 : Int(w.minimumCalls)
        cb.consecutiveFailuresThreshold = Int(w.consecutiveFailuresThreshold)
        cb.minimumClients = w.minimumClients == 0 ? 1 : Int(w.minimumClients)
        if let o = w.openDuration {
            cb.openDuration.baseMs = o.baseMs == 0 ? 60_000 : Int64(o.baseMs)
            cb.openDuration.multiplier = o.multiplier == 0 ? 1 : o.multiplier
            cb.openDuration.maxMs = o.maxMs == 0 ? OpenDurationPolicy.dayMs : Int64(o.maxMs)
            cb.openDuration.jitterPercent = Int(o.jitterPercent)
        }
        if let h = w.halfOpen {
            cb.halfOpen.permittedCalls = h.permittedCalls == 0 ? 1 : Int(h.permittedCalls)
            cb.halfOpen.maxWaitMs = h.maxWaitMs == 0 ? 30_000 : Int64(h.maxWaitMs)
            cb.halfOpen.successThreshold = Int(h.successThreshold)  // 0: the default, permittedCalls (resolved by HalfOpenPolicy)
        }
        cb.ignoredErrors = Set(w.ignoredErrors)
        return cb
    }

    private static func wire(_ cb: CircuitBreakerPolicy) -> Fusebox_V1_CircuitBreakerPolicy {
        var w = Fusebox_V1_CircuitBreakerPolicy()
        var window = Fusebox_V1_SlidingWindow()
        window.type = cb.window.kind == .count ? .count : .time
        window.size = UInt32(clamping: cb.window.size)
        window.buckets = UInt32(clamping: cb.window.buckets)
        w.window = window
        w.failureRateThresholdPercent = cb.failureRateThreshold
        w.slowCallRateThresholdPercent = cb.slowCallRateThreshold
        w.slowCallDurationThresholdMs = UInt32(clamping: cb.slowCallDurationThresholdMs)
        w.minimumCalls = UInt32(clamping: cb.minimumCalls)
        w.consecutiveFailuresThreshold = UInt32(clamping: cb.consecutiveFailuresThreshold)
        w.minimumClients = UInt32(clamping: cb.minimumClients)
        var o = Fusebox_V1_OpenDuration()
        o.baseMs = UInt32(clamping: cb.openDuration.baseMs)
        o.multiplier = cb.openDuration.multiplier
        o.maxMs = UInt32(clamping: cb.openDuration.maxMs)
        o.jitterPercent = UInt32(clamping: cb.openDuration.jitterPercent)
        w.openDuration = o
        var h = Fusebox_V1_HalfOpenPolicy()
        h.permittedCalls = UInt32(clamping: cb.halfOpen.permittedCalls)
        h.maxWaitMs = UInt32(clamping: cb.halfOpen.maxWaitMs)
        h.successThreshold = UInt32(clamping: cb.halfOpen.successThreshold)
        w.halfOpen = h
        w.ignoredErrors = cb.ignoredErrors.sorted()
        return w
    }

    // MARK: Retry

    private static func retry(_ w: Fusebox_V1_RetryPolicy, _ problems: inout [PolicyViolation]) -> RetryPolicy {
        var r = RetryPolicy()
        r.maxAttempts = w.maxAttempts == 0 ? 3 : Int(w.maxAttempts)
        if let b = w.backoff {
            switch b.type {
            case .unspecified, .exponential: r.backoff.kind = .exponential
            case .fixed: r.backoff.kind = .fixed
            case .unrecognized(let n):
                problems.append(PolicyViolation(field: "retry.backoff.type", message: "(\(n)) is not a backoff type this server knows; use BACKOFF_TYPE_FIXED or BACKOFF_TYPE_EXPONENTIAL"))
            }
            r.backoff.initialMs = b.initialMs == 0 ? 100 : Int64(b.initialMs)
            r.backoff.maxMs = b.maxMs == 0 ? 10_000 : Int64(b.maxMs)
            r.backoff.multiplier = b.multiplier == 0 ? 2 : b.multiplier
        }
        switch w.jitter {
        case .unspecified, .full: r.jitter = .full
        case .none: r.jitter = .none
        case .equal: r.jitter = .equal
        case .decorrelated: r.jitter = .decorrelated
        case .proportional: r.jitter = .proportional
        case .unrecognized(let n):
            problems.append(PolicyViolation(field: "retry.jitter", message: "(\(n)) is not a jitter type this server knows; use JITTER_TYPE_NONE, JITTER_TYPE_FULL, JITTER_TYPE_EQUAL, JITTER_TYPE_DECORRELATED or JITTER_TYPE_PROPORTIONAL"))
        }
        r.jitterPercent = w.jitterPercent == 0 ? 20 : Int(w.jitterPercent)
        if !w.retryOn.isEmpty {
            var conditions: Set<RetryCondition> = []
            for (i, c) in w.retryOn.enumerated() {
                switch c {
                case .networkError: conditions.insert(.networkError)
                case .timeout: conditions.insert(.timeout)
                case .rateLimited: conditions.insert(.rateLimited)
                case .serverError: conditions.insert(.serverError)
                case .anyFailure: conditions.insert(.anyFailure)
                case .unspecified, .unrecognized:
                    problems.append(PolicyViolation(field: "retry.retry_on[\(i)]", message: "(\(c.rawValue)) is not a retry condition; use RETRY_CONDITION_NETWORK_ERROR, RETRY_CONDITION_TIMEOUT, RETRY_CONDITION_RATE_LIMITED, RETRY_CONDITION_SERVER_ERROR or RETRY_CONDITION_ANY_FAILURE"))
                }
            }
            r.retryOn = conditions
        }
        r.retryableErrors = Set(w.retryableErrors)
        r.nonRetryableErrors = Set(w.nonRetryableErrors)
        r.honorPushback = w.honorPushback
        if let b = w.budget {
            var budget = RetryBudgetPolicy()
            budget.maxTokens = b.maxTokens == 0 ? 10 : Int(b.maxTokens)
            budget.tokenRatio = b.tokenRatio == 0 ? 0.1 : b.tokenRatio
            r.budget = budget
        }
        return r
    }

    private static func wire(_ r: RetryPolicy) -> Fusebox_V1_RetryPolicy {
        var w = Fusebox_V1_RetryPolicy()
        w.maxAttempts = UInt32(clamping: r.maxAttempts)
        var b = Fusebox_V1_Backoff()
        b.type = r.backoff.kind == .fixed ? .fixed : .exponential
        b.initialMs = UInt32(clamping: r.backoff.initialMs)
        b.maxMs = UInt32(clamping: r.backoff.maxMs)
        b.multiplier = r.backoff.multiplier
        w.backoff = b
        switch r.jitter {
        case .none: w.jitter = .none
        case .full: w.jitter = .full
        case .equal: w.jitter = .equal
        case .decorrelated: w.jitter = .decorrelated
        case .proportional: w.jitter = .proportional
        }
        w.jitterPercent = UInt32(clamping: r.jitterPercent)
        let order: [RetryCondition] = [.networkError, .timeout, .rateLimited, .serverError, .anyFailure]
        w.retryOn = order.filter(r.retryOn.contains).map { c -> Fusebox_V1_RetryCondition in
            switch c {
            case .networkError: return .networkError
            case .timeout: return .timeout
            case .rateLimited: return .rateLimited
            case .serverError: return .serverError
            case .anyFailure: return .anyFailure
            }
        }
        w.retryableErrors = r.retryableErrors.sorted()
        w.nonRetryableErrors = r.nonRetryableErrors.sorted()
        w.honorPushback = r.honorPushback
        if let budget = r.budget {
            var wb = Fusebox_V1_RetryBudget()
            wb.maxTokens = UInt32(clamping: budget.maxTokens)
            wb.tokenRatio = budget.tokenRatio
            w.budget = wb
        }
        return w
    }

    // MARK: Fallback

    private static let triggers: [(Fusebox_V1_FallbackTrigger, FallbackTrigger)] = [
        (.circuitOpen, .circuitOpen), (.bulkheadFull, .bulkheadFull), (.rateLimited, .rateLimited), (.timeout, .timeout), (.failure, .failure),
    ]

    private static func fallback(_ w: Fusebox_V1_FallbackPolicy, _ problems: inout [PolicyViolation]) -> FallbackPolicy? {
        var on: Set<FallbackTrigger> = []
        for (i, t) in w.on.enumerated() {
            if let match = triggers.first(where: { $0.0 == t }) {
                on.insert(match.1)
            } else {
                problems.append(PolicyViolation(field: "fallback.on[\(i)]", message: "(\(t.rawValue)) is not a fallback trigger; use FALLBACK_TRIGGER_CIRCUIT_OPEN, FALLBACK_TRIGGER_BULKHEAD_FULL, FALLBACK_TRIGGER_RATE_LIMITED, FALLBACK_TRIGGER_TIMEOUT or FALLBACK_TRIGGER_FAILURE"))
            }
        }
        switch w.action {
        case .staticResponse(let s)?: return FallbackPolicy(triggers: on, action: .staticResponse(contentType: s.contentType, body: s.body))
        case .staleCache?: return FallbackPolicy(triggers: on, action: .staleCache)
        case .handler(let name)?: return FallbackPolicy(triggers: on, action: .handler(name))
        case nil:
            problems.append(PolicyViolation(field: "fallback", message: "sets no action; set one of static_response, stale_cache or handler"))
            return nil
        }
    }

    private static func wire(_ f: FallbackPolicy) -> Fusebox_V1_FallbackPolicy {
        var w = Fusebox_V1_FallbackPolicy()
        w.on = triggers.filter { f.triggers.contains($0.1) }.map(\.0)
        switch f.action {
        case .staticResponse(let contentType, let body):
            var s = Fusebox_V1_StaticResponse()
            s.contentType = contentType
            s.body = body
            w.action = .staticResponse(s)
        case .staleCache: w.action = .staleCache(true)
        case .handler(let name): w.action = .handler(name)
        }
        return w
    }
}
