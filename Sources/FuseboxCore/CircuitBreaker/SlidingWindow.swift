/// A count- or time-based ring of buckets with running totals: recording and
/// taking a snapshot are O(1) (amortised over bucket advances, which are
/// bounded by the bucket count).
///
/// Count windows close a bucket once it holds its share of calls; a batch of
/// outcomes goes into one bucket whole, so the window holds between
/// `(buckets-1) × capacity + 1` and `buckets × capacity` calls (plus the
/// overshoot of the last batch). Time windows hold the buckets whose interval
/// ends within the last `size` seconds.
///
/// Ignored outcomes are neither success nor failure: they take no slot and
/// are not kept. Contributions are kept per client, so the fleet can apply its
/// quorum rule (distinct clients with failures, or with slow calls) without a scan.
public struct SlidingWindow: Sendable {
    /// What one bucket holds.
    struct Bucket: Sendable {
        var counts = OutcomeCounts()
        var clients: [String: OutcomeCounts] = [:]
    }

    /// The shape.
    public let shape: WindowShape
    private var buckets: [Bucket]
    private var head = 0
    private var headStart: Int64?
    private var totals = OutcomeCounts()
    private var clientTotals: [String: OutcomeCounts] = [:]
    private var failingClientCount = 0
    private var slowClientCount = 0

    /// An empty window.
    public init(shape: WindowShape) {
        self.shape = shape
        self.buckets = Array(repeating: Bucket(), count: max(1, shape.buckets))
    }

    /// Adds outcomes at `now`, from `client` if known.
    public mutating func record(_ outcomes: OutcomeCounts, client: String? = nil, at now: Timestamp) {
        var counts = outcomes
        counts.ignored = 0
        guard counts.calls > 0 else { return }
        advance(to: now)
        if shape.kind == .count, buckets[head].counts.calls >= shape.bucketCapacity {
            rotate()
        }
        buckets[head].counts.add(counts)
        totals.add(counts)
        if let client {
            buckets[head].clients[client, default: OutcomeCounts()].add(counts)
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
            let shape = self.shape
            self = SlidingWindow(shape: shape)
            headStart = aligned
            return
        }
        for _ in 0..<steps { rotate() }
        headStart = aligned
    }

    /// Moves the head to the oldest bucket, dropping what it held.
    private mutating func rotate() {
        head = (head + 1) % buckets.count
        let evicted = buckets[head]
        buckets[head] = Bucket()
        totals.subtract(evicted.counts)
        for (client, counts) in evicted.clients {
            guard var remaining = clientTotals[client] else { continue }
            let before = remaining
            remaining.subtract(counts)
            if before.failures > 0, remaining.failures == 0 { failingClientCount -= 1 }
            if before.slowCalls > 0, remaining.slowCalls == 0 { slowClientCount -= 1 }
            clientTotals[client] = remaining.isEmpty ? nil : remaining
        }
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
