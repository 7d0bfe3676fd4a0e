/// Delays between retries: exponential (doubling from `initial` up to
/// `maximum`), each drawn uniformly from the upper half of its step, so that
/// clients that failed together do not retry in lockstep, and never zero, so
/// that a retry loop is never tight.
public struct RPCBackoff: Sendable, Hashable {
    /// The first step; at least 1 ms is used.
    public var initial: Duration
    /// The largest step.
    public var maximum: Duration

    /// A backoff from `initial` doubling up to `maximum`.
    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before retry `attempt` (1, 2, …): a draw from
    /// [step/2, step] with step = min(initial × 2^(attempt−1), maximum).
    public func delay(attempt: Int, using random: inout some RandomNumberGenerator) -> Duration {
        let floor = 0.001
        let cap = max(Self.seconds(maximum), floor)
        var step = min(max(Self.seconds(initial), floor), cap)
        for _ in 1..<min(max(attempt, 1), 64) {
            step = min(step * 2, cap)
            if step == cap { break }
        }
        let drawn = Double.random(in: (step / 2)...step, using: &random)
        return .microseconds(Int64(drawn * 1_000_000))
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
