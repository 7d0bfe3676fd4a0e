import NIOConcurrencyHelpers
import Synchronization

/// Calls being served, a wait for the moment none is, and whether
/// one-request calls (unary and server-streaming) may start from their
/// streams' event loops: only while `serve()` runs.
/// Before, and once it has stopped, their streams go where every other call's
/// go: queued for `serve()`, or closed with it.
package final class CallCounter: Sendable {
    /// Bit 0: closed to one-request calls. Above it, in steps of 2: parts
    /// still open, two per call. A one-request call's answer and its
    /// handler's task each end one part, on their own threads, so that
    /// neither waits for the other.
    private let state = Atomic<Int>(1)
    private let waiters = NIOLockedValueBox<[CheckedContinuation<Void, Never>]>([])

    /// Closed to one-request calls until `open()`.
    package init() {}

    /// Calls being served.
    var value: Int { ((state.load(ordering: .relaxed) >> 1) + 1) / 2 }

    /// Lets one-request calls start (`serve()` runs).
    package func open() { state.bitwiseAnd(~1, ordering: .relaxed) }

    /// Stops one-request calls from starting (`serve()` is ending).
    func close() { state.bitwiseOr(1, ordering: .relaxed) }

    /// Counts a one-request call, unless closed to them.
    func tryAdd() -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & 1 == 0 {
            let (exchanged, original) = state.compareExchange(expected: current, desired: current + 4, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Counts a call (`serve()`'s own).
    func add() { state.add(4, ordering: .relaxed) }

    /// Ends `parts` of a call (2: the whole call).
    func remove(parts: Int = 2) {
        guard state.subtract(2 * parts, ordering: .acquiringAndReleasing).newValue >> 1 == 0 else { return }
        for waiter in waiters.withLockedValue({ w in defer { w = [] }; return w }) { waiter.resume() }
    }

    /// Returns once no call is being served.
    func waitUntilNone() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let none = waiters.withLockedValue { w in
                if state.load(ordering: .acquiring) >> 1 == 0 { return true }
                w.append(continuation)
                return false
            }
            if none { continuation.resume() }
        }
    }
}
