import FuseboxCore
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import FuseboxClient

@Suite struct AsyncBulkheadTests {
    /// A queued call whose wait runs out just as a running call finishes (before
    /// the deadline timer gets to it) is refused, not left waiting forever.
    @Test func aQueuedCallWhoseWaitRanOutWhenASlotFreedIsRefusedNotLost() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let bulkhead = AsyncBulkhead(BulkheadPolicy(maxConcurrent: 1, maxQueued: 1, maxWaitMs: 20), timer: DeadlineTimer(eventLoop: loop))
        #expect(await bulkhead.acquire())
        let queued = Task { await bulkhead.acquire() }
        for _ in 0..<500 where bulkhead.counts.queued == 0 { try await Task.sleep(for: .milliseconds(2)) }
        #expect(bulkhead.counts.queued == 1)

        // Hold the timer's event loop while the queued call's 20 ms run out, so
        // the slot is freed before the timer can expire the call.
        let held = Mutex(true)
        loop.execute { while held.withLock({ $0 }) { usleep(1_000) } }
        try await Task.sleep(for: .milliseconds(60))
        bulkhead.release()
        held.withLock { $0 = false }

        // Bounded: a lost waiter never answers, not even to cancellation, so the
        // wait is raced against a timer outside any task group (a group would
        // wait for it); a lost waiter's task is then left behind, as it was lost.
        let answer = await FirstAnswer.of(within: .seconds(5)) { await queued.value }
        #expect(answer == false, "the queued call was refused (false); nil means it was never answered")
        #expect(bulkhead.counts.active == 0)
        #expect(bulkhead.counts.queued == 0)
        try await group.shutdownGracefully()
    }
}

/// The value `body` gives, or nil when `limit` passes first; `body`'s task is
/// left running then (it may never end).
private final class FirstAnswer<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T?, Never>?>

    private init(_ continuation: CheckedContinuation<T?, Never>) {
        self.continuation = Mutex(continuation)
    }

    private func answer(_ value: T?) {
        continuation.withLock { $0.take() }?.resume(returning: value)
    }

    static func of(within limit: Duration, _ body: @escaping @Sendable () async -> T) async -> T? {
        let timer = Mutex<Task<Void, Never>?>(nil)
        let value: T? = await withCheckedContinuation { continuation in
            let first = FirstAnswer(continuation)
            Task { first.answer(await body()) }
            timer.withLock { $0 = Task { try? await Task.sleep(for: limit); first.answer(nil) } }
        }
        timer.withLock { $0?.cancel() }
        return value
    }
}
