public import FuseboxCore

/// The clients that report outcomes, by `client_id`: which batches were
/// counted already (duplicate detection) and when each client was last heard
/// from (liveness). A value with no I/O and no clock: the owner passes the time.
///
/// Duplicates follow `OutcomeBatch` in `Protos/fusebox/v1/breaker.proto`:
///
/// - a larger incarnation than the one held is a new run of the process: its
///   sequence starts again, and the batch is fresh;
/// - a smaller incarnation comes from a process that has been replaced: duplicate;
/// - the same incarnation: sequence 0 disables the check (fresh); a sequence at
///   or below the last counted one is a duplicate; a larger one is fresh and
///   remembered;
/// - incarnation 0 (a reporter that does not know incarnations) is never
///   compared with incarnations: its sequence alone is checked, against the
///   sequence held for incarnation 0 of that client.
///
/// Bounded: at most `capacity` clients. Entries are kept in a list ordered by
/// when each client was last heard from (every admission moves its client to
/// the end), so the least recently heard client and the expired ones are at
/// the front. Expired entries are pruned from the front whenever a client is
/// admitted; a new client arriving at capacity evicts the front one. Every
/// admission therefore costs O(1) amortised (a dictionary lookup and a few
/// index updates; each entry is pruned at most once), never a scan. The list
/// follows the order of admissions, which is time order when the owner passes
/// one clock's readings; if that clock steps back, an entry behind a more
/// recent one is pruned or counted as silent only once the entries before it
/// are.
public struct ReporterLedger: Sendable {
    /// Whether a batch's outcomes should be counted.
    public enum Admission: Sendable, Hashable {
        /// Not seen before: count it.
        case fresh
        /// Counted already, or from a replaced incarnation: do not count it again.
        case duplicate
    }

    /// One client, a node of the list ordered by last report.
    private struct Reporter: Sendable {
        var client: String
        /// The largest non-zero incarnation seen; 0 if none yet.
        var incarnation: UInt64
        /// The last sequence counted under `incarnation`.
        var sequence: UInt64
        /// The last sequence counted from batches with incarnation 0.
        var unknownIncarnationSequence: UInt64
        var lastReportAt: Timestamp
        /// Its last batch said it runs its breakers locally.
        var local = false
        var previous: Int
        var next: Int
    }

    private static let none = -1

    /// Not heard from for longer than this: silent.
    public let idleAfterMs: Int64
    /// Not heard from for longer than this: forgotten.
    public let forgetAfterMs: Int64
    /// The most clients held.
    public let capacity: Int

    private var index: [String: Int] = [:]
    private var nodes: [Reporter] = []
    private var freeSlots: [Int] = []
    /// Clients held whose last batch said LOCAL.
    private var localClients = 0
    /// Least recently heard.
    private var head = ReporterLedger.none
    /// Most recently heard.
    private var tail = ReporterLedger.none

    /// A ledger that counts a client as silent after `idleAfterMs` without a
    /// report and forgets it after `forgetAfterMs`, holding at most `capacity`
    /// clients. Out-of-range values are brought into range rather than
    /// rejected: `idleAfterMs` at least 0, `forgetAfterMs` at least
    /// `idleAfterMs`, `capacity` at least 1.
    public init(idleAfterMs: Int64 = 60_000, forgetAfterMs: Int64 = 600_000, capacity: Int = 100_000) {
        self.idleAfterMs = max(idleAfterMs, 0)
        self.forgetAfterMs = max(forgetAfterMs, self.idleAfterMs)
        self.capacity = max(capacity, 1)
    }

    /// Clients held now.
    public var count: Int { index.count }

    /// Decides whether the batch `sequence` of `client`'s run `incarnation`
    /// is counted, and records that the client was heard from at `now`
    /// (duplicates too: the client is alive) and whether it said it runs its
    /// breakers locally (`local`; a replaced incarnation's word is ignored).
    public mutating func admit(client: String, incarnation: UInt64, sequence: UInt64, local: Bool = false, at now: Timestamp) -> Admission {
        pruneExpired(at: now)
        guard let slot = index[client] else {
            insert(
                Reporter(
                    client: client, incarnation: incarnation, sequence: incarnation == 0 ? 0 : sequence,
                    unknownIncarnationSequence: incarnation == 0 ? sequence : 0, lastReportAt: now,
                    previous: Self.none, next: Self.none))
            if let slot = index[client] { setLocal(slot, local) }
            return .fresh
        }
        if incarnation == 0 || incarnation >= nodes[slot].incarnation { setLocal(slot, local) }
        nodes[slot].lastReportAt = now
        moveToTail(slot)
        if incarnation == 0 {
            return Self.check(sequence, against: &nodes[slot].unknownIncarnationSequence)
        }
        if incarnation > nodes[slot].incarnation {
            nodes[slot].incarnation = incarnation
            nodes[slot].sequence = sequence
            return .fresh
        }
        if incarnation < nodes[slot].incarnation { return .duplicate }
        return Self.check(sequence, against: &nodes[slot].sequence)
    }

    /// `sequence` against the last one counted: 0 passes unchecked, an old
    /// one is a duplicate, a new one is remembered.
    private static func check(_ sequence: UInt64, against last: inout UInt64) -> Admission {
        guard sequence != 0 else { return .fresh }
        guard sequence > last else { return .duplicate }
        last = sequence
        return .fresh
    }

    /// A clean shutdown (a batch with `final` set, admitted first): forgets
    /// `client` at once, so it is not counted as silent. A farewell from an
    /// incarnation older than the one held (a replaced process saying goodbye
    /// after its successor started) is ignored.
    public mutating func farewell(client: String, incarnation: UInt64) {
        guard let slot = index[client], incarnation >= nodes[slot].incarnation else { return }
        remove(slot)
    }

    /// Clients held whose last batch said they run their breakers locally
    /// (until they say otherwise, say farewell or are forgotten).
    public var localModeClients: Int { localClients }

    private mutating func setLocal(_ slot: Int, _ local: Bool) {
        guard nodes[slot].local != local else { return }
        nodes[slot].local = local
        localClients += local ? 1 : -1
    }

    /// When `client` last reported; nil if it never did, said farewell, or
    /// was pruned or evicted.
    public func lastReport(of client: String) -> Timestamp? {
        index[client].map { nodes[$0].lastReportAt }
    }

    /// One client as the dashboard lists it.
    public struct ClientView: Sendable, Hashable {
        /// Its `client_id`.
        public var client: String
        /// When it last reported.
        public var lastReportAt: Timestamp
        /// Its last batch said it runs its breakers locally.
        public var local: Bool
    }

    /// Every client held, most recently heard first, at most `limit`.
    public func clients(limit: Int = .max) -> [ClientView] {
        var result: [ClientView] = []
        var slot = tail
        while slot != Self.none, result.count < limit {
            let node = nodes[slot]
            result.append(ClientView(client: node.client, lastReportAt: node.lastReportAt, local: node.local))
            slot = node.previous
        }
        return result
    }

    /// Clients heard from within `forgetAfterMs` but not within `idleAfterMs`
    /// of `now`. Forgets those not heard from for longer than `forgetAfterMs`.
    /// Costs O(pruned + silent): it walks from the least recently heard client
    /// and stops at the first one heard from within `idleAfterMs`.
    public mutating func silentReporters(at now: Timestamp) -> Int {
        pruneExpired(at: now)
        var silent = 0
        var slot = head
        while slot != Self.none, now.milliseconds(since: nodes[slot].lastReportAt) > idleAfterMs {
            silent += 1
            slot = nodes[slot].next
        }
        return silent
    }

    // MARK: The list

    private mutating func pruneExpired(at now: Timestamp) {
        while head != Self.none, now.milliseconds(since: nodes[head].lastReportAt) > forgetAfterMs {
            remove(head)
        }
    }

    private mutating func insert(_ reporter: Reporter) {
        // pruneExpired ran already; at capacity the least recently heard client goes.
        if index.count >= capacity, head != Self.none { remove(head) }
        let slot: Int
        if let reused = freeSlots.popLast() {
            slot = reused
            nodes[slot] = reporter
        } else {
            slot = nodes.count
            nodes.append(reporter)
        }
        index[reporter.client] = slot
        link(slot)
    }

    private mutating func remove(_ slot: Int) {
        setLocal(slot, false)
        unlink(slot)
        index[nodes[slot].client] = nil
        nodes[slot].client = ""
        freeSlots.append(slot)
    }

    private mutating func moveToTail(_ slot: Int) {
        guard slot != tail else { return }
        unlink(slot)
        link(slot)
    }

    /// Appends `slot` at the tail.
    private mutating func link(_ slot: Int) {
        nodes[slot].previous = tail
        nodes[slot].next = Self.none
        if tail != Self.none { nodes[tail].next = slot } else { head = slot }
        tail = slot
    }

    private mutating func unlink(_ slot: Int) {
        let previous = nodes[slot].previous
        let next = nodes[slot].next
        if previous != Self.none { nodes[previous].next = next } else { head = next }
        if next != Self.none { nodes[next].previous = previous } else { tail = previous }
        nodes[slot].previous = Self.none
        nodes[slot].next = Self.none
    }
}
