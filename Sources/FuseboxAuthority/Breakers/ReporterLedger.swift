public import FuseboxCore

/// The reporting clients the coordinator knows: each one's current process
/// run (incarnation) and the last batch counted from it, for duplicate
/// detection, and when it last reported, for liveness. Bounded and pruned.
public struct ReporterLedger: Sendable {
    /// Whether a batch is counted.
    public enum Admission: Sendable, Hashable {
        /// Count it.
        case fresh
        /// Counted already, or from a replaced process: do not count it again.
        case duplicate
    }

    private struct Reporter: Sendable {
        var incarnation: UInt64
        var lastSequence: UInt64
        var lastReportAt: Timestamp
    }

    private var reporters: [String: Reporter] = [:]
    private let idleAfterMs: Int64
    private let forgetAfterMs: Int64
    private let capacity: Int

    /// A ledger: clients silent for `idleAfterMs` count as silent; after
    /// `forgetAfterMs` they are forgotten; at most `capacity` are kept.
    public init(idleAfterMs: Int64 = 60_000, forgetAfterMs: Int64 = 600_000, capacity: Int = 100_000) {
        self.idleAfterMs = idleAfterMs
        self.forgetAfterMs = forgetAfterMs
        self.capacity = max(capacity, 1)
    }

    /// Decides whether a batch is counted, and remembers it.
    public mutating func admit(client: String, incarnation: UInt64, sequence: UInt64, at now: Timestamp) -> Admission {
        guard var r = reporters[client] else {
            makeRoom(at: now)
            reporters[client] = Reporter(incarnation: incarnation, lastSequence: sequence, lastReportAt: now)
            return .fresh
        }
        r.lastReportAt = now
        defer { reporters[client] = r }
        if incarnation > r.incarnation {
            r.incarnation = incarnation
            r.lastSequence = sequence
            return .fresh
        }
        if incarnation < r.incarnation { return .duplicate }
        guard sequence > 0 else { return .fresh }
        if sequence <= r.lastSequence { return .duplicate }
        r.lastSequence = sequence
        return .fresh
    }

    /// A clean shutdown: forgets the client (unless a newer run already reported).
    public mutating func farewell(client: String, incarnation: UInt64) {
        guard let r = reporters[client], incarnation >= r.incarnation else { return }
        reporters[client] = nil
    }

    /// When `client` last reported.
    public func lastReport(of client: String) -> Timestamp? { reporters[client]?.lastReportAt }

    /// Clients known now.
    public var count: Int { reporters.count }

    /// Clients heard from within `forgetAfterMs` but not within `idleAfterMs`;
    /// forgets the older ones.
    public mutating func silentReporters(at now: Timestamp) -> Int {
        prune(at: now)
        return reporters.values.filter { now.milliseconds(since: $0.lastReportAt) > idleAfterMs }.count
    }

    private mutating func prune(at now: Timestamp) {
        reporters = reporters.filter { now.milliseconds(since: $0.value.lastReportAt) < forgetAfterMs }
    }

    /// At capacity: forget the expired, then the least recently heard tenth,
    /// so the scan runs once per `capacity / 10` new clients, not per batch.
    private mutating func makeRoom(at now: Timestamp) {
        guard reporters.count >= capacity else { return }
        prune(at: now)
        guard reporters.count >= capacity else { return }
        let oldest = reporters.sorted { $0.value.lastReportAt < $1.value.lastReportAt }.prefix(max(capacity / 10, 1))
        for (client, _) in oldest { reporters[client] = nil }
    }
}
