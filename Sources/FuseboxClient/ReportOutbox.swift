import NIOConcurrencyHelpers

/// A bounded queue of encoded outcome batches between the reporter and the
/// StreamOutcomes call. When full, the oldest batch is dropped: newer counts
/// matter more, and the server ignores stale generations anyway.
final class ReportOutbox: Sendable {
    /// One encoded batch.
    struct QueuedBatch: Sendable {
        var bytes: [UInt8]
        /// The batch counts failures (or failed probes): the call carrying it
        /// should end soon, so a trip below quorum in its response comes back.
        var carriesFailures: Bool
    }

    /// What `next()` hands the StreamOutcomes call.
    enum Delivery: Sendable {
        /// A batch to send.
        case batch(QueuedBatch)
        /// No batch, but time passed: check whether to end the call.
        case tick
    }

    private struct State {
        var items: [QueuedBatch] = []
        var waiter: CheckedContinuation<Delivery?, Never>?
        var closed = false
    }

    private let state = NIOLockedValueBox(State())
    static let capacity = 64

    func push(_ batch: QueuedBatch) {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
            guard !s.closed else { return nil }
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            if s.items.count >= Self.capacity { s.items.removeFirst() }
            s.items.append(batch)
            return nil
        }
        waiter?.resume(returning: .batch(batch))
    }

    /// Wakes a waiting `next()` with `.tick`; nothing if none is waiting.
    func tick() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: .tick)
    }

    /// The next batch, or a tick; nil once closed or when the waiting task is cancelled.
    func next() async -> Delivery? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Delivery?, Never>) in
                let ready = state.withLockedValue { s -> Delivery?? in
                    if !s.items.isEmpty { return .some(.batch(s.items.removeFirst())) }
                    if s.closed || Task.isCancelled { return .some(nil) }
                    s.waiter = continuation
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Puts batches a failed StreamOutcomes call carried back at the head of
    /// the queue, in their order, to go out on the next call (or, once
    /// closed, in what `drain()` returns). Beyond the capacity the oldest are
    /// dropped.
    func requeue(_ batches: [QueuedBatch]) {
        guard !batches.isEmpty else { return }
        state.withLockedValue { s in
            s.items.insert(contentsOf: batches, at: 0)
            if s.items.count > Self.capacity { s.items.removeFirst(s.items.count - Self.capacity) }
        }
    }

    /// True once `close()` was called.
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// Removes and returns every queued batch.
    func drain() -> [QueuedBatch] {
        state.withLockedValue { s in
            defer { s.items = [] }
            return s.items
        }
    }

    /// Wakes a waiting `next()` with nil; later pushes are dropped.
    func close() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
            s.closed = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }
}
