public import FuseboxCore
import NIOConcurrencyHelpers

/// A binary min-heap of (deadline, item): the coordinator's timer asks it for
/// the earliest deadline instead of scanning every breaker. Entries are not
/// removed when a deadline changes; the owner checks each popped entry
/// against the item's current deadline (lazy deletion).
public struct DeadlineHeap<Item: Sendable>: Sendable {
    private var entries: [(deadline: Timestamp, item: Item)] = []

    /// Empty.
    public init() {}

    /// Entries held (stale ones included).
    public var count: Int { entries.count }

    /// The earliest deadline.
    public var earliest: Timestamp? { entries.first?.deadline }

    /// Adds an entry.
    public mutating func push(_ deadline: Timestamp, _ item: Item) {
        entries.append((deadline, item))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    public mutating func popDue(at now: Timestamp) -> (deadline: Timestamp, item: Item)? {
        guard let first = entries.first, first.deadline <= now else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < entries.count, entries[left].deadline < entries[smallest].deadline { smallest = left }
                if right < entries.count, entries[right].deadline < entries[smallest].deadline { smallest = right }
                if smallest == parent { break }
                entries.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}

/// A wake-up signal for one waiting task; rings coalesce while nobody waits.
public final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var closed = false
        var waiter: CheckedContinuation<Bool, Never>?
    }

    private let state = NIOLockedValueBox(State())

    /// A doorbell.
    public init() {}

    /// Wakes the waiter (or the next one to wait).
    public func ring() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Bool, Never>? in
            guard let w = s.waiter else {
                s.rung = true
                return nil
            }
            s.waiter = nil
            return w
        }
        waiter?.resume(returning: true)
    }

    /// Waits for a ring; false once the bell is closed or the task is cancelled.
    public func wait() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLockedValue { s -> Bool? in
                    if s.closed || Task.isCancelled { return false }
                    if s.rung {
                        s.rung = false
                        return true
                    }
                    s.waiter = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLockedValue { s -> CheckedContinuation<Bool, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: false)
        }
    }

    /// Ends every wait, now and later.
    public func close() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Bool, Never>? in
            s.closed = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: false)
    }
}
