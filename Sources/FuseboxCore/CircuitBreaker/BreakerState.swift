/// The state of a circuit breaker as clients enforce it.
public enum BreakerState: String, Sendable, Hashable, CaseIterable {
    /// Calls pass and are measured.
    case closed
    /// Calls are rejected until the breaker half-opens.
    case open
    /// Only calls holding a probe permit pass.
    case halfOpen
    /// Override: calls are rejected until an operator lifts it.
    case forcedOpen
    /// Override: calls pass whatever the outcomes.
    case forcedClosed
    /// Override: calls always pass; outcomes are still measured.
    case disabled
    /// Override: calls always pass; the breaker publishes the state it would take.
    case shadow

    /// Whether a call may pass without a permit.
    public var allowsCallsWithoutPermit: Bool {
        switch self {
        case .closed, .forcedClosed, .disabled, .shadow: return true
        case .open, .halfOpen, .forcedOpen: return false
        }
    }

    /// The wire spelling, e.g. `HALF_OPEN`.
    public var displayName: String {
        switch self {
        case .closed: return "CLOSED"
        case .open: return "OPEN"
        case .halfOpen: return "HALF_OPEN"
        case .forcedOpen: return "FORCED_OPEN"
        case .forcedClosed: return "FORCED_CLOSED"
        case .disabled: return "DISABLED"
        case .shadow: return "SHADOW"
        }
    }
}

/// An operator override of a breaker.
public enum BreakerOverride: Sendable, Hashable {
    /// Reject every call.
    case forcedOpen
    /// Let every call through, without tripping.
    case forcedClosed
    /// Let every call through; keep measuring.
    case disabled
    /// Let every call through; evaluate and publish the state the breaker would take.
    case shadow

    /// The state clients enforce under this override.
    public var state: BreakerState {
        switch self {
        case .forcedOpen: return .forcedOpen
        case .forcedClosed: return .forcedClosed
        case .disabled: return .disabled
        case .shadow: return .shadow
        }
    }
}

/// Counts transitions of one breaker. Every transition increments it; it is
/// persisted, never reused and never decreases, so clients apply a pushed
/// state only if its generation is newer than the one they hold.
public struct BreakerGeneration: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The count.
    public var value: UInt64

    /// A generation.
    public init(_ value: UInt64) {
        self.value = value
    }

    /// The generation after this one.
    public var next: BreakerGeneration { BreakerGeneration(value &+ 1) }

    public static func < (lhs: BreakerGeneration, rhs: BreakerGeneration) -> Bool { lhs.value < rhs.value }

    /// `"g<n>"`.
    public var description: String { "g\(value)" }
}

/// What clients need to know about a breaker at one moment.
public struct BreakerStatus: Sendable, Hashable {
    /// The state clients enforce (an override's state while one applies).
    public var state: BreakerState
    /// The state the trip rules give: closed, open or half-open. Under
    /// `.shadow` it is the state the breaker would take.
    public var evaluatedState: BreakerState
    /// The generation of the last transition.
    public var generation: BreakerGeneration
    /// When the current state began.
    public var since: Timestamp
    /// When OPEN half-opens, or when an override lifts; nil otherwise.
    public var until: Timestamp?
    /// Why the breaker is in this state, for people.
    public var reason: String

    /// A status.
    public init(
        state: BreakerState, evaluatedState: BreakerState, generation: BreakerGeneration,
        since: Timestamp, until: Timestamp? = nil, reason: String
    ) {
        self.state = state
        self.evaluatedState = evaluatedState
        self.generation = generation
        self.since = since
        self.until = until
        self.reason = reason
    }
}

/// One change of a breaker's status.
public struct BreakerTransition: Sendable, Hashable {
    /// The state clients enforced before.
    public var from: BreakerState
    /// The status after; its generation is the transition's.
    public var status: BreakerStatus
    /// The clients whose outcomes led to it, sorted.
    public var contributingClients: [String]

    /// A transition.
    public init(from: BreakerState, status: BreakerStatus, contributingClients: [String] = []) {
        self.from = from
        self.status = status
        self.contributingClients = contributingClients
    }
}
