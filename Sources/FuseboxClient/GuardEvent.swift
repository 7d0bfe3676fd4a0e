public import FuseboxCore

/// Something a guard did, for `FuseboxConfiguration.onEvent`. Events are
/// made only when a handler is set: with none, guards pay one nil check.
public struct GuardEvent: Sendable {
    /// What happened.
    public enum Kind: Sendable {
        /// The breaker changed state (the fleet's, or this client's alone).
        case stateChanged(BreakerStateChange)
        /// An attempt failed and another follows after `delay`; `attempt`
        /// is the number of the attempt that failed (1 for the first).
        case retry(attempt: Int, delay: Duration, error: String)
        /// A call was refused without running: the breaker, the bulkhead or
        /// the rate limiter.
        case rejected(GuardError.Kind)
        /// An attempt, or the whole call, ran out of time.
        case timeout(TimeoutKind)
        /// An attempt ran: its outcome as the breaker counts it, and how long it took.
        case call(outcome: Outcome, latency: Duration)
    }

    /// Which timeout expired.
    public enum TimeoutKind: String, Sendable, Hashable {
        /// The policy's `timeout.attemptMs`.
        case attempt
        /// The policy's `timeout.totalMs`.
        case total
    }

    /// The guard's registry.
    public var registry: String
    /// The guard (and breaker) name.
    public var guardName: String
    /// What happened.
    public var kind: Kind
}
