import FuseboxAuthority
@testable import FuseboxServer
import NIOConcurrencyHelpers
import XCTest

/// The queue of audit entries written off the request path (refused
/// handshakes; on a replica without etcd, every entry written on its own).
final class AuditQueueTests: XCTestCase {
    private func entry(_ n: Int) -> AuditRecord {
        AuditRecord(atMs: Int64(n), actor: nil, action: .connectionRefused, reason: "entry \(n)", allowed: false, deniedReason: "bad certificate")
    }

    /// Runs `body` while the queue's writer runs with `write`, as serve()
    /// does; the writer is cancelled when `body` returns.
    private func whileWriting(
        _ queue: AuditQueue, with write: @escaping @Sendable (AuditRecord) async -> Void, _ body: () async -> Void
    ) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await queue.run(write) }
            await body()
            group.cancelAll()
        }
    }

    /// At shutdown, what waits is written before `finish` returns (and so
    /// before the server closes its store), in order; none is left behind.
    func testWhatWaitsAtShutdownIsWrittenBeforeFinishReturns() async {
        let queue = AuditQueue(capacity: 100)
        let written = NIOLockedValueBox<[String]>([])
        // A store that takes its time: the entries are still waiting when finish is called.
        await whileWriting(queue, with: { record in
            try? await Task.sleep(for: .milliseconds(20))
            written.withLockedValue { $0.append(record.reason) }
        }) {
            for n in 0..<10 { queue.enqueue(entry(n)) }
            let left = await queue.finish(within: .seconds(10))
            XCTAssertEqual(left, 0)
            XCTAssertEqual(written.withLockedValue { $0 }, (0..<10).map { "entry \($0)" })
            XCTAssertEqual(queue.waiting, 0)
        }
    }

    /// A store that does not answer (etcd gone): `finish` gives up at its
    /// limit and says how many entries it gave up on; the writer writes none
    /// of them late (they are counted already), and an entry that comes after
    /// `finish` is refused, not kept.
    func testAWriterThatCannotWriteIsGivenUpOnAndTheEntriesCounted() async {
        let queue = AuditQueue(capacity: 100)
        let attempted = NIOLockedValueBox<[String]>([])
        // No answer until the writer is cancelled.
        await whileWriting(queue, with: { record in
            attempted.withLockedValue { $0.append(record.reason) }
            try? await Task.sleep(for: .seconds(120))
        }) {
            for n in 0..<3 { queue.enqueue(entry(n)) }
            let taken = ContinuousClock.now + .seconds(20)
            while attempted.withLockedValue({ $0.isEmpty }), ContinuousClock.now < taken {
                try? await Task.sleep(for: .milliseconds(5))
            }
            let started = ContinuousClock.now
            let left = await queue.finish(within: .milliseconds(300))
            XCTAssertEqual(left, 2, "the two behind the entry being written (write() counts that one if it fails)")
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "finish waits its limit, not the writer")
            queue.enqueue(entry(9))
        }
        XCTAssertEqual(attempted.withLockedValue { $0 }, ["entry 0"], "nothing given up on is written late")
        XCTAssertEqual(queue.waiting, 0, "an entry after finish is refused")
    }

    /// Under a flood the newest are kept, at most `capacity`.
    func testAFullQueueKeepsTheNewest() async {
        let queue = AuditQueue(capacity: 3)
        for n in 0..<8 { queue.enqueue(entry(n)) }
        XCTAssertEqual(queue.waiting, 3)
        let written = NIOLockedValueBox<[String]>([])
        await whileWriting(queue, with: { record in written.withLockedValue { $0.append(record.reason) } }) {
            let left = await queue.finish(within: .seconds(10))
            XCTAssertEqual(left, 0)
        }
        XCTAssertEqual(written.withLockedValue { $0 }, ["entry 5", "entry 6", "entry 7"])
    }
}
