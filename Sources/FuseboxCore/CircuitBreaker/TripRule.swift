/// The trip rules of DESIGN §Breaker semantics, as a pure function of a window
/// snapshot and the run of consecutive failures.
public enum TripRule {
    /// Why the rules say a breaker should open.
    public struct Verdict: Sendable, Hashable {
        /// A sentence for people, e.g. "failure rate 62% ≥ 50% over 40 calls from 7 clients".
        public var reason: String
        /// Whether enough distinct clients failed for a fleet-wide trip.
        public var quorumMet: Bool
    }

    /// The verdict, or nil when no rule fires.
    ///
    /// Rules, in order: consecutive failures ≥ threshold; then, with at least
    /// `minimumCalls` calls in the window, failure rate ≥ threshold and slow-call
    /// rate ≥ threshold. A threshold of 0 disables its rule. The quorum needs
    /// `minimumClients` distinct reporters with failures (with slow calls, for the
    /// slow-call rule); a window without client identities (a local breaker)
    /// counts as one client.
    public static func evaluate(
        _ snapshot: WindowSnapshot, consecutiveFailures: Int, policy: CircuitBreakerPolicy
    ) -> Verdict? {
        // Nothing is formatted unless a rule fires: this runs on every recorded outcome.
        if policy.consecutiveFailuresThreshold > 0, consecutiveFailures >= policy.consecutiveFailuresThreshold {
            return verdict(
                "\(consecutiveFailures) consecutive failures ≥ \(policy.consecutiveFailuresThreshold)\(from(snapshot))",
                affected: failingClients(snapshot), "failing", policy)
        }
        let calls = snapshot.counts.calls
        guard calls >= UInt64(max(policy.minimumCalls, 1)) else { return nil }
        if policy.failureRateThreshold > 0, snapshot.failureRate >= policy.failureRateThreshold {
            let rate = Foundationless.percent(snapshot.failureRate)
            let threshold = Foundationless.percent(policy.failureRateThreshold)
            return verdict(
                "failure rate \(rate)% ≥ \(threshold)% over \(calls) calls\(from(snapshot))",
                affected: failingClients(snapshot), "failing", policy)
        }
        if policy.slowCallRateThreshold > 0, snapshot.slowCallRate >= policy.slowCallRateThreshold {
            let rate = Foundationless.percent(snapshot.slowCallRate)
            let threshold = Foundationless.percent(policy.slowCallRateThreshold)
            let slow = snapshot.clients == 0 ? (snapshot.counts.slowCalls > 0 ? 1 : 0) : snapshot.slowClients
            return verdict(
                "slow-call rate \(rate)% ≥ \(threshold)% over \(calls) calls\(from(snapshot))",
                affected: slow, "slow", policy)
        }
        return nil
    }

    private static func failingClients(_ snapshot: WindowSnapshot) -> Int {
        snapshot.clients == 0 ? (snapshot.counts.failures > 0 ? 1 : 0) : snapshot.failingClients
    }

    private static func from(_ snapshot: WindowSnapshot) -> String {
        snapshot.clients == 0 ? "" : " from \(snapshot.clients) client\(snapshot.clients == 1 ? "" : "s")"
    }

    private static func verdict(_ reason: String, affected: Int, _ what: String, _ policy: CircuitBreakerPolicy) -> Verdict {
        let required = max(policy.minimumClients, 1)
        return affected >= required
            ? Verdict(reason: reason, quorumMet: true)
            : Verdict(reason: reason + "; only \(affected) of \(required) required clients \(what)", quorumMet: false)
    }
}
