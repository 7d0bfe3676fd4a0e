import FuseboxEtcd
import FuseboxTesting
import XCTest

/// Watches against a real etcd 3.4 cluster: history, failover, compaction, progress.
final class EtcdWatchTests: XCTestCase {
    func testWatchFromARevisionSeesEveryChangeAndResumesAfterItsMemberIsKilled() async throws {
        try await withCluster { cluster, anyClient in
            // The watch's member is the leader: losing it also costs an election.
            let leader = try await cluster.leaderIndex(anyClient)
            let client = try cluster.client(preferring: leader)
            let prefix = b("jobs/")
            let first = try await client.put(b("jobs/1"), b("a"))
            _ = try await client.put(b("jobs/2"), b("b"))
            _ = try await client.deleteRange(b("jobs/1"))
            _ = try await client.put(b("other"), b("not watched"))

            let watch = client.watch(prefix, rangeEnd: EtcdKeys.prefixEnd(prefix), startRevision: first.revision)
            let events = Collected<EtcdWatchEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await watch.run() }
                group.addTask { for await event in watch { events.append(event) } }

                await waitUntil("the three past changes", timeout: 10) { events.all.count >= 3 }
                XCTAssertEqual(client.currentEndpoint, cluster.endpoint(leader), "the watch is on the first endpoint")
                // Kill the member the watch (and the client) is connected to.
                cluster.kill(leader)
                for i in 3...5 { _ = try await client.put(b("jobs/\(i)"), b("after the kill \(i)")) }
                let last = try await client.deleteRange(b("jobs/2"))
                await waitUntil("the changes made after the kill", timeout: 15) { events.all.count >= 7 }
                group.cancelAll()

                let changes = events.all.filter { if case .progress = $0 { return false } else { return true } }
                XCTAssertEqual(changes.count, 7, "every change exactly once: \(changes)")
                let described = changes.map { event -> String in
                    switch event {
                    case .put(let kv): return "put \(kv.keyString)=\(kv.valueString)"
                    case .delete(let kv): return "delete \(kv.keyString)"
                    default: return "\(event)"
                    }
                }
                XCTAssertEqual(described, [
                    "put jobs/1=a", "put jobs/2=b", "delete jobs/1",
                    "put jobs/3=after the kill 3", "put jobs/4=after the kill 4", "put jobs/5=after the kill 5", "delete jobs/2",
                ])
                let revisions = changes.map(\.revision)
                XCTAssertEqual(revisions, revisions.sorted())
                XCTAssertEqual(Set(revisions).count, revisions.count, "no change repeated")
                XCTAssertEqual(revisions.first, first.revision)
                XCTAssertEqual(revisions.last, last.revision)
                XCTAssertNotEqual(client.currentEndpoint, cluster.endpoint(leader))
            }
            await client.close()
        }
    }

    func testACompactedStartRevisionYieldsCompactedAndProgressIsReported() async throws {
        try await withCluster { _, client in
            let first = try await client.put(b("k"), b("1"))
            _ = try await client.put(b("k"), b("2"))
            let latest = try await client.put(b("k"), b("3"))
            _ = try await client.compact(revision: latest.revision, physical: true)

            // A read at a compacted revision fails with .compacted.
            do {
                _ = try await client.range(b("k"), revision: first.revision)
                XCTFail("a read at a compacted revision succeeded")
            } catch let error as EtcdError {
                XCTAssertEqual(error.code, .compacted, "\(error)")
            }

            // A watch from a compacted revision reports .compacted and ends.
            let stale = client.watch(b("k"), startRevision: first.revision)
            let staleEvents = Collected<EtcdWatchEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await stale.run() }
                group.addTask { for await event in stale { staleEvents.append(event) } }
                try await group.waitForAll()
            }
            XCTAssertEqual(staleEvents.all, [.compacted(revision: latest.revision)])

            // The answer is a re-read and a watch from its revision + 1; with
            // progressNotify, etcd (here every second) says how far it got.
            let reread = try await client.range(b("k"))
            XCTAssertEqual(reread.kvs.first?.valueString, "3")
            let fresh = client.watch(b("k"), startRevision: reread.revision + 1, progressNotify: true)
            let freshEvents = Collected<EtcdWatchEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await fresh.run() }
                group.addTask { for await event in fresh { freshEvents.append(event) } }
                await waitUntil("a progress notification", timeout: 8) {
                    freshEvents.all.contains { if case .progress = $0 { return true } else { return false } }
                }
                let put = try await client.put(b("k"), b("4"))
                await waitUntil("the new put", timeout: 5) { freshEvents.all.contains { $0.revision == put.revision } }
                group.cancelAll()
            }
            for case .progress(let revision) in freshEvents.all {
                XCTAssertGreaterThanOrEqual(revision, reread.revision)
            }
        }
    }
}
