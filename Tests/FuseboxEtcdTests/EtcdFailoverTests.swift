import FuseboxTesting
import FuseboxEtcd
import XCTest

/// One of three members dies: the client carries on with the other two.
final class EtcdFailoverTests: XCTestCase {
    func testKillingOneOfThreeMembersTheClientKeepsWorkingThroughTheOthers() async throws {
        try await withCluster { cluster, anyClient in
            // The hardest member to lose: the leader, which is also the one the client uses.
            let leader = try await cluster.leaderIndex(anyClient)
            let client = try cluster.client(preferring: leader)
            let before = try await client.put(b("counter"), b("0"))
            XCTAssertEqual(client.currentEndpoint, cluster.endpoint(leader))
            let killed = try await client.status(of: cluster.endpoint(leader))
            XCTAssertEqual(killed.leader, killed.memberID)
            cluster.kill(leader)
            let started = ContinuousClock.now

            var revision = before.revision
            for i in 1...10 {
                let read = try await client.range(b("counter"))
                guard let current = read.kvs.first else { return XCTFail("counter vanished") }
                XCTAssertEqual(current.valueString, "\(i - 1)")
                let cas = try await client.txn(
                    [.modRevision(b("counter"), is: current.modRevision)], success: [.put(key: b("counter"), value: b("\(i)"))])
                XCTAssertTrue(cas.succeeded)
                XCTAssertGreaterThan(cas.revision, revision)
                revision = cas.revision
            }
            print("ten read-CAS rounds after killing the leader took \(ContinuousClock.now - started)")
            XCTAssertNotEqual(client.currentEndpoint, cluster.endpoint(leader))

            do {
                _ = try await client.status(of: cluster.endpoint(leader))
                XCTFail("the killed member answered")
            } catch let error as EtcdError {
                XCTAssertEqual(error.code, .unavailable, "\(error)")
                XCTAssertEqual(error.endpoint, cluster.endpoint(leader).description)
            }
            for i in cluster.members.indices where i != leader {
                let status = try await client.status(of: cluster.endpoint(i))
                XCTAssertTrue(status.isHealthy, "\(status)")
                XCTAssertEqual(status.version, "3.4.23")
                XCTAssertGreaterThanOrEqual(status.revision, revision)
                XCTAssertNotEqual(status.leader, killed.memberID, "a new leader was elected")
            }

            // A client given only the dead member and one live one works too.
            let live = cluster.members.indices.first { $0 != leader } ?? 0
            let pair = try cluster.client(endpoints: [cluster.endpoints[leader], cluster.endpoints[live]])
            let seen = try await pair.get(b("counter"))
            XCTAssertEqual(seen?.valueString, "10")
            await pair.close()
            await client.close()
        }
    }
}
