/// Time limits of a guarded call.
public struct TimeoutPolicy: Sendable, Hashable {
    /// Limit of one attempt (the operation only); nil for none.
    public var attemptMs: Int64?
    /// Limit of the whole call, retries and backoff included; nil for none.
    public var totalMs: Int64?

    /// Limits.
    public init(attemptMs: Int64? = nil, totalMs: Int64? = nil) {
        self.attemptMs = attemptMs
        self.totalMs = totalMs
    }

    /// The call's deadline if it starts at `start`.
    public func totalDeadline(startingAt start: Timestamp) -> Timestamp? {
        totalMs.map { start.adding(milliseconds: $0) }
    }

    /// The deadline of an attempt starting at `now`: the attempt limit, but
    /// never past the call's deadline.
    public func attemptDeadline(startingAt now: Timestamp, callDeadline: Timestamp?) -> Timestamp? {
        let own = attemptMs.map { now.adding(milliseconds: $0) }
        switch (own, callDeadline) {
        case (let a?, let b?): return min(a, b)
        case (let a?, nil): return a
        case (nil, let b): return b
        }
    }
}
