import FuseboxCore
import FuseboxWire
import Testing

@testable import FuseboxAPI

@Suite struct PolicyMappingTests {
    @Test func presetsRoundTripThroughTheWire() throws {
        for preset in Presets.all {
            let wire = PolicyMapping.wire(preset)
            let bytes = try wire.encode()
            let back = try PolicyMapping.policy(from: Fusebox_V1_Policy(decoding: bytes)).get()
            #expect(back == preset, "\(preset.name)")
        }
    }

    @Test func zeroFieldsTakeTheDocumentedDefaults() throws {
        var wire = Fusebox_V1_Policy()
        wire.name = "p"
        var cb = Fusebox_V1_CircuitBreakerPolicy()
        cb.consecutiveFailuresThreshold = 5
        cb.halfOpen = Fusebox_V1_HalfOpenPolicy()
        cb.halfOpen?.permittedCalls = 3
        wire.circuitBreaker = cb
        wire.retry = Fusebox_V1_RetryPolicy()
        let policy = try PolicyMapping.validatedPolicy(from: wire).get()
        let breaker = try #require(policy.circuitBreaker)
        #expect(breaker.window == WindowShape(kind: .count, size: 100))
        #expect(breaker.minimumCalls == 10 && breaker.minimumClients == 1)
        #expect(breaker.slowCallDurationThresholdMs == 60_000)
        #expect(breaker.openDuration.baseMs == 60_000 && breaker.openDuration.multiplier == 1)
        #expect(breaker.halfOpen.successThreshold == 3, "defaults to permittedCalls")
        #expect(breaker.halfOpen.maxWaitMs == 30_000)
        let retry = try #require(policy.retry)
        #expect(retry.maxAttempts == 3 && retry.backoff.initialMs == 100 && retry.backoff.maxMs == 10_000)
        #expect(retry.jitter == .full && retry.retryOn == [.networkError, .timeout, .serverError])
    }

    @Test func unknownEnumsAndMissingActionsAreViolationsWithProtoPaths() {
        var wire = Fusebox_V1_Policy()
        wire.name = "p"
        var retry = Fusebox_V1_RetryPolicy()
        retry.retryOn = [.networkError, .unrecognized(42)]
        retry.jitter = .unrecognized(9)
        wire.retry = retry
        wire.fallback = Fusebox_V1_FallbackPolicy()
        #expect(Self.fields(PolicyMapping.policy(from: wire)) == ["retry.jitter", "retry.retry_on[1]", "fallback"])
        #expect(Self.fields(PolicyMapping.validatedPolicy(from: wire)) == ["retry.jitter", "retry.retry_on[1]", "fallback"])
    }

    @Test func validationProblemsComeWithProtoPathsAndMessages() {
        var wire = PolicyMapping.wire(Presets.api)
        wire.retry?.backoff?.initialMs = 500
        wire.retry?.backoff?.maxMs = 100
        #expect(Self.violations(PolicyMapping.validatedPolicy(from: wire)) == ["retry.backoff.max_ms: (100) must be ≥ retry.backoff.initial_ms (500)"])
    }

    /// One case per check of PolicyValidator and per problem of the
    /// conversion, each sent as the API receives it: the mutation of a valid
    /// policy that has every section, and the paths that must come back.
    static let cases: [(String, @Sendable (inout Fusebox_V1_Policy) -> Void, [String])] = [
        ("name", { $0.name = "search api" }, ["name"]),
        ("description", { $0.description = String(repeating: "d", count: 1_025) }, ["description"]),
        ("label count", { w in for i in 0..<33 { w.labels["k\(i)"] = "v" } }, ["labels"]),
        ("label key", { $0.labels["bad key"] = "v" }, [#"labels["bad key"]"#]),
        ("label value", { $0.labels["team"] = String(repeating: "v", count: 257) }, [#"labels["team"]"#]),
        ("label key with a quote", { $0.labels[#"a"b"#] = "v" }, [#"labels["a\"b"]"#]),
        ("failure rate", { $0.circuitBreaker?.failureRateThresholdPercent = 101 }, ["circuit_breaker.failure_rate_threshold_percent"]),
        ("slow call rate", { $0.circuitBreaker?.slowCallRateThresholdPercent = .nan }, ["circuit_breaker.slow_call_rate_threshold_percent"]),
        ("no trip rule", { w in
            w.circuitBreaker?.failureRateThresholdPercent = 0
            w.circuitBreaker?.slowCallRateThresholdPercent = 0
            w.circuitBreaker?.consecutiveFailuresThreshold = 0
        }, ["circuit_breaker"]),
        ("slow call duration", { $0.circuitBreaker?.slowCallDurationThresholdMs = 86_400_001 }, ["circuit_breaker.slow_call_duration_threshold_ms"]),
        ("minimum calls", { $0.circuitBreaker?.minimumCalls = 1_000_001 }, ["circuit_breaker.minimum_calls"]),
        ("consecutive failures", { $0.circuitBreaker?.consecutiveFailuresThreshold = 1_000_001 }, ["circuit_breaker.consecutive_failures_threshold"]),
        ("minimum clients", { $0.circuitBreaker?.minimumClients = 10_001 }, ["circuit_breaker.minimum_clients"]),
        ("window size", { $0.circuitBreaker?.window?.size = 100_001 }, ["circuit_breaker.window.size"]),
        ("window buckets", { w in
            w.circuitBreaker?.window?.size = 100
            w.circuitBreaker?.window?.buckets = 101
        }, ["circuit_breaker.window.buckets"]),
        ("window type", { w in
            // Valid for a time window, not for a count window: the unknown type
            // is reported, not checks against the count window it defaults to.
            w.circuitBreaker?.window?.type = .unrecognized(7)
            w.circuitBreaker?.window?.size = 50
            w.circuitBreaker?.window?.buckets = 400
        }, ["circuit_breaker.window.type"]),
        ("open duration base", { w in
            w.circuitBreaker?.openDuration?.baseMs = 86_400_001
            w.circuitBreaker?.openDuration?.maxMs = 86_400_000
        }, ["circuit_breaker.open_duration.base_ms", "circuit_breaker.open_duration.max_ms"]),
        ("open duration multiplier", { $0.circuitBreaker?.openDuration?.multiplier = 101 }, ["circuit_breaker.open_duration.multiplier"]),
        ("open duration max", { $0.circuitBreaker?.openDuration?.maxMs = 86_400_001 }, ["circuit_breaker.open_duration.max_ms"]),
        ("open duration jitter", { $0.circuitBreaker?.openDuration?.jitterPercent = 101 }, ["circuit_breaker.open_duration.jitter_percent"]),
        ("permitted calls", { $0.circuitBreaker?.halfOpen?.permittedCalls = 1_001 }, ["circuit_breaker.half_open.permitted_calls"]),
        ("half-open wait", { $0.circuitBreaker?.halfOpen?.maxWaitMs = 86_400_001 }, ["circuit_breaker.half_open.max_wait_ms"]),
        ("success threshold", { $0.circuitBreaker?.halfOpen?.successThreshold = 1_000_001 }, ["circuit_breaker.half_open.success_threshold"]),
        ("ignored error", { $0.circuitBreaker?.ignoredErrors = ["http.404", ""] }, ["circuit_breaker.ignored_errors"]),
        ("max attempts", { $0.retry?.maxAttempts = 11 }, ["retry.max_attempts"]),
        ("backoff type", { $0.retry?.backoff?.type = .unrecognized(5) }, ["retry.backoff.type"]),
        ("backoff initial", { w in
            w.retry?.backoff?.initialMs = 86_400_001
            w.retry?.backoff?.maxMs = 86_400_001
        }, ["retry.backoff.initial_ms", "retry.backoff.max_ms"]),
        ("backoff max below initial", { w in
            w.retry?.backoff?.initialMs = 500
            w.retry?.backoff?.maxMs = 100
        }, ["retry.backoff.max_ms"]),
        ("backoff multiplier", { $0.retry?.backoff?.multiplier = 0.5 }, ["retry.backoff.multiplier"]),
        ("jitter", { $0.retry?.jitter = .unrecognized(17) }, ["retry.jitter"]),
        ("jitter percent", { $0.retry?.jitterPercent = 101 }, ["retry.jitter_percent"]),
        ("retry condition", { $0.retry?.retryOn = [.timeout, .serverError, .unspecified] }, ["retry.retry_on[2]"]),
        ("code in both lists", { w in
            w.retry?.retryableErrors = ["http.503"]
            w.retry?.nonRetryableErrors = ["http.503"]
        }, ["retry.non_retryable_errors"]),
        ("budget tokens", { $0.retry?.budget?.maxTokens = 1_001 }, ["retry.budget.max_tokens"]),
        ("budget ratio", { $0.retry?.budget?.tokenRatio = 1.5 }, ["retry.budget.token_ratio"]),
        ("empty timeout", { $0.timeout = Fusebox_V1_TimeoutPolicy() }, ["timeout"]),
        ("attempt timeout", { w in
            w.timeout?.attemptMs = 86_400_001
            w.timeout?.totalMs = 0
        }, ["timeout.attempt_ms"]),
        ("total timeout", { $0.timeout?.totalMs = 86_400_001 }, ["timeout.total_ms"]),
        ("attempt above total", { w in
            w.timeout?.attemptMs = 2_000
            w.timeout?.totalMs = 1_000
        }, ["timeout.attempt_ms"]),
        ("max concurrent", { $0.bulkhead?.maxConcurrent = 0 }, ["bulkhead.max_concurrent"]),
        ("max queued", { $0.bulkhead?.maxQueued = 1_000_001 }, ["bulkhead.max_queued"]),
        ("bulkhead wait", { $0.bulkhead?.maxWaitMs = 86_400_001 }, ["bulkhead.max_wait_ms"]),
        ("limit per period", { $0.rateLimit?.limitPerPeriod = 0 }, ["rate_limit.limit_per_period"]),
        ("burst", { $0.rateLimit?.burst = 1_000_000_001 }, ["rate_limit.burst"]),
        ("period", { $0.rateLimit?.periodMs = 86_400_001 }, ["rate_limit.period_ms"]),
        ("rate-limit wait", { $0.rateLimit?.maxWaitMs = 86_400_001 }, ["rate_limit.max_wait_ms"]),
        ("fallback trigger", { $0.fallback?.on = [.timeout, .unrecognized(9)] }, ["fallback.on[1]"]),
        ("fallback without action", { $0.fallback?.action = nil }, ["fallback"]),
        ("static body", { w in
            var s = Fusebox_V1_StaticResponse()
            s.contentType = "application/json"
            s.body = Array(repeating: 0x20, count: 65_537)
            w.fallback?.action = .staticResponse(s)
        }, ["fallback.static_response.body"]),
        ("static content type", { w in
            var s = Fusebox_V1_StaticResponse()
            s.contentType = String(repeating: "t", count: 257)
            w.fallback?.action = .staticResponse(s)
        }, ["fallback.static_response.content_type"]),
        ("stale cache without cache", { w in
            w.cache = nil
            w.fallback?.action = .staleCache(true)
        }, ["fallback.stale_cache"]),
        ("handler", { $0.fallback?.action = .handler("") }, ["fallback.handler"]),
        ("ttl", { $0.cache?.ttlMs = 0 }, ["cache.ttl_ms"]),
        ("max entries", { $0.cache?.maxEntries = 1_000_001 }, ["cache.max_entries"]),
        ("stale while revalidate", { $0.cache?.staleWhileRevalidateMs = 86_400_001 }, ["cache.stale_while_revalidate_ms"]),
    ]

    /// A valid policy with every section and every list filled.
    static var everySection: Fusebox_V1_Policy {
        var p = Presets.api
        p.name = "everything"
        p.labels = ["team": "payments"]
        p.circuitBreaker?.ignoredErrors = ["http.404"]
        p.retry?.retryableErrors = ["http.429"]
        p.retry?.nonRetryableErrors = ["http.400"]
        p.timeout = TimeoutPolicy(attemptMs: 500, totalMs: 2_000)
        p.bulkhead = BulkheadPolicy(maxConcurrent: 10)
        p.rateLimit = RateLimitPolicy(limitPerPeriod: 100, periodMs: 1_000, burst: 20, maxWaitMs: 50)
        p.cache = CachePolicy(ttlMs: 30_000)
        p.fallback = FallbackPolicy(triggers: [.timeout], action: .handler("empty"))
        var w = PolicyMapping.wire(p)
        w.circuitBreaker?.window?.buckets = 10
        return w
    }

    @Test func everyKindOfViolationNamesItsProtoPath() {
        #expect(Self.fields(PolicyMapping.validatedPolicy(from: Self.everySection)) == [])
        for (name, mutate, expected) in Self.cases {
            var wire = Self.everySection
            mutate(&wire)
            #expect(Self.fields(PolicyMapping.validatedPolicy(from: wire)) == expected, "\(name)")
        }
    }

    @Test func everyProblemAtOnceInRequestOrder() {
        var wire = Self.everySection
        // Mistakes in several sections, conversion and validation mixed.
        wire.cache?.ttlMs = 0
        wire.fallback?.on = [.unrecognized(9)]
        wire.rateLimit?.limitPerPeriod = 0
        wire.retry?.backoff?.multiplier = 0.5
        wire.retry?.jitter = .unrecognized(17)
        wire.circuitBreaker?.halfOpen?.permittedCalls = 1_001
        wire.circuitBreaker?.window?.size = 100_001
        wire.labels["bad key"] = "v"
        wire.name = ""
        #expect(Self.fields(PolicyMapping.validatedPolicy(from: wire)) == [
            "name", #"labels["bad key"]"#, "circuit_breaker.window.size", "circuit_breaker.half_open.permitted_calls",
            "retry.backoff.multiplier", "retry.jitter", "rate_limit.limit_per_period", "fallback.on[0]", "cache.ttl_ms",
        ])
    }

    @Test func messagesNameOtherFieldsByTheirProtoPaths() {
        func message(_ mutate: (inout Fusebox_V1_Policy) -> Void) -> [String] {
            var wire = Self.everySection
            mutate(&wire)
            return Self.violations(PolicyMapping.validatedPolicy(from: wire))
        }
        #expect(message { w in
            w.circuitBreaker?.openDuration?.baseMs = 2_000
            w.circuitBreaker?.openDuration?.maxMs = 1_000
        } == ["circuit_breaker.open_duration.max_ms: (1000) must be ≥ circuit_breaker.open_duration.base_ms (2000)"])
        #expect(message { w in
            w.circuitBreaker?.failureRateThresholdPercent = 0
            w.circuitBreaker?.slowCallRateThresholdPercent = 0
            w.circuitBreaker?.consecutiveFailuresThreshold = 0
        } == [
            "circuit_breaker: no trip rule is enabled, so the breaker would never open; set failure_rate_threshold_percent, "
                + "slow_call_rate_threshold_percent or consecutive_failures_threshold"
        ])
        #expect(message { $0.timeout = Fusebox_V1_TimeoutPolicy() } == ["timeout: sets neither attempt_ms nor total_ms; remove the section or set one"])
        #expect(message { w in
            w.timeout?.attemptMs = 2_000
            w.timeout?.totalMs = 1_000
        } == ["timeout.attempt_ms: (2000) must be ≤ timeout.total_ms (1000)"])
        #expect(message { w in
            w.retry?.retryableErrors = ["timeout"]
            w.retry?.nonRetryableErrors = ["timeout"]
        } == [#"retry.non_retryable_errors: ["timeout"] also appear in retry.retryable_errors; list each code in one of them"#])
        #expect(message { $0.name = "circuitBreaker" } == [], "a valid name")
        #expect(message { $0.name = "rateLimit maxWaitMs" } == [#"name: ("rateLimit maxWaitMs") must be 1-128 characters of A-Z a-z 0-9 . _ -"#])
        #expect(message { $0.fallback?.action = nil } == ["fallback: sets no action; set one of static_response, stale_cache or handler"])
    }

    @Test func aBurstOfZeroIsTheLimitAndNeverAProblemOfItsOwn() throws {
        var wire = Self.everySection
        wire.rateLimit?.burst = 0
        wire.rateLimit?.limitPerPeriod = 250
        #expect(try PolicyMapping.validatedPolicy(from: wire).get().rateLimit?.burst == 250)
        for limit: UInt32 in [0, 1_000_000_001, .max] {
            wire.rateLimit?.limitPerPeriod = limit
            #expect(Self.fields(PolicyMapping.validatedPolicy(from: wire)) == ["rate_limit.limit_per_period"], "limit \(limit)")
        }
        // A burst that is set is checked on its own.
        wire.rateLimit?.limitPerPeriod = 0
        wire.rateLimit?.burst = 1_000_000_001
        #expect(Self.fields(PolicyMapping.validatedPolicy(from: wire)) == ["rate_limit.limit_per_period", "rate_limit.burst"])
    }

    @Test func aPolicyWithEverySectionRoundTripsUnchanged() throws {
        let policy = try PolicyMapping.validatedPolicy(from: Self.everySection).get()
        let back = try PolicyMapping.validatedPolicy(from: Fusebox_V1_Policy(decoding: PolicyMapping.wire(policy).encode())).get()
        #expect(back == policy)
    }

    @Test func putPolicyPathsGoUnderPolicy() {
        let error = PolicyValidationError(policy: "p", violations: [
            PolicyViolation(field: "retry.backoff.max_ms", message: "m"), PolicyViolation(field: "", message: "whole"),
        ])
        #expect(PolicyMapping.fieldViolations(error, under: "policy").map(\.field) == ["policy.retry.backoff.max_ms", "policy"])
        #expect(PolicyMapping.fieldViolations(error).map(\.field) == ["retry.backoff.max_ms", ""])
        #expect(PolicyMapping.fieldViolations(error).map(\.description) == ["m", "whole"])
    }

    static func fields(_ result: Result<Policy, PolicyValidationError>) -> [String] {
        guard case .failure(let error) = result else { return [] }
        return error.violations.map(\.field)
    }

    static func violations(_ result: Result<Policy, PolicyValidationError>) -> [String] {
        guard case .failure(let error) = result else { return [] }
        return error.violations.map(\.description)
    }
}
