import FuseboxEtcd
import FuseboxTesting
import XCTest

/// Leases against a real etcd 3.4 cluster.
final class EtcdLeaseTests: XCTestCase {
    func testKeepAliveKeepsAKeyPastItsTTLAcrossTheLossOfItsMemberAndRevokeDeletesIt() async throws {
        try await withCluster { cluster, anyClient in
            // The keepalive's member is the leader, killed halfway.
            let leader = try await cluster.leaderIndex(anyClient)
            let client = try cluster.client(preferring: leader)
            // 3 s: the keepalive must reconnect and etcd elect a leader within it. With
            // 2 s a loaded 2-core CI machine once took longer, and the client (rightly,
            // counting from its last renewal) gave the lease up while etcd kept it.
            let lease = try await client.grantLease(ttl: 3)
            XCTAssertEqual(lease.ttl, 3)
            _ = try await client.put(b("owner"), b("me"), lease: lease.id)
            let keepAlive = client.keepAlive(lease)
            let events = Collected<EtcdLeaseKeepAlive.Event>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await keepAlive.run() }
                group.addTask { for await event in keepAlive.events { events.append(event) } }
                // 1.5 TTLs: without renewals the key would be gone.
                try await Task.sleep(for: .seconds(4.5))
                let owner = try await client.get(b("owner"))
                XCTAssertEqual(owner?.lease, lease.id)
                XCTAssertGreaterThanOrEqual(events.all.count, 4, "renewed every third of the TTL: \(events.all)")
                XCTAssertTrue(events.all.allSatisfy { $0 == .renewed(ttl: 3) }, "\(events.all)")

                // Kill the member the keepalive stream is on; it moves to another
                // before the lease runs out, so the key outlives another 1.5 TTLs.
                let renewedBeforeKill = events.all.count
                cluster.kill(leader)
                try await Task.sleep(for: .seconds(4.5))
                let survivor = try await client.get(b("owner"))
                XCTAssertEqual(survivor?.lease, lease.id, "the lease survived its member")
                XCTAssertGreaterThan(events.all.count, renewedBeforeKill + 1, "renewals continued elsewhere: \(events.all)")
                XCTAssertTrue(events.all.allSatisfy { $0 == .renewed(ttl: 3) }, "\(events.all)")
                group.cancelAll()
            }

            try await client.revokeLease(lease.id)
            let revoked = try await client.get(b("owner"))
            XCTAssertNil(revoked, "revoking the lease deletes its key")

            // Keeping a revoked lease alive reports its loss at once.
            let lost = client.keepAlive(lease)
            let lostEvents = Collected<EtcdLeaseKeepAlive.Event>()
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await lost.run() }
                    group.addTask { for await event in lost.events { lostEvents.append(event) } }
                    try await group.waitForAll()
                }
                XCTFail("keeping a revoked lease alive did not fail")
            } catch let error as EtcdError {
                XCTAssertEqual(error.code, .leaseLost, "\(error)")
            }
            XCTAssertEqual(lostEvents.all.count, 1)
            if case .lost(let error)? = lostEvents.all.first { XCTAssertEqual(error.code, .leaseLost) } else { XCTFail("\(lostEvents.all)") }

            // Without a keepalive the key expires with its lease.
            let short = try await client.grantLease(ttl: 1)
            _ = try await client.put(b("ephemeral"), b("x"), lease: short.id)
            var expired = false
            let deadline = ContinuousClock.now + .seconds(6)
            while ContinuousClock.now < deadline {
                if try await client.get(b("ephemeral")) == nil {
                    expired = true
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            XCTAssertTrue(expired, "the key of an unrenewed lease expires")
            do {
                try await client.revokeLease(short.id)
                XCTFail("revoking an expired lease succeeded")
            } catch let error as EtcdError {
                XCTAssertEqual(error.code, .leaseNotFound, "\(error)")
            }
            await client.close()
        }
    }
}
