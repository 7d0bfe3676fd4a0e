/// Outcomes of one breaker from one reporter, aggregated since its last report.
public struct OutcomeReport: Sendable, Hashable {
    /// The reporting client; nil for a local breaker.
    public var client: String?
    /// The generation the reporter held when it recorded the outcomes.
    public var generation: BreakerGeneration
    /// Outcomes of ordinary (non-probe) attempts.
    public var counts: OutcomeCounts
    /// Failures since the reporter's last success, at the end of this report.
    public var trailingConsecutiveFailures: Int
    /// Results of half-open probes.
    public var probes: [ProbeResult]

    /// A report.
    public init(
        client: String? = nil, generation: BreakerGeneration, counts: OutcomeCounts = OutcomeCounts(),
        trailingConsecutiveFailures: Int = 0, probes: [ProbeResult] = []
    ) {
        self.client = client
        self.generation = generation
        self.counts = counts
        self.trailingConsecutiveFailures = trailingConsecutiveFailures
        self.probes = probes
    }
}

/// The result of one half-open probe.
public struct ProbeResult: Sendable, Hashable {
    /// The permit it ran under.
    public var permitID: UInt64
    /// What it did.
    public var outcome: Outcome

    /// A probe result.
    public init(permitID: UInt64, outcome: Outcome) {
        self.permitID = permitID
        self.outcome = outcome
    }
}

/// What an event did to a breaker.
public struct BreakerStep: Sendable, Hashable {
    /// Transitions, in order (usually none or one).
    public var transitions: [BreakerTransition] = []
    /// True when the report's generation was older than the breaker's, so its
    /// outcomes were not counted.
    public var stale = false
    /// When the rules fired but too few distinct clients failed for a fleet
    /// trip: the rule's reason. The reporting client may open its local breaker.
    public var belowQuorum: String?
    /// The index in `transitions` of the one where time lifted an override
    /// (its duration ran out), if any: the server audits that one as its own
    /// action, even when an operator's action follows it in the same step.
    public var overrideExpiry: Int?

    /// Nothing happened.
    public init() {}
}
