/// Token-bucket rate limit.
public struct RateLimitPolicy: Sendable, Hashable {
    /// Tokens added per period.
    public var limitPerPeriod: Int
    /// Length of a period. Default 1,000 ms.
    public var periodMs: Int64 = 1_000
    /// Bucket capacity. Default: `limitPerPeriod`.
    public var burst: Int
    /// How long a call may wait for a token. Default 0: reject at once.
    public var maxWaitMs: Int64 = 0

    /// A rate limit.
    public init(limitPerPeriod: Int, periodMs: Int64 = 1_000, burst: Int? = nil, maxWaitMs: Int64 = 0) {
        self.limitPerPeriod = limitPerPeriod
        self.periodMs = periodMs
        self.burst = burst ?? limitPerPeriod
        self.maxWaitMs = maxWaitMs
    }
}
