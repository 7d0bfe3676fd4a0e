/// The result of one guarded attempt, as the breaker counts it.
public enum Outcome: Sendable, Hashable, CaseIterable {
    /// Succeeded within the slow-call threshold.
    case success
    /// Failed within the slow-call threshold.
    case failure
    /// Succeeded, but took strictly longer than the slow-call threshold.
    case slowSuccess
    /// Failed, and took strictly longer than the slow-call threshold.
    case slowFailure
    /// Cancelled, or an error the policy ignores: neither success nor failure.
    case ignored

    /// Classifies an attempt. Only the attempt is timed, not queueing; slow
    /// means strictly above `slowThresholdMs`.
    public static func classify(
        failed: Bool, attemptMilliseconds: Int64, slowThresholdMs: Int64
    ) -> Outcome {
        let slow = attemptMilliseconds > slowThresholdMs
        switch (failed, slow) {
        case (false, false): return .success
        case (true, false): return .failure
        case (false, true): return .slowSuccess
        case (true, true): return .slowFailure
        }
    }

    /// Failure or slow failure.
    public var isFailure: Bool { self == .failure || self == .slowFailure }
    /// Success or slow success.
    public var isSuccess: Bool { self == .success || self == .slowSuccess }
}

/// Counts of outcomes.
public struct OutcomeCounts: Sendable, Hashable {
    /// `.success` count.
    public var success: UInt64 = 0
    /// `.failure` count.
    public var failure: UInt64 = 0
    /// `.slowSuccess` count.
    public var slowSuccess: UInt64 = 0
    /// `.slowFailure` count.
    public var slowFailure: UInt64 = 0
    /// `.ignored` count.
    public var ignored: UInt64 = 0

    /// All zero.
    public init() {}

    /// Counts with the given values.
    public init(success: UInt64 = 0, failure: UInt64 = 0, slowSuccess: UInt64 = 0, slowFailure: UInt64 = 0, ignored: UInt64 = 0) {
        self.success = success
        self.failure = failure
        self.slowSuccess = slowSuccess
        self.slowFailure = slowFailure
        self.ignored = ignored
    }

    /// Calls that count toward rates: everything but `.ignored`.
    public var calls: UInt64 { success &+ failure &+ slowSuccess &+ slowFailure }
    /// `.failure` and `.slowFailure`.
    public var failures: UInt64 { failure &+ slowFailure }
    /// `.slowSuccess` and `.slowFailure`.
    public var slowCalls: UInt64 { slowSuccess &+ slowFailure }
    /// True when nothing is counted.
    public var isEmpty: Bool { calls == 0 && ignored == 0 }

    /// Adds one outcome.
    public mutating func add(_ outcome: Outcome, count: UInt64 = 1) {
        switch outcome {
        case .success: success &+= count
        case .failure: failure &+= count
        case .slowSuccess: slowSuccess &+= count
        case .slowFailure: slowFailure &+= count
        case .ignored: ignored &+= count
        }
    }

    /// Adds all of `other`.
    public mutating func add(_ other: OutcomeCounts) {
        success &+= other.success
        failure &+= other.failure
        slowSuccess &+= other.slowSuccess
        slowFailure &+= other.slowFailure
        ignored &+= other.ignored
    }

    /// Removes all of `other` (which must have been added before).
    public mutating func subtract(_ other: OutcomeCounts) {
        success &-= other.success
        failure &-= other.failure
        slowSuccess &-= other.slowSuccess
        slowFailure &-= other.slowFailure
        ignored &-= other.ignored
    }

    /// The count of one outcome.
    public subscript(outcome: Outcome) -> UInt64 {
        switch outcome {
        case .success: return success
        case .failure: return failure
        case .slowSuccess: return slowSuccess
        case .slowFailure: return slowFailure
        case .ignored: return ignored
        }
    }
}
