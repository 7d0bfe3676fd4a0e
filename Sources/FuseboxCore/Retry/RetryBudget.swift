/// Retry throttling shared by the calls of one guard, like gRPC's
/// retryThrottling: each failure takes a token, each success returns
/// `tokenRatio`; retries are allowed only while more than half the tokens remain.
public struct RetryBudget: Sendable, Hashable {
    /// The bucket's policy; nil means unlimited.
    public let policy: RetryBudgetPolicy?
    /// Tokens now.
    public private(set) var tokens: Double

    /// A full bucket, or an unlimited budget for nil.
    public init(policy: RetryBudgetPolicy?) {
        self.policy = policy
        self.tokens = Double(policy?.maxTokens ?? 0)
    }

    /// Whether a retry may be attempted now.
    public var allowsRetry: Bool {
        guard let policy else { return true }
        return tokens > Double(policy.maxTokens) / 2
    }

    /// An attempt failed.
    public mutating func recordFailure() {
        guard policy != nil else { return }
        tokens = max(0, tokens - 1)
    }

    /// An attempt succeeded.
    public mutating func recordSuccess() {
        guard let policy else { return }
        tokens = min(Double(policy.maxTokens), tokens + policy.tokenRatio)
    }
}
