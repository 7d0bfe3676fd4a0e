public import FuseboxCore

/// Names one breaker of the fleet.
public struct BreakerKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The registry that holds it.
    public var registry: String
    /// Its name within the registry.
    public var name: String

    /// A key.
    public init(registry: String, name: String) {
        self.registry = registry
        self.name = name
    }

    public static func < (a: BreakerKey, b: BreakerKey) -> Bool { (a.registry, a.name) < (b.registry, b.name) }

    /// `registry/name`.
    public var description: String { "\(registry)/\(name)" }
}

/// Which breakers a read or a watch selects.
public struct BreakerSelector: Sendable, Hashable {
    /// Only this registry; empty: every registry.
    public var registry: String
    /// Only names starting with this.
    public var prefix: String

    /// A selector.
    public init(registry: String = "", prefix: String = "") {
        self.registry = registry
        self.prefix = prefix
    }

    /// Whether `key` is selected.
    public func selects(_ key: BreakerKey) -> Bool {
        (registry.isEmpty || key.registry == registry) && key.name.hasPrefix(prefix)
    }
}

/// A breaker as readers see it: its last durable status.
public struct BreakerView: Sendable, Hashable {
    /// Which breaker.
    public var key: BreakerKey
    /// The policy it is bound to.
    public var policy: String
    /// Its status.
    public var status: BreakerStatus

    /// A view.
    public init(key: BreakerKey, policy: String, status: BreakerStatus) {
        self.key = key
        self.policy = policy
        self.status = status
    }
}

/// A breaker in full, for GetBreaker.
public struct BreakerDetailView: Sendable, Hashable {
    /// One client's share of the window.
    public struct Contribution: Sendable, Hashable {
        /// The client.
        public var client: String
        /// Its outcomes in the window.
        public var counts: OutcomeCounts
        /// When it last reported, if the server still remembers.
        public var lastReportAt: Timestamp?
    }

    /// The breaker's status.
    public var view: BreakerView
    /// The window's totals.
    public var window: WindowSnapshot
    /// The run of consecutive failures.
    public var consecutiveFailures: Int
    /// Per-client contributions, sorted by client.
    public var contributions: [Contribution]
    /// Permits outstanding.
    public var outstandingPermits: Int
    /// Trips since creation or reset.
    public var trips: Int
}

/// One transition, as published to watchers once it is durable.
public struct BreakerTransitionEvent: Sendable, Hashable {
    /// Counts every published transition of the coordinator: lets a
    /// transport encode each event once for all its watchers.
    public var sequence: UInt64
    /// Which breaker.
    public var key: BreakerKey
    /// Its policy.
    public var policy: String
    /// The transition.
    public var transition: BreakerTransition
}

/// An event of a breaker watch.
public enum BreakerWatchEvent: Sendable {
    /// The selected breakers: first, and again after the watcher fell behind.
    case snapshot([BreakerView])
    /// One transition; per breaker in generation order.
    case transition(BreakerTransitionEvent)
}

/// The outcomes of one breaker in a batch.
public struct ReportedBreaker: Sendable {
    /// Which breaker.
    public var key: BreakerKey
    /// The policy to create it with, if it does not exist.
    public var policy: String?
    /// What happened.
    public var report: OutcomeReport

    /// An entry.
    public init(key: BreakerKey, policy: String?, report: OutcomeReport) {
        self.key = key
        self.policy = policy
        self.report = report
    }
}

/// One batch of outcomes from one client process.
public struct OutcomeBatchReport: Sendable {
    /// The client's id.
    public var client: String
    /// The process run that sent it (0: unknown).
    public var incarnation: UInt64
    /// The batch's number within the incarnation (0: no duplicate check).
    public var sequence: UInt64
    /// The process shuts down cleanly after this batch.
    public var final: Bool
    /// The client said it runs its breakers locally (fuseboxd out of reach for its watches).
    public var local: Bool = false
    /// The breakers.
    public var breakers: [ReportedBreaker]

    /// A batch.
    public init(client: String, incarnation: UInt64 = 0, sequence: UInt64 = 0, final: Bool = false, breakers: [ReportedBreaker]) {
        self.client = client
        self.incarnation = incarnation
        self.sequence = sequence
        self.final = final
        self.breakers = breakers
    }
}

/// A trip rule fired with too few failing clients: only the reporter's
/// local breaker opens.
public struct BelowQuorumTrip: Sendable, Hashable {
    /// Which breaker.
    public var key: BreakerKey
    /// The rule and the quorum it missed.
    public var reason: String
    /// How long the reporter's local breaker stays open.
    public var openMs: Int64
    /// The fleet breaker's generation (unchanged).
    public var generation: BreakerGeneration
}

/// What a batch did.
public struct ReportResult: Sendable {
    /// The batch had been counted already, or came from a replaced process.
    public var duplicate = false
    /// Entries counted.
    public var accepted = 0
    /// Entries not counted: their generation was stale.
    public var stale = 0
    /// The status of each entry, by the entry's index; absent for rejected ones.
    public var views: [Int: BreakerView] = [:]
    /// Entries refused, by index.
    public var rejected: [(index: Int, error: CoordinatorError)] = []
    /// Rules that fired below the quorum for this client.
    public var belowQuorum: [BelowQuorumTrip] = []

    /// Nothing yet.
    public init() {}
}

/// The answer to a permit request.
public struct PermitAnswer: Sendable, Hashable {
    /// Granted or denied.
    public var decision: PermitDecision
    /// The breaker's durable status when answered.
    public var status: BreakerStatus
    /// When it was answered (a grant's expiry is relative to it).
    public var at: Timestamp
}

/// What an operator action did.
public struct AdminOutcome: Sendable, Hashable {
    /// The breaker before (nil if it was created by the action).
    public var before: BreakerView?
    /// The breaker after.
    public var after: BreakerView
    /// The audit entry written with it.
    public var auditID: UInt64
}

/// Why the fleet's authority refused or failed a request.
public struct CoordinatorError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind.
    public enum Code: Sendable, Hashable {
        /// Something named does not exist.
        case notFound
        /// The request cannot apply in the current state (e.g. a policy without a breaker section).
        case failedPrecondition
        /// The request is malformed.
        case invalidArgument
        /// The store failed; nothing changed.
        case unavailable
        /// A limit was reached.
        case resourceExhausted
    }

    /// The kind.
    public var code: Code
    /// What and what to do.
    public var message: String
    /// For invalid arguments: the field path, relative to the entry.
    public var field: String

    /// An error.
    public init(_ code: Code, _ message: String, field: String = "") {
        self.code = code
        self.message = message
        self.field = field
    }

    /// The message.
    public var description: String { message }

    static func store(_ error: StoreError) -> CoordinatorError {
        CoordinatorError(.unavailable, "the store failed, nothing changed: \(error.message)")
    }
}

/// The fleet's decider for breakers, as callers see it: the RPC adapters,
/// the dashboard. The embedded coordinator is one; a replica that forwards
/// to an elected leader can be another, without changing callers.
public protocol BreakerAuthority: Sendable {
    /// Counts a batch of outcomes.
    func report(_ batch: OutcomeBatchReport) async -> ReportResult
    /// Grants or denies a half-open probe permit.
    func permit(_ key: BreakerKey) async -> Result<PermitAnswer, CoordinatorError>
    /// Sets (nil: lifts) an override, durable together with `audit`.
    func setOverride(
        _ key: BreakerKey, _ kind: BreakerOverride?, durationMs: UInt32, reason: String, policy: String?, audit: AuditRecord
    ) async throws(CoordinatorError) -> AdminOutcome
    /// Lifts overrides, clears the window, closes; durable together with `audit`.
    func reset(_ key: BreakerKey, reason: String, audit: AuditRecord) async throws(CoordinatorError) -> AdminOutcome
    /// The selected breakers, sorted.
    func views(_ selector: BreakerSelector) -> [BreakerView]
    /// The named breakers that exist, sorted.
    func views(of keys: Set<BreakerKey>) -> [BreakerView]
    /// One breaker in full.
    func detail(_ key: BreakerKey) -> BreakerDetailView?
    /// Starts a watch: `sink` gets a snapshot of the selection, then every transition.
    func watch(_ selector: BreakerSelector, sink: any WatchSink<BreakerWatchEvent>) -> UInt64
    /// Ends a watch.
    func unwatch(_ id: UInt64)
    /// Open watches.
    var watcherCount: Int { get }
}

/// Bounds on what clients can make the authority hold.
public struct AuthorityLimits: Sendable, Hashable {
    /// Breakers one registry may hold; creating more is refused with
    /// `resourceExhausted`. Default 10,000.
    public var maxBreakersPerRegistry = 10_000
    /// A breaker that is plainly CLOSED (no override, no permit) and has seen
    /// no report, permit request or action for this long is evicted: forgotten
    /// and deleted from the store, until a client reports it again. 0 never
    /// evicts. Default 1 hour.
    public var idleEvictionMs: Int64 = 3_600_000
    /// Registries the server holds; a policy write that would create another
    /// is refused with `resourceExhausted`. Default 1,000.
    public var maxRegistries = 1_000
    /// Largest policy, encoded as its `fusebox.v1.Policy` message; a bigger
    /// one is refused as invalid. Default 64 KiB.
    public var maxPolicyBytes = 65_536

    /// The defaults.
    public init() {}
}
