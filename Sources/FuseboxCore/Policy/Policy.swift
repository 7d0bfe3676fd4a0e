/// A named resilience policy: the patterns a client applies to one kind of
/// outbound call. A section that is nil is not applied.
///
/// Clients apply the sections outermost first: fallback → cache → total
/// timeout → retry → circuit breaker → rate limiter → bulkhead → attempt
/// timeout → operation.
public struct Policy: Sendable, Hashable {
    /// Unique within its registry; 1-128 characters of `[A-Za-z0-9._-]`.
    public var name: String
    /// What the policy is for, for people.
    public var description: String = ""
    /// Key/value labels.
    public var labels: [String: String] = [:]
    /// The fleet-shared circuit breaker.
    public var circuitBreaker: CircuitBreakerPolicy?
    /// Retries.
    public var retry: RetryPolicy?
    /// Time limits.
    public var timeout: TimeoutPolicy?
    /// Concurrency limit.
    public var bulkhead: BulkheadPolicy?
    /// Rate limit.
    public var rateLimit: RateLimitPolicy?
    /// Fallback.
    public var fallback: FallbackPolicy?
    /// Result cache.
    public var cache: CachePolicy?

    /// A policy with no sections.
    public init(name: String) {
        self.name = name
    }
}
