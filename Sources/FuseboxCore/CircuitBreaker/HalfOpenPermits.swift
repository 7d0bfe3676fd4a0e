/// The probe permits of one breaker generation: at most `limit` outstanding,
/// each expiring after `maxWaitMs`.
///
/// A permit belongs to the generation it was granted under. The state machine
/// starts a new `HalfOpenPermits` on every transition, so the permits of an
/// older generation are void: they are no longer outstanding, they cannot
/// expire into a failed probe, and their late results match nothing.
public struct HalfOpenPermits: Sendable, Hashable {
    /// The generation these permits are granted under.
    public let generation: BreakerGeneration
    /// Outstanding permits by id, with their expiry.
    public private(set) var outstanding: [UInt64: Timestamp] = [:]
    /// Successful probes so far in this generation.
    public private(set) var successes = 0
    /// Permits granted so far in this generation (the serial of the last one).
    var issued: UInt64 = 0

    /// The largest serial a permit id can carry: ids are
    /// `generation << 24 | serial`, so they are unique across generations.
    static let maxSerial: UInt64 = 0xFF_FFFF

    /// No permits, for `generation`.
    public init(generation: BreakerGeneration = BreakerGeneration(0)) {
        self.generation = generation
    }

    /// True when every permit id of this generation has been used: the owner
    /// must move to a new generation before granting more (ids never repeat).
    public var isExhausted: Bool { issued >= Self.maxSerial }

    /// Grants a permit if fewer than `limit` are outstanding and ids remain.
    /// Ids embed the generation, which is persisted and never repeats, so an
    /// id is never granted twice, also across restarts.
    public mutating func grant(limit: Int, maxWaitMs: Int64, at now: Timestamp) -> PermitGrant? {
        guard outstanding.count < max(limit, 1), !isExhausted else { return nil }
        issued += 1
        let id = (generation.value << 24) | issued
        let expiry = now.adding(milliseconds: max(maxWaitMs, 1))
        outstanding[id] = expiry
        return PermitGrant(id: id, generation: generation, expiresAt: expiry)
    }

    /// Ends a permit of this generation. Returns false for an unknown, voided
    /// or expired permit (a late result, which is ignored).
    public mutating func complete(_ id: UInt64) -> Bool {
        outstanding.removeValue(forKey: id) != nil
    }

    /// Counts successful probes.
    public mutating func recordSuccess(_ count: Int = 1) {
        successes += count
    }

    /// Removes and returns the permits expired at `now`.
    public mutating func expire(at now: Timestamp) -> [UInt64] {
        let expired = outstanding.filter { $0.value <= now }.map(\.key).sorted()
        for id in expired { outstanding[id] = nil }
        return expired
    }

    /// The earliest expiry of an outstanding permit.
    public var nextExpiry: Timestamp? { outstanding.values.min() }
}

/// A granted half-open probe permit.
public struct PermitGrant: Sendable, Hashable {
    /// Identifies the permit in the probe's result.
    public var id: UInt64
    /// The breaker generation it was granted under; it is void once the
    /// breaker moves to a newer one.
    public var generation: BreakerGeneration
    /// When it expires as a failed probe.
    public var expiresAt: Timestamp
}

/// A refused permit.
public struct PermitDenial: Sendable, Hashable {
    /// The breaker's state.
    public var state: BreakerState
    /// The breaker's generation.
    public var generation: BreakerGeneration
    /// When to ask again, if known.
    public var retryAfterMs: Int64?
    /// Why, for people.
    public var reason: String

    /// A denial.
    public init(state: BreakerState, generation: BreakerGeneration, retryAfterMs: Int64?, reason: String) {
        self.state = state
        self.generation = generation
        self.retryAfterMs = retryAfterMs
        self.reason = reason
    }
}

/// The answer to a permit request.
public enum PermitDecision: Sendable, Hashable {
    /// A probe may run.
    case granted(PermitGrant)
    /// No probe may run now.
    case denied(PermitDenial)
}
