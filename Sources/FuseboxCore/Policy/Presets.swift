/// The policies loaded into registry `default` on a server's first start,
/// and the SDK's last resort when it has neither the server nor a cache.
///
/// | preset | breaker | retry | attempt timeout | bulkhead |
/// |---|---|---|---|---|
/// | api | 5 consecutive failures, 60 s open | exponential, 3 attempts | 30 s | 50 concurrent, 100 queued |
/// | ai | 3 consecutive failures, 120 s open | rate-limit aware, 3 attempts | 120 s | 10 concurrent, 50 queued |
/// | database | 10 consecutive failures, 30 s open | exponential, 3 attempts | 30 s | 100 concurrent, 200 queued |
/// | external | 5 consecutive failures, 60 s open | network errors, 3 attempts | 15 s | 20 concurrent, 50 queued |
/// | critical | none | exponential, 5 attempts | 60 s | 5 concurrent, 10 queued |
public enum Presets {
    /// All presets, sorted by name.
    public static var all: [Policy] { [ai, api, critical, database, external] }

    /// The preset called `name`, if any.
    public static func named(_ name: String) -> Policy? {
        all.first { $0.name == name }
    }

    /// Internal HTTP/gRPC APIs.
    public static var api: Policy {
        make("api", "Internal APIs: trip after 5 consecutive failures for 60 s; 3 attempts with exponential backoff.",
             breaker: breaker(failures: 5, openMs: 60_000), retry: retry(attempts: 3, on: [.networkError, .timeout, .serverError]),
             timeoutMs: 30_000, bulkhead: BulkheadPolicy(maxConcurrent: 50, maxQueued: 100))
    }

    /// AI model providers: slow, rate-limited.
    public static var ai: Policy {
        var retry = retry(attempts: 3, on: [.rateLimited, .serverError, .timeout])
        retry.backoff.initialMs = 1_000
        retry.backoff.maxMs = 30_000
        return make("ai", "AI providers: rate-limit aware retries honouring Retry-After; trip after 3 consecutive failures for 120 s.",
                    breaker: breaker(failures: 3, openMs: 120_000), retry: retry,
                    timeoutMs: 120_000, bulkhead: BulkheadPolicy(maxConcurrent: 10, maxQueued: 50))
    }

    /// Databases.
    public static var database: Policy {
        make("database", "Databases: trip after 10 consecutive failures for 30 s; 3 attempts with exponential backoff.",
             breaker: breaker(failures: 10, openMs: 30_000), retry: retry(attempts: 3, on: [.networkError, .timeout, .serverError]),
             timeoutMs: 30_000, bulkhead: BulkheadPolicy(maxConcurrent: 100, maxQueued: 200))
    }

    /// Third-party services over the internet.
    public static var external: Policy {
        make("external", "Third-party services: retry network errors only; trip after 5 consecutive failures for 60 s.",
             breaker: breaker(failures: 5, openMs: 60_000), retry: retry(attempts: 3, on: [.networkError]),
             timeoutMs: 15_000, bulkhead: BulkheadPolicy(maxConcurrent: 20, maxQueued: 50))
    }

    /// Calls that must be attempted whatever the recent failures: no breaker.
    public static var critical: Policy {
        make("critical", "Must-try calls: no breaker; 5 attempts with exponential backoff; tight concurrency.",
             breaker: nil, retry: retry(attempts: 5, on: [.networkError, .timeout, .serverError]),
             timeoutMs: 60_000, bulkhead: BulkheadPolicy(maxConcurrent: 5, maxQueued: 10))
    }

    private static func make(
        _ name: String, _ description: String, breaker: CircuitBreakerPolicy?, retry: RetryPolicy,
        timeoutMs: Int64, bulkhead: BulkheadPolicy
    ) -> Policy {
        var policy = Policy(name: name)
        policy.description = description
        policy.labels = ["fusebox.dev/preset": name]
        policy.circuitBreaker = breaker
        policy.retry = retry
        policy.timeout = TimeoutPolicy(attemptMs: timeoutMs)
        policy.bulkhead = bulkhead
        return policy
    }

    private static func breaker(failures: Int, openMs: Int64) -> CircuitBreakerPolicy {
        var cb = CircuitBreakerPolicy()
        cb.consecutiveFailuresThreshold = failures
        cb.openDuration.baseMs = openMs
        // Breakers of many services must not half-open in lockstep.
        cb.openDuration.jitterPercent = 10
        return cb
    }

    private static func retry(attempts: Int, on conditions: Set<RetryCondition>) -> RetryPolicy {
        var retry = RetryPolicy()
        retry.maxAttempts = attempts
        retry.retryOn = conditions
        retry.budget = RetryBudgetPolicy()
        return retry
    }
}
