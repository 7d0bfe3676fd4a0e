/// A bulkhead's admission logic: at most `maxConcurrent` calls run; up to
/// `maxQueued` wait, higher priority first and first-come first-served within
/// a priority; a waiter is rejected after `maxWaitMs`. The owner runs the calls,
/// wakes the waiters this returns, and calls `expire(at:)` at `nextDeadline`.
public struct BulkheadStateMachine: Sendable {
    /// The answer to `acquire`.
    public enum Admission: Sendable, Hashable {
        /// Run now; call `release` when done.
        case run
        /// Wait; `release` or `expire` will say when the call may run or is rejected.
        case queued(deadline: Timestamp)
        /// Rejected at once: the queue is full (or there is none).
        case rejected
    }

    /// Counters for metrics.
    public struct Counts: Sendable, Hashable {
        /// Calls running now.
        public var active = 0
        /// Calls waiting now.
        public var queued = 0
        /// Calls rejected since creation (full queue or timed out in it).
        public var rejected = 0
        /// Calls admitted since creation.
        public var admitted = 0
    }

    private struct Waiter: Sendable, Hashable {
        var id: UInt64
        var deadline: Timestamp
    }

    /// The policy.
    public private(set) var policy: BulkheadPolicy
    /// The counters.
    public private(set) var counts = Counts()
    /// Waiting calls per priority, oldest first.
    private var queues: [Int: [Waiter]] = [:]

    /// An empty bulkhead.
    public init(policy: BulkheadPolicy) {
        self.policy = policy
    }

    /// Asks to run call `id`.
    /// `now` is read only when the call has to queue.
    public mutating func acquire(_ id: UInt64, priority: Int = 0, at now: @autoclosure () -> Timestamp) -> Admission {
        if counts.active < policy.maxConcurrent, counts.queued == 0 {
            counts.active += 1
            counts.admitted += 1
            return .run
        }
        guard counts.queued < policy.maxQueued else {
            counts.rejected += 1
            return .rejected
        }
        let deadline = now().adding(milliseconds: policy.maxWaitMs)
        queues[priority, default: []].append(Waiter(id: id, deadline: deadline))
        counts.queued += 1
        return .queued(deadline: deadline)
    }

    /// A running call finished; returns the waiting call that may run now, if
    /// any. Waiting calls whose wait ran out by `now` are refused first and
    /// appended to `expired` (their callers must be told). `now` is read only
    /// when calls are queued.
    public mutating func release(at now: @autoclosure () -> Timestamp, expired: inout [UInt64]) -> UInt64? {
        counts.active = max(0, counts.active - 1)
        if !queues.isEmpty { expired += expire(at: now()) }
        guard counts.active < policy.maxConcurrent, let next = popNext() else { return nil }
        counts.active += 1
        counts.admitted += 1
        return next
    }

    /// Removes waiting call `id` (its caller gave up). Returns false if it was not waiting.
    public mutating func cancel(_ id: UInt64) -> Bool {
        for (priority, queue) in queues {
            if let index = queue.firstIndex(where: { $0.id == id }) {
                queues[priority]?.remove(at: index)
                if queues[priority]?.isEmpty == true { queues[priority] = nil }
                counts.queued -= 1
                return true
            }
        }
        return false
    }

    /// Rejects and returns the waiting calls whose deadline passed.
    public mutating func expire(at now: Timestamp) -> [UInt64] {
        var expired: [UInt64] = []
        for (priority, queue) in queues {
            let split = queue.firstIndex { $0.deadline > now } ?? queue.count
            guard split > 0 else { continue }
            expired += queue[..<split].map(\.id)
            queues[priority] = split == queue.count ? nil : Array(queue[split...])
        }
        counts.queued -= expired.count
        counts.rejected += expired.count
        return expired.sorted()
    }

    /// Adopts a changed policy; waiters already queued keep their deadlines.
    /// Returns calls that may run now because the limit grew.
    public mutating func updatePolicy(_ newPolicy: BulkheadPolicy, at now: Timestamp) -> [UInt64] {
        policy = newPolicy
        var started: [UInt64] = []
        while counts.active < policy.maxConcurrent, let next = popNext() {
            counts.active += 1
            counts.admitted += 1
            started.append(next)
        }
        return started
    }

    /// When the earliest waiter times out.
    public var nextDeadline: Timestamp? {
        queues.values.compactMap { $0.first?.deadline }.min()
    }

    private mutating func popNext() -> UInt64? {
        guard let priority = queues.keys.max(), var queue = queues[priority], !queue.isEmpty else { return nil }
        let first = queue.removeFirst()
        queues[priority] = queue.isEmpty ? nil : queue
        counts.queued -= 1
        return first.id
    }
}
