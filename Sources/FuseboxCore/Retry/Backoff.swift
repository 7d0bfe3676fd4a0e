/// Backoff delays with jitter. The cap applies before jitter, and every delay
/// lies in [0, maxMs].
public struct Backoff: Sendable, Hashable {
    /// The backoff shape.
    public var policy: BackoffPolicy
    /// The jitter kind.
    public var jitter: JitterKind
    /// Spread of proportional jitter, in percent.
    public var jitterPercent: Int

    /// A backoff.
    public init(policy: BackoffPolicy, jitter: JitterKind, jitterPercent: Int = 20) {
        self.policy = policy
        self.jitter = jitter
        self.jitterPercent = jitterPercent
    }

    /// The delay before retry `n` (n ≥ 1) without jitter: initialMs for fixed,
    /// initialMs × multiplier^(n-1) for exponential; capped at maxMs.
    public func baseDelay(retry n: Int) -> Int64 {
        let cap = max(policy.maxMs, 0)
        switch policy.kind {
        case .fixed:
            return min(max(policy.initialMs, 0), cap)
        case .exponential:
            let grown = Double(max(policy.initialMs, 0)) * Foundationless.pow(max(policy.multiplier, 1), max(n - 1, 0))
            return grown >= Double(cap) ? cap : Int64(grown)
        }
    }

    /// The delay before retry `n`, with jitter. `previous` is the last delay
    /// returned (decorrelated jitter grows from it).
    public func delay(retry n: Int, previous: Int64?, using random: inout some RandomNumberGenerator) -> Int64 {
        let cap = max(policy.maxMs, 0)
        let d = baseDelay(retry: n)
        switch jitter {
        case .none:
            return d
        case .full:
            return Int64.random(in: 0...d, using: &random)
        case .equal:
            return d / 2 + Int64.random(in: 0...(d - d / 2), using: &random)
        case .decorrelated:
            let low = min(max(policy.initialMs, 0), cap)
            let high = min(max(low, (previous ?? low).multipliedReportingOverflow(by: 3).partialValue), cap)
            return Int64.random(in: low...max(low, high), using: &random)
        case .proportional:
            let p = Double(min(max(jitterPercent, 0), 100)) / 100
            let factor = 1 + Double.random(in: -p...p, using: &random)
            return min(cap, max(0, Int64((Double(d) * factor).rounded())))
        }
    }
}
