public import FuseboxCore

/// How urgent an alert is: the seeds' four levels, in order.
public enum AlertSeverity: String, Sendable, Hashable, CaseIterable, Comparable {
    case info, warning, critical, emergency

    public static func < (a: AlertSeverity, b: AlertSeverity) -> Bool {
        allCases.firstIndex(of: a) ?? 0 < allCases.firstIndex(of: b) ?? 0
    }

    /// "WARNING", as e-mail subjects and Slack messages show it.
    public var displayName: String { rawValue.uppercased() }
}

/// One alert rule of the server's configuration (docs/ALERTS.md).
public struct AlertRule: Sendable, Hashable {
    /// What the rule watches for.
    public enum Condition: Sendable, Hashable {
        /// A breaker stops letting calls through: OPEN, HALF_OPEN or FORCED_OPEN.
        case breakerOpened
        /// A breaker has not let calls through (OPEN, HALF_OPEN, FORCED_OPEN)
        /// for longer than this.
        case openLongerThan(ms: Int64)
        /// A breaker tripped at least `trips` times within `withinMs`.
        case flapping(trips: Int, withinMs: Int64)
        /// A breaker's fleet-wide failure rate over its window is above
        /// `percent`, with at least `minimumCalls` calls in the window.
        case errorRateAbove(percent: Double, minimumCalls: Int)
        /// More than this many clients run their breakers locally.
        case localModeClientsAbove(Int)
        /// An override (forced open or closed, disabled, shadow) lifts within this.
        case overrideExpiringWithin(ms: Int64)
        /// The store (SQLite, or etcd's quorum) cannot be written.
        case storeUnavailable

        /// The name used in configuration, payloads and metrics.
        public var kind: String {
            switch self {
            case .breakerOpened: return "breakerOpened"
            case .openLongerThan: return "openTooLong"
            case .flapping: return "flapping"
            case .errorRateAbove: return "errorRate"
            case .localModeClientsAbove: return "localModeClients"
            case .overrideExpiringWithin: return "overrideExpiring"
            case .storeUnavailable: return "storeUnavailable"
            }
        }

        /// Whether it concerns one breaker (else the whole fleet).
        public var perBreaker: Bool {
            switch self {
            case .localModeClientsAbove, .storeUnavailable: return false
            default: return true
            }
        }
    }

    /// Unique among the rules; names the rule in alerts and metrics.
    public var name: String
    public var condition: Condition
    public var severity: AlertSeverity
    /// After an alert, further triggers of the same rule for the same breaker
    /// within this time join it instead of alerting again; its "resolved"
    /// comes once the condition has ended and this time has passed.
    public var cooldownMs: Int64
    /// Only breakers of these registries; empty: every registry.
    public var registries: [String]
    /// The sinks it goes to, by name; empty: every sink.
    public var sinks: [String]

    public init(
        name: String, condition: Condition, severity: AlertSeverity, cooldownMs: Int64 = 300_000, registries: [String] = [],
        sinks: [String] = []
    ) {
        self.name = name
        self.condition = condition
        self.severity = severity
        self.cooldownMs = cooldownMs
        self.registries = registries
        self.sinks = sinks
    }
}

/// What the alert engine sees of the fleet at one moment.
public struct FleetObservation: Sendable {
    /// One breaker.
    public struct Breaker: Sendable, Hashable {
        public var registry: String
        public var name: String
        public var state: BreakerState
        /// Since when it has not let calls through (OPEN, HALF_OPEN or
        /// FORCED_OPEN without a CLOSED in between); nil while it does.
        public var notPassingSinceMs: Int64?
        /// When its override lifts; nil without an override or with one that does not expire.
        public var overrideUntilMs: Int64?
        /// Calls and failures in its window, over the fleet.
        public var calls: Int
        public var failures: Int
        /// When it tripped (went OPEN from CLOSED or HALF_OPEN) recently, in any
        /// order; the engine counts those within a rule's window.
        public var tripsAtMs: [Int64]
        /// Trips since the observer started, which only grows: the engine tells
        /// new trips from the ones it has seen by it, not by time.
        public var tripCount: Int

        public init(
            registry: String, name: String, state: BreakerState, notPassingSinceMs: Int64? = nil, overrideUntilMs: Int64? = nil,
            calls: Int = 0, failures: Int = 0, tripsAtMs: [Int64] = [], tripCount: Int? = nil
        ) {
            self.registry = registry
            self.name = name
            self.state = state
            self.notPassingSinceMs = notPassingSinceMs
            self.overrideUntilMs = overrideUntilMs
            self.calls = calls
            self.failures = failures
            self.tripsAtMs = tripsAtMs
            self.tripCount = tripCount ?? tripsAtMs.count
        }

        /// "registry/name".
        public var subject: String { "\(registry)/\(name)" }

        /// Failures per call in the window, 0 without calls.
        public var failureRate: Double { calls > 0 ? Double(failures) / Double(calls) : 0 }
    }

    public var atMs: Int64
    public var breakers: [Breaker]
    public var localModeClients: Int
    public var storeAvailable: Bool
    /// Why the store is unavailable, for people.
    public var storeProblem: String

    public init(atMs: Int64, breakers: [Breaker], localModeClients: Int = 0, storeAvailable: Bool = true, storeProblem: String = "") {
        self.atMs = atMs
        self.breakers = breakers
        self.localModeClients = localModeClients
        self.storeAvailable = storeAvailable
        self.storeProblem = storeProblem
    }
}

/// One notification: an alert firing, or one that resolved.
public struct AlertNotification: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable {
        case firing, resolved
    }

    /// Increasing, unique in this process.
    public var id: UInt64
    public var status: Status
    public var rule: String
    /// The rule's condition kind (`breakerOpened`, …).
    public var kind: String
    public var severity: AlertSeverity
    /// The breaker's registry and name; empty for fleet-wide rules.
    public var registry: String
    public var breaker: String
    /// One line for people, e.g. "breaker default/payments is OPEN".
    public var summary: String
    /// Since when the condition holds (firing) or held (resolved).
    public var startedAtMs: Int64
    /// When this notification was made.
    public var atMs: Int64
    /// Triggers merged into this alert during its cooldown (resolved only).
    public var suppressedTriggers: Int
    /// The sinks it goes to.
    public var sinks: [String]

    public init(
        id: UInt64, status: Status, rule: String, kind: String, severity: AlertSeverity, registry: String, breaker: String, summary: String,
        startedAtMs: Int64, atMs: Int64, suppressedTriggers: Int, sinks: [String]
    ) {
        self.id = id
        self.status = status
        self.rule = rule
        self.kind = kind
        self.severity = severity
        self.registry = registry
        self.breaker = breaker
        self.summary = summary
        self.startedAtMs = startedAtMs
        self.atMs = atMs
        self.suppressedTriggers = suppressedTriggers
        self.sinks = sinks
    }

    /// "default/payments", or "fleet".
    public var subject: String { breaker.isEmpty ? "fleet" : "\(registry)/\(breaker)" }
}
