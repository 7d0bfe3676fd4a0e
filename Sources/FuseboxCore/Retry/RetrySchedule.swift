/// Why a guarded attempt did not succeed, as retry sees it.
public enum AttemptFailure: Sendable, Hashable {
    /// A resilience pattern refused the call; never retried.
    case rejected(Rejection)
    /// The operation failed: its class (if the client could tell), its error
    /// code (e.g. "http.503"), and the server's pushback delay if it gave one
    /// (negative: the server asks not to retry).
    case failed(condition: RetryCondition?, code: String?, pushbackMs: Int64?)
}

/// A refusal by a resilience pattern.
public enum Rejection: String, Sendable, Hashable, CaseIterable {
    /// The circuit breaker is open (or no half-open permit was granted).
    case circuitOpen
    /// The bulkhead is full.
    case bulkheadFull
    /// The rate limiter refused.
    case rateLimited
}

/// What to do after a failed attempt.
public enum RetryDecision: Sendable, Hashable {
    /// Attempt again after this delay.
    case retry(afterMs: Int64)
    /// Stop and return the failure.
    case giveUp(GiveUpReason)
}

/// Why retrying stops.
public enum GiveUpReason: String, Sendable, Hashable {
    /// The failure is not one the policy retries.
    case notRetryable
    /// A breaker, bulkhead or rate-limit rejection.
    case rejected
    /// `maxAttempts` attempts were made.
    case attemptsExhausted
    /// The retry budget is spent.
    case budgetExhausted
    /// The next attempt would start after the total deadline.
    case deadlineExceeded
    /// The server asked not to retry (negative pushback).
    case serverPushback
}

/// The retry state of one call: which attempt it is at and the last delay.
public struct RetrySchedule: Sendable {
    /// The policy.
    public let policy: RetryPolicy
    /// Attempts made so far.
    public private(set) var attempts = 0
    private var previousDelay: Int64?
    private let backoff: Backoff

    /// The schedule of a new call.
    public init(policy: RetryPolicy) {
        self.policy = policy
        self.backoff = Backoff(policy: policy.backoff, jitter: policy.jitter, jitterPercent: policy.jitterPercent)
    }

    /// Whether `failure` is one the policy retries.
    public func isRetryable(_ failure: AttemptFailure) -> Bool {
        guard case .failed(let condition, let code, _) = failure else { return false }
        if let code, policy.nonRetryableErrors.contains(code) { return false }
        if let code, policy.retryableErrors.contains(code) { return true }
        if policy.retryOn.contains(.anyFailure) { return true }
        return condition.map { policy.retryOn.contains($0) } ?? false
    }

    /// Counts a failed attempt and decides whether and when to try again.
    /// `deadline` is the call's total deadline; `budget` is the guard's shared budget.
    public mutating func afterFailure(
        _ failure: AttemptFailure, at now: Timestamp, deadline: Timestamp?,
        budget: inout RetryBudget, using random: inout some RandomNumberGenerator
    ) -> RetryDecision {
        attempts += 1
        if case .rejected = failure { return .giveUp(.rejected) }
        budget.recordFailure()
        guard isRetryable(failure) else { return .giveUp(.notRetryable) }
        guard attempts < max(policy.maxAttempts, 1) else { return .giveUp(.attemptsExhausted) }
        guard budget.allowsRetry else { return .giveUp(.budgetExhausted) }
        var delay = backoff.delay(retry: attempts, previous: previousDelay, using: &random)
        if policy.honorPushback, case .failed(_, _, let pushback?) = failure {
            guard pushback >= 0 else { return .giveUp(.serverPushback) }
            delay = max(delay, pushback)
        }
        if let deadline, now.adding(milliseconds: delay) >= deadline { return .giveUp(.deadlineExceeded) }
        previousDelay = delay
        return .retry(afterMs: delay)
    }
}
