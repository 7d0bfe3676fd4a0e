/// Classes of failures a retry policy may retry.
public enum RetryCondition: String, Sendable, Hashable, CaseIterable {
    /// Connection refused, reset or unreachable; DNS failures.
    case networkError
    /// The attempt timed out.
    case timeout
    /// The server said "too many requests"; its pushback is honoured.
    case rateLimited
    /// The server failed (HTTP 5xx, gRPC UNAVAILABLE / INTERNAL).
    case serverError
    /// Any failure.
    case anyFailure
}

/// Fixed or exponential backoff.
public enum BackoffKind: String, Sendable, Hashable, CaseIterable {
    /// Every delay is `initialMs`.
    case fixed
    /// Delay n is initialMs × multiplier^(n-1), capped at maxMs.
    case exponential
}

/// Randomisation of backoff delays; the cap applies before jitter.
public enum JitterKind: String, Sendable, Hashable, CaseIterable {
    /// The computed delay.
    case none
    /// Uniform in [0, delay].
    case full
    /// delay/2 + uniform in [0, delay/2].
    case equal
    /// Uniform in [initialMs, previous × 3], capped.
    case decorrelated
    /// delay × (1 ± jitterPercent/100), capped (gRPC uses ±20%).
    case proportional
}

/// Delay between attempts.
public struct BackoffPolicy: Sendable, Hashable {
    /// Fixed or exponential. Default exponential.
    public var kind: BackoffKind = .exponential
    /// First delay. Default 100 ms.
    public var initialMs: Int64 = 100
    /// Largest delay, before jitter. Default 10,000 ms.
    public var maxMs: Int64 = 10_000
    /// Growth factor (≥ 1). Default 2.
    public var multiplier: Double = 2

    /// The defaults.
    public init() {}
}

/// A token bucket limiting retries across the calls of a guard (gRPC retryThrottling).
public struct RetryBudgetPolicy: Sendable, Hashable {
    /// Bucket size. Default 10.
    public var maxTokens: Int = 10
    /// Tokens returned per success. Default 0.1.
    public var tokenRatio: Double = 0.1

    /// The defaults.
    public init() {}
}

/// Retries of failed attempts.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included. Default 3.
    public var maxAttempts: Int = 3
    /// Delay between attempts.
    public var backoff: BackoffPolicy = BackoffPolicy()
    /// Randomisation. Default full jitter.
    public var jitter: JitterKind = .full
    /// Spread of proportional jitter, in percent. Default 20.
    public var jitterPercent: Int = 20
    /// Which failures are retried. Default network errors, timeouts and server errors.
    public var retryOn: Set<RetryCondition> = [.networkError, .timeout, .serverError]
    /// Further error codes that are retried.
    public var retryableErrors: Set<String> = []
    /// Error codes never retried.
    public var nonRetryableErrors: Set<String> = []
    /// Honour a server's pushback delay when longer than the backoff. Default true.
    public var honorPushback: Bool = true
    /// Retry throttling across calls; nil for none.
    public var budget: RetryBudgetPolicy?

    /// The defaults.
    public init() {}
}
