import NIOConcurrencyHelpers
import NIOCore

/// Something a `DeadlineTimer` tells when its deadline passes.
protocol DeadlineAction: AnyObject, Sendable {
    /// Called once, on the timer's event loop.
    func deadlinePassed()
}

/// Deadlines for guarded calls, many at once, on one event loop.
///
/// Arming and disarming a deadline takes a lock and touches a heap; the event
/// loop is woken only when a new deadline is earlier than every armed one.
/// Calls with the same timeout arm ever-later deadlines, so a stream of calls
/// that finish in time costs no timer syscalls and no event-loop wakeups
/// (an `EventLoop.scheduleTask` from another thread, and its cancellation,
/// wake the loop each time).
final class DeadlineTimer: Sendable {
    /// What a deadline does when it passes, once, unless disarmed before (an
    /// object rather than a closure: arming allocates nothing for it).
    typealias Action = any DeadlineAction

    private struct Armed: Comparable {
        var at: NIODeadline
        var id: UInt64
        static func < (a: Armed, b: Armed) -> Bool { (a.at, a.id) < (b.at, b.id) }
    }

    private struct State {
        var actions: [UInt64: Action] = [:]
        /// Min-heap by deadline; disarmed entries stay until popped or compacted.
        var heap: [Armed] = []
        var nextID: UInt64 = 1
        /// The one pending wake-up: when, its token, and its handle. A wake-up
        /// whose token is no longer current does nothing.
        var wakeAt: NIODeadline?
        var wakeToken: UInt64 = 0
        var wake: Scheduled<Void>?
    }

    private let eventLoop: any EventLoop
    // A pthread lock (NIO's), which ThreadSanitizer follows on its contended path too.
    private let state = NIOLockedValueBox(State())

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Runs `action` on the event loop at `deadline` unless `disarm` is called first.
    func arm(at deadline: NIODeadline, _ action: Action) -> UInt64 {
        state.withLockedValue { s in
            let id = s.nextID
            s.nextID &+= 1
            s.actions[id] = action
            Self.push(Armed(at: deadline, id: id), into: &s.heap)
            if s.wakeAt.map({ deadline < $0 }) ?? true {
                s.wake?.cancel()
                schedule(at: deadline, &s)
            }
            return id
        }
    }

    /// Forgets a deadline; true when it had not fired yet.
    @discardableResult
    func disarm(_ id: UInt64) -> Bool {
        state.withLockedValue { s in
            guard s.actions.removeValue(forKey: id) != nil else { return false }
            // Disarmed entries are dropped in bulk once they outnumber the armed ones.
            if s.heap.count > 64, s.heap.count > 2 * s.actions.count {
                let armed = s.actions
                s.heap.removeAll { armed[$0.id] == nil }
                s.heap.sort()  // a sorted array is a valid min-heap
            }
            return true
        }
    }

    /// Number of armed deadlines.
    var armedCount: Int { state.withLockedValue { $0.actions.count } }

    /// Replaces the pending wake-up (called under the lock; NIO runs the task
    /// later, never inside this call).
    private func schedule(at deadline: NIODeadline, _ s: inout State) {
        s.wakeToken &+= 1
        let token = s.wakeToken
        s.wakeAt = deadline
        s.wake = eventLoop.scheduleTask(deadline: deadline) { [self] in fire(token) }
    }

    private func fire(_ token: UInt64) {
        let now = NIODeadline.now()
        let due = state.withLockedValue { s -> [Action] in
            guard token == s.wakeToken else { return [] }  // replaced by an earlier wake-up
            var due: [Action] = []
            while let top = s.heap.first, top.at <= now {
                Self.popMin(&s.heap)
                if let action = s.actions.removeValue(forKey: top.id) { due.append(action) }
            }
            while let top = s.heap.first, s.actions[top.id] == nil { Self.popMin(&s.heap) }
            if let next = s.heap.first?.at {
                schedule(at: next, &s)
            } else {
                s.wakeAt = nil
                s.wake = nil
            }
            return due
        }
        for action in due { action.deadlinePassed() }
    }

    private static func push(_ element: Armed, into heap: inout [Armed]) {
        heap.append(element)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child] < heap[parent] else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func popMin(_ heap: inout [Armed]) {
        guard !heap.isEmpty else { return }
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left] < heap[smallest] { smallest = left }
            if right < heap.count, heap[right] < heap[smallest] { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
