import FuseboxTesting
import FuseboxWire
import XCTest

@testable import FuseboxEtcd

/// The watch cursor fed etcd's responses directly: where a watch resumes,
/// what it reports, and that nothing is reported twice across reconnections.
final class EtcdWatchCursorTests: XCTestCase {
    private func response(
        revision: Int64, created: Bool = false, canceled: Bool = false, compactRevision: Int64 = 0, reason: String = "",
        events: [(Mvccpb_Event.EventType, String, Int64)] = []
    ) -> Etcdserverpb_WatchResponse {
        var r = Etcdserverpb_WatchResponse()
        var header = Etcdserverpb_ResponseHeader()
        header.revision = revision
        r.header = header
        r.created = created
        r.canceled = canceled
        r.compactRevision = compactRevision
        r.cancelReason = reason
        r.events = events.map { type, key, modRevision in
            var kv = Mvccpb_KeyValue()
            kv.key = Array(key.utf8)
            kv.modRevision = modRevision
            var event = Mvccpb_Event()
            event.type = type
            event.kv = kv
            return event
        }
        return r
    }

    private func revisions(_ action: EtcdWatch.Cursor.Action) -> [Int64] {
        guard case .deliver(let events) = action else { return [] }
        return events.map(\.revision)
    }

    func testAWatchFromNowResumesAfterTheRevisionItWasCreatedAt() {
        var cursor = EtcdWatch.Cursor(startRevision: 0)
        XCTAssertEqual(cursor.nextRevision, 0, "the first stream starts from now")
        XCTAssertEqual(cursor.receive(response(revision: 41, created: true)), .created)
        XCTAssertEqual(cursor.nextRevision, 42)
        XCTAssertEqual(revisions(cursor.receive(response(revision: 43, events: [(.put, "a", 43)]))), [43])
        XCTAssertEqual(cursor.nextRevision, 44)
        // A new stream (after a reconnection) is created at a later revision: the cursor keeps its place.
        XCTAssertEqual(cursor.receive(response(revision: 50, created: true)), .created)
        XCTAssertEqual(cursor.nextRevision, 44)
    }

    func testEventsAreReportedOnceAndInOrderAcrossAReplay() {
        var cursor = EtcdWatch.Cursor(startRevision: 10)
        _ = cursor.receive(response(revision: 20, created: true))
        XCTAssertEqual(cursor.nextRevision, 10, "history from the start revision comes next")
        let first = cursor.receive(response(revision: 20, events: [(.put, "a", 10), (.put, "b", 11), (.put, "c", 11)]))
        XCTAssertEqual(revisions(first), [10, 11, 11], "one transaction's events share its revision")
        XCTAssertEqual(cursor.nextRevision, 12)
        // A member that replays older events after a reconnection: only the new ones pass.
        let replay = cursor.receive(response(revision: 20, events: [(.put, "b", 11), (.delete, "a", 12)]))
        XCTAssertEqual(replay, .deliver([.delete(EtcdKeyValue(key: Array("a".utf8), value: [], modRevision: 12))]))
        XCTAssertEqual(cursor.nextRevision, 13)
    }

    func testProgressMovesTheCursorAndIsReported() {
        var cursor = EtcdWatch.Cursor(startRevision: 5)
        XCTAssertEqual(cursor.receive(response(revision: 30)), .deliver([.progress(revision: 30)]))
        XCTAssertEqual(cursor.nextRevision, 31, "nothing up to 30 is left to report")
        XCTAssertEqual(cursor.receive(response(revision: 20)), .deliver([.progress(revision: 20)]))
        XCTAssertEqual(cursor.nextRevision, 31, "an older progress report never moves the cursor back")
    }

    func testCompactionAndCancellationEndTheWatch() {
        var cursor = EtcdWatch.Cursor(startRevision: 3)
        XCTAssertEqual(cursor.receive(response(revision: 90, canceled: true, compactRevision: 77)), .end(.compacted(77)))
        XCTAssertEqual(cursor.nextRevision, 3, "the caller re-reads; the cursor does not pretend otherwise")
        XCTAssertEqual(
            cursor.receive(response(revision: 90, canceled: true, reason: "permission denied")), .end(.canceled("permission denied")))
        XCTAssertEqual(cursor.receive(response(revision: 90, canceled: true)), .end(.canceled("no reason given")))
    }
}
