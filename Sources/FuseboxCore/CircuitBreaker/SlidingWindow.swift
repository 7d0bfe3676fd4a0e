/// A count- or time-based ring of buckets with running totals. Recording a
/// batch and taking a snapshot cost O(1) amortised, whatever the batch's size:
/// a bucket is dropped once after being filled, and a count window trims at
/// most one bucket in part per batch (costing O(its clients)).
///
/// **Count windows** hold exactly the last `size` calls: min(calls recorded
/// since the last reset, `size`). A batch of N calls takes N calls' room,
/// dropping the oldest calls. Calls are kept in arrival order at the grain of
/// a bucket: a bucket holds whole batches, either several that together hold
/// at most `capacity` = ⌈size / buckets⌉ calls, or a single larger one. When
/// the window must drop only part of its oldest bucket (or keep only `size`
/// calls of a batch larger than the window), the order of the calls inside it
/// is unknown, so the calls it keeps are apportioned over the bucket's
/// (client, outcome) cells by largest remainder: with k of n calls kept, a
/// cell of c calls keeps ⌊k·c/n⌋, and the calls still missing go, one each, to
/// the cells with the largest remainders k·c mod n (ties: anonymous calls
/// first, then clients by name; success, failure, slow success, slow failure).
/// A trimmed bucket is always apportioned from its content before the first
/// trim, so rounding never accumulates. "Exact" therefore means:
///
/// - the window holds exactly min(recorded, `size`) calls;
/// - every count is an integer, the outcomes sum to the calls, and the
///   clients' totals (plus anonymous calls) sum to the window's totals, so the
///   quorum counts (clients with failures, with slow calls) are counts of
///   real entries;
/// - compared with the last `size` calls in arrival order, where a batch counts
///   as its calls evenly spread (a fraction of a batch counts as that fraction
///   of each outcome), every count, per outcome and per client, is off by less
///   than `capacity` calls, and by less than one call when the oldest bucket
///   holds a single batch (always so with the default of one call per bucket).
///
/// **Time windows** hold the buckets whose interval ends within the last
/// `size` seconds; a batch goes whole into the bucket of its time.
///
/// Ignored outcomes are neither success nor failure: they take no room and
/// are not kept. Contributions are kept per client, so the fleet can apply its
/// quorum rule (distinct clients with failures, or with slow calls) without a scan.
public struct SlidingWindow: Sendable {
    /// What one bucket holds.
    struct Bucket: Sendable {
        var counts = OutcomeCounts()
        var clients: [String: OutcomeCounts] = [:]
        /// Once part of the bucket was dropped: its content before the first
        /// trim, from which every later trim is apportioned.
        var untrimmed: [Cell]?
    }

    /// The calls of one client (nil: anonymous) in one bucket.
    struct Cell: Sendable {
        var client: String?
        var counts: OutcomeCounts
    }

    /// The shape.
    public let shape: WindowShape
    /// Time windows: a ring of `shape.buckets`. Count windows: a ring of
    /// 2 × buckets + 2, of which `occupied` end at `head`. Two neighbouring
    /// buckets (but the oldest) hold more than `capacity` calls together, else
    /// they would be one, so at most 2 × buckets + 1 are ever in use.
    private var buckets: [Bucket]
    private var head = 0
    private var occupied = 0
    private var headStart: Int64?
    private var totals = OutcomeCounts()
    private var clientTotals: [String: OutcomeCounts] = [:]
    private var failingClientCount = 0
    private var slowClientCount = 0

    /// An empty window.
    public init(shape: WindowShape) {
        self.shape = shape
        let count = max(1, shape.buckets)
        self.buckets = Array(repeating: Bucket(), count: shape.kind == .count ? 2 * count + 2 : count)
    }

    /// Adds outcomes at `now`, from `client` if known.
    public mutating func record(_ outcomes: OutcomeCounts, client: String? = nil, at now: Timestamp) {
        var counts = outcomes
        counts.ignored = 0
        guard counts.calls > 0 else { return }
        switch shape.kind {
        case .time:
            advance(to: now)
        case .count where counts.calls >= UInt64(max(shape.size, 1)):
            // The batch alone fills the window: it keeps `size` of its calls,
            // as a bucket trimmed from the whole batch (so later trims do not
            // round twice).
            reset()
            occupied = 1
            add(Self.apportion(UInt64(max(shape.size, 1)), over: [counts])[0], client: client, toBucket: head)
            buckets[head].untrimmed = [Cell(client: client, counts: counts)]
            return
        case .count:
            makeRoom(for: counts)
        }
        add(counts, client: client, toBucket: head)
    }

    /// Adds `counts` to bucket `index` and the totals.
    private mutating func add(_ counts: OutcomeCounts, client: String?, toBucket index: Int) {
        // New calls join a trimmed bucket only when the ring is full (never, by
        // the bound above); its content then becomes the base of later trims.
        buckets[index].untrimmed = nil
        buckets[index].counts.add(counts)
        totals.add(counts)
        if let client {
            buckets[index].clients[client, default: OutcomeCounts()].add(counts)
            // One lookup: the total is read and updated in place.
            let (startsFailing, startsSlow) = Self.add(counts, to: &clientTotals[client, default: OutcomeCounts()])
            if startsFailing { failingClientCount += 1 }
            if startsSlow { slowClientCount += 1 }
        }
    }

    /// Adds `counts` to a client's `total`; tells whether the client has just
    /// begun to fail or to be slow in this window.
    private static func add(_ counts: OutcomeCounts, to total: inout OutcomeCounts) -> (failing: Bool, slow: Bool) {
        let failing = total.failures == 0 && counts.failures > 0
        let slow = total.slowCalls == 0 && counts.slowCalls > 0
        total.add(counts)
        return (failing, slow)
    }

    /// Adds one outcome at `now`.
    public mutating func record(_ outcome: Outcome, client: String? = nil, at now: Timestamp) {
        var counts = OutcomeCounts()
        counts.add(outcome)
        record(counts, client: client, at: now)
    }

    /// The totals at `now` (time windows first drop expired buckets).
    public mutating func snapshot(at now: Timestamp) -> WindowSnapshot {
        advance(to: now)
        return WindowSnapshot(
            counts: totals, failingClients: failingClientCount, slowClients: slowClientCount, clients: clientTotals.count)
    }

    /// Each client's outcomes in the window.
    public var contributions: [String: OutcomeCounts] { clientTotals }

    /// Empties the window.
    public mutating func reset() {
        self = SlidingWindow(shape: shape)
    }

    // MARK: Count windows

    /// Drops the oldest calls so that `batch` (smaller than the window) fits,
    /// and moves the head to the bucket it goes into: the head if both fit in
    /// one bucket's capacity, else a new one.
    private mutating func makeRoom(for batch: OutcomeCounts) {
        let size = UInt64(max(shape.size, 1))
        if totals.calls + batch.calls > size {
            drop(totals.calls + batch.calls - size)
        }
        let fits = occupied > 0 && buckets[head].untrimmed == nil
            && buckets[head].counts.calls + batch.calls <= shape.bucketCapacity
        if !fits && occupied < buckets.count {
            head = (head + 1) % buckets.count
            buckets[head] = Bucket()
            occupied += 1
        }
    }

    /// Drops the oldest `calls` calls: whole buckets, then part of one.
    private mutating func drop(_ calls: UInt64) {
        var remaining = calls
        while remaining > 0, occupied > 0 {
            let oldest = (head - occupied + 1 + buckets.count) % buckets.count
            let held = buckets[oldest].counts.calls
            if held <= remaining {
                evict(oldest)
                occupied -= 1
                remaining -= held
            } else {
                trim(oldest, keeping: held - remaining)
                remaining = 0
            }
        }
    }

    /// Keeps `kept` of a bucket's calls, apportioned over its untrimmed content.
    private mutating func trim(_ index: Int, keeping kept: UInt64) {
        let bucket = buckets[index]
        let base = bucket.untrimmed ?? Self.cells(of: bucket)
        let shares = Self.apportion(kept, over: base.map(\.counts))
        var next = Bucket(untrimmed: base)
        for (cell, share) in zip(base, shares) {
            next.counts.add(share)
            guard let client = cell.client else { continue }
            if share.calls > 0 { next.clients[client] = share }
            replace(bucket.clients[client] ?? OutcomeCounts(), with: share, client: client)
        }
        totals.subtract(bucket.counts)
        totals.add(next.counts)
        buckets[index] = next
    }

    /// A bucket's content as cells: anonymous calls first, then clients by name.
    private static func cells(of bucket: Bucket) -> [Cell] {
        var anonymous = bucket.counts
        for counts in bucket.clients.values { anonymous.subtract(counts) }
        var cells = anonymous.calls > 0 ? [Cell(client: nil, counts: anonymous)] : []
        for client in bucket.clients.keys.sorted() {
            cells.append(Cell(client: client, counts: bucket.clients[client] ?? OutcomeCounts()))
        }
        return cells
    }

    /// `kept` calls apportioned over `cells`' outcomes by largest remainder:
    /// each outcome of each cell gets ⌊kept × count / total⌋, and the calls
    /// still missing go to the largest remainders, earlier ones first on a tie.
    /// `kept` is at most the cells' calls; ignored outcomes are not kept.
    static func apportion(_ kept: UInt64, over cells: [OutcomeCounts]) -> [OutcomeCounts] {
        let order: [Outcome] = [.success, .failure, .slowSuccess, .slowFailure]
        let total = cells.reduce(UInt64(0)) { $0 + $1.calls }
        guard kept < total else { return cells.map { var c = $0; c.ignored = 0; return c } }
        var shares = Array(repeating: OutcomeCounts(), count: cells.count)
        var remainders: [(remainder: UInt64, cell: Int, outcome: Int)] = []
        var given: UInt64 = 0
        for (i, cell) in cells.enumerated() {
            for (j, outcome) in order.enumerated() where cell[outcome] > 0 {
                let (quotient, remainder) = total.dividingFullWidth(cell[outcome].multipliedFullWidth(by: kept))
                shares[i].add(outcome, count: quotient)
                given += quotient
                if remainder > 0 { remainders.append((remainder, i, j)) }
            }
        }
        // The remainders sum to (kept - given) × total, each below total, so
        // there are at least kept - given of them.
        remainders.sort { ($0.remainder, -$0.cell, -$0.outcome) > ($1.remainder, -$1.cell, -$1.outcome) }
        for r in remainders.prefix(Int(kept - given)) {
            shares[r.cell].add(order[r.outcome])
        }
        return shares
    }

    // MARK: Time windows

    private mutating func advance(to now: Timestamp) {
        guard shape.kind == .time else { return }
        let width = shape.bucketMs
        let aligned = now.milliseconds - ((now.milliseconds % width) + width) % width
        guard let start = headStart else {
            headStart = aligned
            return
        }
        guard aligned > start else { return }
        let steps = (aligned - start) / width
        if steps >= Int64(buckets.count) {
            reset()
            headStart = aligned
            return
        }
        for _ in 0..<steps {
            head = (head + 1) % buckets.count
            evict(head)
        }
        headStart = aligned
    }

    // MARK: Both

    /// Empties bucket `index`, removing what it held from the totals.
    private mutating func evict(_ index: Int) {
        let evicted = buckets[index]
        buckets[index] = Bucket()
        totals.subtract(evicted.counts)
        for (client, counts) in evicted.clients {
            replace(counts, with: OutcomeCounts(), client: client)
        }
    }

    /// Replaces `old` by `new` in a client's total, keeping the quorum counts.
    private mutating func replace(_ old: OutcomeCounts, with new: OutcomeCounts, client: String) {
        guard old != new else { return }
        let before = clientTotals[client] ?? OutcomeCounts()
        var after = before
        after.subtract(old)
        after.add(new)
        if (before.failures > 0) != (after.failures > 0) { failingClientCount += after.failures > 0 ? 1 : -1 }
        if (before.slowCalls > 0) != (after.slowCalls > 0) { slowClientCount += after.slowCalls > 0 ? 1 : -1 }
        clientTotals[client] = after.isEmpty ? nil : after
    }
}

/// A window's totals at one moment.
public struct WindowSnapshot: Sendable, Hashable {
    /// Outcomes in the window.
    public var counts: OutcomeCounts
    /// Distinct clients with at least one failure in the window.
    public var failingClients: Int
    /// Distinct clients with at least one slow call in the window.
    public var slowClients: Int = 0
    /// Distinct clients with any outcome in the window.
    public var clients: Int

    /// A snapshot.
    public init(counts: OutcomeCounts, failingClients: Int, slowClients: Int = 0, clients: Int) {
        self.counts = counts
        self.failingClients = failingClients
        self.slowClients = slowClients
        self.clients = clients
    }

    /// Failures over calls, in percent; 0 without calls.
    public var failureRate: Double {
        counts.calls == 0 ? 0 : Double(counts.failures) * 100 / Double(counts.calls)
    }

    /// Slow calls over calls, in percent; 0 without calls.
    public var slowCallRate: Double {
        counts.calls == 0 ? 0 : Double(counts.slowCalls) * 100 / Double(counts.calls)
    }
}
