/// A token bucket: `limitPerPeriod` tokens per `periodMs`, holding at most
/// `burst`. A call that finds no token may reserve the next one if it would
/// arrive within `maxWaitMs`.
public struct TokenBucket: Sendable, Hashable {
    /// The answer to `acquire`.
    public enum Decision: Sendable, Hashable {
        /// Run now.
        case granted
        /// Run after this delay; the token is reserved.
        case delayed(ms: Int64)
        /// Refused; a token would be there after `retryAfterMs`.
        case rejected(retryAfterMs: Int64)
    }

    /// The policy.
    public private(set) var policy: RateLimitPolicy
    /// Tokens now (negative while tokens are reserved ahead).
    public private(set) var tokens: Double
    private var refilledAt: Timestamp

    /// A full bucket at `now`.
    public init(policy: RateLimitPolicy, at now: Timestamp) {
        self.policy = policy
        self.tokens = Double(policy.burst)
        self.refilledAt = now
    }

    private var tokensPerMs: Double {
        Double(max(policy.limitPerPeriod, 1)) / Double(max(policy.periodMs, 1))
    }

    /// Takes one token if it can.
    public mutating func acquire(at now: Timestamp) -> Decision {
        refill(to: now)
        if tokens >= 1 {
            tokens -= 1
            return .granted
        }
        let wait = Int64(((1 - tokens) / tokensPerMs).rounded(.up))
        guard wait <= policy.maxWaitMs else { return .rejected(retryAfterMs: wait) }
        tokens -= 1
        return .delayed(ms: wait)
    }

    /// Adopts a changed policy, keeping the tokens (capped at the new burst).
    public mutating func updatePolicy(_ newPolicy: RateLimitPolicy, at now: Timestamp) {
        refill(to: now)
        policy = newPolicy
        tokens = min(tokens, Double(newPolicy.burst))
    }

    private mutating func refill(to now: Timestamp) {
        let elapsed = now.milliseconds(since: refilledAt)
        guard elapsed > 0 else { return }
        tokens = min(Double(max(policy.burst, 1)), tokens + Double(elapsed) * tokensPerMs)
        refilledAt = now
    }
}
