@testable import FuseboxCore

/// A clock the test moves by hand; nothing sleeps.
struct ManualClock {
    private(set) var now = Timestamp(milliseconds: 1_000_000)

    mutating func advance(by ms: Int64) -> Timestamp {
        now = now.adding(milliseconds: ms)
        return now
    }
}

extension CircuitBreakerPolicy {
    /// A breaker tripping at 50% failures over at least 10 calls, 10 s open, 2 permits.
    static func testing(
        failureRate: Double = 50, minimumCalls: Int = 10, consecutive: Int = 0,
        minimumClients: Int = 1, openMs: Int64 = 10_000, permits: Int = 2, successThreshold: Int = 2,
        maxWaitMs: Int64 = 5_000
    ) -> CircuitBreakerPolicy {
        var policy = CircuitBreakerPolicy()
        policy.failureRateThreshold = failureRate
        policy.minimumCalls = minimumCalls
        policy.consecutiveFailuresThreshold = consecutive
        policy.minimumClients = minimumClients
        policy.openDuration.baseMs = openMs
        policy.halfOpen.permittedCalls = permits
        policy.halfOpen.successThreshold = successThreshold
        policy.halfOpen.maxWaitMs = maxWaitMs
        return policy
    }
}

func counts(success: UInt64 = 0, failure: UInt64 = 0, slow: UInt64 = 0, ignored: UInt64 = 0) -> OutcomeCounts {
    OutcomeCounts(success: success, failure: failure, slowSuccess: slow, ignored: ignored)
}
