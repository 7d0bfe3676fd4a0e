import Testing

@testable import FuseboxCore

@Suite struct PolicyValidatorTests {
    @Test func presetsAreValid() {
        for preset in Presets.all {
            #expect(PolicyValidator.violations(of: preset).isEmpty, "\(preset.name): \(PolicyValidator.violations(of: preset))")
        }
    }

    @Test func reportsEveryProblemAtOnceWithPaths() {
        var policy = Policy(name: "bad name!")
        var retry = RetryPolicy()
        retry.backoff.initialMs = 500
        retry.backoff.maxMs = 100
        retry.maxAttempts = 0
        policy.retry = retry
        var cb = CircuitBreakerPolicy()
        cb.failureRateThreshold = 150
        policy.circuitBreaker = cb
        policy.timeout = TimeoutPolicy(attemptMs: 5_000, totalMs: 1_000)
        policy.fallback = FallbackPolicy(action: .staleCache)
        let found = PolicyValidator.violations(of: policy).map(\.description)
        #expect(found.contains("retry.backoff.maxMs: (100) must be ≥ retry.backoff.initialMs (500)"))
        #expect(found.contains("retry.maxAttempts: (0) must be between 1 and 10"))
        #expect(found.contains("name: (\"bad name!\") must be 1-128 characters of A-Z a-z 0-9 . _ -"))
        #expect(found.contains("circuitBreaker.failureRateThreshold: (150.0) must be a percentage from 0 to 100 (0 disables the rule)"))
        #expect(found.contains("timeout.attemptMs: (5000) must be ≤ timeout.totalMs (1000)"))
        #expect(found.contains("fallback.staleCache: needs a cache section to serve stale values from"))
        #expect(found.count == 6)
    }

    @Test func aBreakerWithoutAnyRuleIsRejected() {
        var policy = Policy(name: "p")
        policy.circuitBreaker = CircuitBreakerPolicy()
        let found = PolicyValidator.violations(of: policy)
        #expect(found.map(\.field) == ["circuitBreaker"])
        #expect(found.first?.message.contains("never open") == true)
    }

    @Test func validateThrowsATypedErrorListingEverything() {
        var policy = Policy(name: "p")
        policy.bulkhead = BulkheadPolicy(maxConcurrent: 0)
        policy.cache = CachePolicy(ttlMs: 0)
        #expect(throws: PolicyValidationError.self) { try PolicyValidator.validate(policy) }
        do {
            try PolicyValidator.validate(policy)
        } catch {
            #expect(error.violations.map(\.field) == ["bulkhead.maxConcurrent", "cache.ttlMs"])
            #expect(error.description.hasPrefix("policy \"p\" is invalid: bulkhead.maxConcurrent: (0)"))
        }
    }

    @Test func presetsCarryTheDesignFigures() throws {
        let api = try #require(Presets.named("api"))
        #expect(api.circuitBreaker?.consecutiveFailuresThreshold == 5)
        #expect(api.circuitBreaker?.openDuration.baseMs == 60_000)
        #expect(api.retry?.maxAttempts == 3 && api.retry?.backoff.kind == .exponential)
        #expect(api.timeout?.attemptMs == 30_000)
        #expect(api.bulkhead == BulkheadPolicy(maxConcurrent: 50, maxQueued: 100))
        let ai = try #require(Presets.named("ai"))
        #expect(ai.circuitBreaker?.consecutiveFailuresThreshold == 3 && ai.circuitBreaker?.openDuration.baseMs == 120_000)
        #expect(ai.retry?.retryOn.contains(.rateLimited) == true && ai.retry?.honorPushback == true)
        #expect(ai.timeout?.attemptMs == 120_000 && ai.bulkhead == BulkheadPolicy(maxConcurrent: 10, maxQueued: 50))
        let db = try #require(Presets.named("database"))
        #expect(db.circuitBreaker?.consecutiveFailuresThreshold == 10 && db.circuitBreaker?.openDuration.baseMs == 30_000)
        #expect(db.bulkhead == BulkheadPolicy(maxConcurrent: 100, maxQueued: 200))
        let external = try #require(Presets.named("external"))
        #expect(external.retry?.retryOn == [.networkError] && external.timeout?.attemptMs == 15_000)
        #expect(external.bulkhead == BulkheadPolicy(maxConcurrent: 20, maxQueued: 50))
        let critical = try #require(Presets.named("critical"))
        #expect(critical.circuitBreaker == nil && critical.retry?.maxAttempts == 5)
        #expect(critical.timeout?.attemptMs == 60_000 && critical.bulkhead == BulkheadPolicy(maxConcurrent: 5, maxQueued: 10))
    }
}
