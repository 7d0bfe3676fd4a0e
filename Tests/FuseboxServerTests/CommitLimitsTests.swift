import FuseboxAuthority
import FuseboxCore
import XCTest

/// How the coordinator cuts its queue of breaker changes into commits a
/// store can take (etcd: at most 128 operations per transaction).
final class CommitLimitsTests: XCTestCase {
    private func queue(_ audits: [Int], names: [String]? = nil) -> [(key: BreakerKey, audits: Int)] {
        audits.enumerated().map { i, n in (key: BreakerKey(registry: "default", name: names?[i] ?? "b\(i)"), audits: n) }
    }

    /// etcd's limits: 60 changes, 120 writes. Sixty operator actions that each
    /// found an override expired carry two entries each: 180 writes would be
    /// one transaction etcd refuses; they go as 40 and 20.
    func testAGroupStopsBeforeItsWritesPassTheLimit() {
        let etcd = CommitLimits(maxChanges: 60, distinctBreakers: true, maxWrites: 120)
        XCTAssertEqual(etcd.taking(queue(Array(repeating: 2, count: 60))), 40)
        XCTAssertEqual(etcd.taking(queue(Array(repeating: 1, count: 80))), 60, "one entry each: the change limit decides")
        XCTAssertEqual(etcd.taking(queue(Array(repeating: 0, count: 80))), 60)
        XCTAssertEqual(etcd.taking(queue([0, 0, 5, 200, 0])), 3, "the change that would pass the limit waits for the next group")
        XCTAssertEqual(etcd.taking(queue([200, 0])), 1, "a change too large on its own still goes, alone")
        XCTAssertEqual(etcd.taking(queue([])), 0)
    }

    /// A breaker written twice ends the group (etcd refuses a transaction
    /// that writes one key twice); order is kept.
    func testASecondChangeOfOneBreakerStartsTheNextGroup() {
        let etcd = CommitLimits(maxChanges: 60, distinctBreakers: true, maxWrites: 120)
        XCTAssertEqual(etcd.taking(queue([0, 1, 0, 0], names: ["a", "b", "a", "c"])), 2)
        let sqlite = CommitLimits(maxChanges: 4_096, distinctBreakers: false)
        XCTAssertEqual(sqlite.taking(queue([0, 1, 0, 0], names: ["a", "b", "a", "c"])), 4)
        XCTAssertEqual(sqlite.taking(queue(Array(repeating: 2, count: 5_000))), 4_096)
    }
}
