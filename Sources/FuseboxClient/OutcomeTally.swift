public import FuseboxCore
import Synchronization

/// Outcomes of one breaker counted in memory between reports: atomic
/// increments on the call path, drained by the reporter (DESIGN: batches every
/// 100 ms or 1,000 outcomes).
///
/// A tally belongs to one generation. An outcome recorded under another
/// generation (a call that started before a transition and ended after it)
/// is dropped: the server would not count it toward the new state anyway.
public final class OutcomeTally: Sendable {
    private let generation: Atomic<UInt64>
    private let success = Atomic<UInt64>(0)
    private let failure = Atomic<UInt64>(0)
    private let slowSuccess = Atomic<UInt64>(0)
    private let slowFailure = Atomic<UInt64>(0)
    private let ignored = Atomic<UInt64>(0)
    private let trailingFailures = Atomic<UInt64>(0)
    private let dropped = Atomic<UInt64>(0)

    /// An empty tally for `generation`.
    public init(generation: BreakerGeneration = BreakerGeneration(0)) {
        self.generation = Atomic(generation.value)
    }

    /// Counts one outcome recorded under `generation`. Returns the number of
    /// outcomes counted since the last drain, so the caller can report early
    /// when a batch is full.
    @inline(__always)
    @discardableResult
    public func record(_ outcome: Outcome, generation g: BreakerGeneration) -> UInt64 {
        guard g.value == generation.load(ordering: .relaxed) else {
            dropped.add(1, ordering: .relaxed)
            return 0
        }
        switch outcome {
        case .success:
            trailingFailures.store(0, ordering: .relaxed)
            return success.add(1, ordering: .relaxed).newValue
        case .slowSuccess:
            trailingFailures.store(0, ordering: .relaxed)
            return slowSuccess.add(1, ordering: .relaxed).newValue
        case .failure:
            trailingFailures.add(1, ordering: .relaxed)
            return failure.add(1, ordering: .relaxed).newValue
        case .slowFailure:
            trailingFailures.add(1, ordering: .relaxed)
            return slowFailure.add(1, ordering: .relaxed).newValue
        case .ignored:
            return ignored.add(1, ordering: .relaxed).newValue
        }
    }

    /// What was counted since the last drain, and resets the counts. The
    /// run of trailing failures continues across drains (it ends only with a success).
    public func drain() -> (generation: BreakerGeneration, counts: OutcomeCounts, trailingConsecutiveFailures: UInt64) {
        let counts = OutcomeCounts(
            success: success.exchange(0, ordering: .relaxed), failure: failure.exchange(0, ordering: .relaxed),
            slowSuccess: slowSuccess.exchange(0, ordering: .relaxed), slowFailure: slowFailure.exchange(0, ordering: .relaxed),
            ignored: ignored.exchange(0, ordering: .relaxed))
        return (BreakerGeneration(generation.load(ordering: .relaxed)), counts, trailingFailures.load(ordering: .relaxed))
    }

    /// Starts counting for a new generation (after a transition), discarding
    /// what was counted under the old one and the run of failures.
    public func rotate(to newGeneration: BreakerGeneration) {
        generation.store(newGeneration.value, ordering: .relaxed)
        _ = drain()
        trailingFailures.store(0, ordering: .relaxed)
    }

    /// Outcomes dropped because they belonged to another generation.
    public var droppedOutcomes: UInt64 { dropped.load(ordering: .relaxed) }
}
