import Foundation
import FuseboxAPI
import FuseboxAuthority
import FuseboxCore
import FuseboxEtcd
import FuseboxRPC
import FuseboxServer
import FuseboxTesting
import FuseboxTLS
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// Three fuseboxd replicas (in this process, each its own server on its own
/// port) on a real three-member etcd cluster on loopback.
final class ReplicatedServerTests: XCTestCase {
    let group = MultiThreadedEventLoopGroup.singleton

    /// One replica.
    struct Replica {
        let app: FuseboxServerApp
        let task: Task<Void, any Error>
        let id: String

        var port: Int { app.rpc.port }

        var isLeader: Bool {
            if case .leader? = app.replica?.role { return true }
            return false
        }

        func client(_ identity: String, group: any EventLoopGroup) throws -> RPCClient {
            try testClient(port: port, identity: identity, group: group)
        }

        func stop() async {
            await app.shutdown()
            _ = try? await task.value
        }
    }

    func startReplica(_ id: String, cluster: EtcdTestCluster, prefix: String, leaseSeconds: Int64 = 2) async throws -> Replica {
        let tls = TLSConfiguration.server(
            certificateChainPath: try TestCertificates.path("server.pem"), privateKeyPath: try TestCertificates.path("server.key"),
            clientCAPath: try TestCertificates.path("ca.pem"))
        var configuration = FuseboxServerApp.Configuration(dataDirectory: "", tls: tls)
        configuration.rpc.port = 0
        var etcd = try EtcdConfiguration(endpoints: cluster.endpoints, tls: nil)
        etcd.retryTimeout = .seconds(4)
        var node = ReplicaNode.Settings(
            replicaId: id, advertise: "",
            peerTLS: .client(
                trustRootsPath: try TestCertificates.path("ca.pem"), certificateChainPath: try TestCertificates.path("replica.pem"),
                privateKeyPath: try TestCertificates.path("replica.key")))
        node.leaseSeconds = leaseSeconds
        var replication = FuseboxServerApp.Configuration.Replication(etcd: etcd, node: node)
        replication.prefix = prefix
        configuration.replication = replication
        let app = try await FuseboxServerApp.start(configuration, group: group)
        return Replica(app: app, task: Task { try await app.serve() }, id: id)
    }

    /// Watchers on every replica see the same transitions with the same
    /// generations; permits asked of all three replicas at once stay within
    /// the policy's bound; the leader's shutdown hands the decisions over.
    func testThreeReplicasAgreeAndHandOver() async throws {
        try await withCluster { cluster, _ in
            let prefix = "/fusebox-\(UUID().uuidString.prefix(8))"
            var replicas: [Replica] = []
            for i in 0..<3 { replicas.append(try await startReplica("r\(i)", cluster: cluster, prefix: prefix)) }
            await waitUntil("one leader", timeout: 15) { replicas.filter(\.isLeader).count == 1 }
            await waitUntil("every replica serving", timeout: 15) { replicas.allSatisfy { $0.app.isReady } }
            let leader = try XCTUnwrap(replicas.firstIndex { $0.isLeader })
            let follower = (leader + 1) % 3

            // A policy written on a follower is read back on every replica.
            let admin = try replicas[follower].client("admin", group: group)
            try await putFleetPolicy(admin, minimumClients: 1, permits: 3, openMs: 500)
            await waitUntil("policy everywhere") { replicas.allSatisfy { $0.app.registry.policy(registry: "default", name: "fleet") != nil } }

            let clients = try replicas.map { try $0.client("reporter", group: self.group) }
            _ = try await clients[follower].unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "c0", breaker: "db", generation: 0, success: 1),
                as: Fusebox_V1_ReportOutcomesResponse.self)
            let watches = clients.map { BreakerWatch(client: $0, prefix: "db") }
            await waitUntil("watchers subscribed") { replicas.allSatisfy { $0.app.authority.watcherCount == 1 } }

            // A report through a follower trips the breaker for all.
            _ = try await clients[follower].unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "c1", breaker: "db", generation: 0, failure: 20),
                as: Fusebox_V1_ReportOutcomesResponse.self)
            await waitUntil("OPEN then HALF_OPEN at every watcher", timeout: 10) {
                watches.allSatisfy { $0.transitions.contains { $0.0 == .halfOpen } }
            }
            let seen = watches.map { $0.transitions.map { "\($0.0)@\($0.1)" } }
            XCTAssertEqual(seen[0], seen[1], "replicas 0 and 1 disagree")
            XCTAssertEqual(seen[0], seen[2], "replicas 0 and 2 disagree")
            let halfOpen = try XCTUnwrap(watches[0].transitions.last { $0.0 == .halfOpen }?.1)

            // 200 clients report through the follower at once: every batch is
            // counted, in fewer forward calls than batches.
            let forwardedBefore = try XCTUnwrap(replicas[follower].app.replica?.reports.forwarded)
            let accepted = NIOLockedValueBox(0)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for i in 0..<200 {
                    tasks.addTask {
                        let r = try await clients[follower].unary(
                            "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "many-\(i)", breaker: "busy-\(i % 20)", generation: 0, success: 3),
                            as: Fusebox_V1_ReportOutcomesResponse.self)
                        accepted.withLockedValue { $0 += Int(r.accepted) }
                    }
                }
                try await tasks.waitForAll()
            }
            XCTAssertEqual(accepted.withLockedValue { $0 }, 200, "every forwarded batch was counted")
            let forwardedAfter = try XCTUnwrap(replicas[follower].app.replica?.reports.forwarded)
            let calls = forwardedAfter.calls - forwardedBefore.calls
            let batches = forwardedAfter.batches - forwardedBefore.batches
            XCTAssertEqual(batches, 200)
            XCTAssertLessThan(calls, batches, "the follower gathered batches into fewer calls")
            print("ReplicatedServerTests: 200 concurrent batches forwarded in \(calls) calls")

            // Cluster status, asked of a follower: three replicas, the leader, three etcd members.
            let reader = try replicas[follower].client("reader", group: group)
            let status = try await reader.unary(
                "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(), as: Fusebox_V1_ClusterStatus.self)
            XCTAssertEqual(status.mode, "replicated")
            XCTAssertEqual(status.leaderId, replicas[leader].id)
            XCTAssertEqual(Set(status.replicas.map(\.id)), ["r0", "r1", "r2"])
            XCTAssertEqual(status.replicas.filter(\.leader).map(\.id), [replicas[leader].id])
            XCTAssertEqual(status.etcdMembers.filter(\.reachable).count, 3)
            await reader.close()

            // 60 permit requests at once, 20 per replica: at most 3 granted.
            let granted = NIOLockedValueBox(0)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for i in 0..<60 {
                    let client = clients[i % 3]
                    tasks.addTask {
                        let p = try await acquire(client, "db", generation: halfOpen, as: "p\(i)")
                        if p.granted { granted.withLockedValue { $0 += 1 } }
                    }
                }
                try await tasks.waitForAll()
            }
            XCTAssertEqual(granted.withLockedValue { $0 }, 3, "the policy permits 3 probes fleet-wide")

            // The leader steps down (shutdown revokes its lease): another takes over quickly.
            let started = ContinuousClock.now
            await replicas[leader].stop()
            let rest = replicas.enumerated().filter { $0.offset != leader }.map(\.element)
            await waitUntil("a new leader", timeout: 10) { rest.filter(\.isLeader).count == 1 }
            print("ReplicatedServerTests: new leader after a clean step-down in \(ContinuousClock.now - started)")
            // It decides: a force-open through the other survivor is stored and seen by its watchers.
            let survivors = (0..<3).filter { $0 != leader }
            var force = Fusebox_V1_OverrideRequest()
            force.breaker = ref("db")
            force.reason = "failover test"
            let forced = try await admin.unary("fusebox.v1.AdminService", "ForceOpen", force, as: Fusebox_V1_AdminActionResponse.self)
            let after = try XCTUnwrap(forced.after)
            XCTAssertEqual(after.state, .forcedOpen)
            XCTAssertGreaterThan(after.generation, halfOpen)
            await waitUntil("FORCED_OPEN at the survivors' watchers") {
                survivors.allSatisfy { i in watches[i].transitions.contains { $0.0 == .forcedOpen && $0.1 == after.generation } }
            }
            for i in survivors {
                let generations = watches[i].transitions.map(\.1)
                XCTAssertEqual(generations, generations.sorted(), "replica \(i)'s watcher saw a generation go backwards")
            }
            // The audit entry names the admin, not the replica that forwarded it.
            var list = Fusebox_V1_ListAuditRequest()
            list.limit = 10
            let audit = try await admin.unary("fusebox.v1.AdminService", "ListAudit", list, as: Fusebox_V1_ListAuditResponse.self)
            let entry = try XCTUnwrap(audit.entries.first { $0.action == .forceOpen })
            XCTAssertEqual(entry.actor?.commonName, "fusebox-admin")

            for w in watches { w.task.cancel() }
            for c in clients { await c.close() }
            await admin.close()
            for r in rest { await r.stop() }
        }
    }

    /// Policy writers on the leader and a follower at once: the follower
    /// forwards its writes to the leader, whose group commit stores all of
    /// them, in fewer etcd transactions than writes (replicas writing on
    /// their own conflict on the registry's version and retry). Each write
    /// lands once, is read back on the replica that took it as soon as it is
    /// answered, and names its caller; a stale expected version through the
    /// follower is refused with the current version, as on the leader.
    func testPolicyWritesGoThroughTheLeadersGroupCommit() async throws {
        try await withCluster { cluster, client in
            let prefix = "/fusebox-\(UUID().uuidString.prefix(8))"
            var replicas: [Replica] = []
            for i in 0..<2 { replicas.append(try await startReplica("g\(i)", cluster: cluster, prefix: prefix)) }
            await waitUntil("one leader", timeout: 15) { replicas.filter(\.isLeader).count == 1 }
            await waitUntil("every replica serving", timeout: 15) { replicas.allSatisfy { $0.app.isReady } }
            let leader = try XCTUnwrap(replicas.firstIndex { $0.isLeader })
            let follower = 1 - leader
            let admins = try replicas.map { try $0.client("admin", group: self.group) }
            let (writers, each) = (16, 5)
            let versions = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for w in 0..<writers {
                    let (admin, replica) = (admins[w % 2], replicas[w % 2])
                    group.addTask {
                        var got: [UInt64] = []
                        for i in 0..<each {
                            var request = Fusebox_V1_PutPolicyRequest()
                            request.registry = "grouped"
                            request.policy = PolicyMapping.wire(Policy(name: "w\(w)"))
                            var expected = Fusebox_V1_ExpectedVersion()
                            expected.version = got.last ?? 0
                            request.expectedVersion = expected
                            request.reason = "write \(i)"
                            let answer = try await admin.unary(
                                "fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self)
                            // Read your writes on the replica that answered.
                            XCTAssertGreaterThanOrEqual(replica.app.registry.registryVersion("grouped"), answer.registryVersion)
                            got.append(answer.registryVersion)
                        }
                        return got
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let total = UInt64(writers * each)
            XCTAssertEqual(versions.sorted(), Array(1...total), "every version answered once")
            await waitUntil("both replicas at the last version") { replicas.allSatisfy { $0.app.registry.registryVersion("grouped") == total } }
            XCTAssertEqual(replicas[follower].app.registry.storedGroups.writes, 0, "the follower stored writes itself")
            let stored = replicas[leader].app.registry.storedGroups
            XCTAssertEqual(stored.writes, total)
            XCTAssertLessThan(stored.count, total, "no two writes shared a group")
            // Each history entry was written by one transaction: its mod revision says which.
            let key = Array("\(prefix)/history/grouped/".utf8)
            let history = try await client.range(key, rangeEnd: EtcdKeys.prefixEnd(key))
            XCTAssertEqual(history.kvs.count, Int(total))
            print("policy writes: \(total) in \(stored.count) groups, \(Set(history.kvs.map(\.modRevision)).count) etcd transactions")
            let record = try XCTUnwrap(replicas[follower].app.registry.record(registry: "grouped", name: "w1"))
            XCTAssertEqual(record.updatedBy, "fusebox-admin", "a forwarded write names its caller, not the replica")

            var stale = Fusebox_V1_PutPolicyRequest()
            stale.registry = "grouped"
            stale.policy = PolicyMapping.wire(Policy(name: "w1"))
            var one = Fusebox_V1_ExpectedVersion()
            one.version = 1
            stale.expectedVersion = one
            do {
                _ = try await admins[follower].unary("fusebox.v1.RegistryService", "PutPolicy", stale, as: Fusebox_V1_PutPolicyResponse.self)
                XCTFail("a stale expected version was accepted through the follower")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .failedPrecondition)
                let details = try XCTUnwrap(error.metadata.firstBinary("fusebox-error-details-bin"))
                XCTAssertEqual(try Fusebox_V1_ErrorDetails(decoding: details).currentVersion, record.version)
            }
            for a in admins { await a.close() }
            for r in replicas { await r.stop() }
        }
    }

    /// A replica that steps down for its shutdown stands for election no
    /// more while its calls drain, even with nobody else to lead.
    func testAReplicaSteppingDownForShutdownIsNotElectedAgain() async throws {
        try await withCluster { cluster, _ in
            let prefix = "/fusebox-\(UUID().uuidString.prefix(8))"
            let only = try await startReplica("alone", cluster: cluster, prefix: prefix)
            await waitUntil("it leads", timeout: 15) { only.isLeader }
            await only.app.replica?.stepDownForShutdown()
            await waitUntil("it stopped leading", timeout: 5) { !only.isLeader }
            // Before the fix it stood again 300 ms later and won (it was the only candidate).
            for _ in 0..<30 {
                XCTAssertFalse(only.isLeader, "a replica shutting down was elected again")
                try await Task.sleep(for: .milliseconds(100))
            }
            await only.stop()
        }
    }

    /// One etcd member lost: service continues. Two lost: writes fail with
    /// UNAVAILABLE naming etcd and every replica says NOT_SERVING. Members
    /// back: the replicas serve again without a restart.
    func testEtcdMemberLossAndRecovery() async throws {
        try await withCluster { cluster, _ in
            let prefix = "/fusebox-\(UUID().uuidString.prefix(8))"
            var replicas: [Replica] = []
            for i in 0..<3 { replicas.append(try await startReplica("m\(i)", cluster: cluster, prefix: prefix)) }
            await waitUntil("every replica serving", timeout: 15) { replicas.allSatisfy { $0.app.isReady } }
            let admin = try replicas[0].client("admin", group: group)

            cluster.kill(2)
            try await putFleetPolicy(admin, name: "one-lost", minimumClients: 1, permits: 1, openMs: 500)
            XCTAssertTrue(replicas.allSatisfy { $0.app.isReady }, "one member of three lost: still serving")

            cluster.kill(1)
            let started = ContinuousClock.now
            do {
                try await putFleetPolicy(admin, name: "two-lost", minimumClients: 1, permits: 1, openMs: 500)
                XCTFail("a write without an etcd quorum succeeded")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .unavailable, "\(error)")
                XCTAssertTrue(error.message.contains("etcd"), "the error names etcd: \(error.message)")
            }
            await waitUntil("every replica NOT_SERVING", timeout: 20) { replicas.allSatisfy { !$0.app.isReady } }
            print("ReplicatedServerTests: NOT_SERVING everywhere \(ContinuousClock.now - started) after the quorum was lost")
            var check = Grpc_Health_V1_HealthCheckRequest()
            check.service = "fusebox.v1.BreakerService"
            let reader = try replicas[1].client("reader", group: group)
            let health = try await reader.unary("grpc.health.v1.Health", "Check", check, as: Grpc_Health_V1_HealthCheckResponse.self)
            XCTAssertEqual(health.status, .notServing)

            try cluster.restart(1)
            try cluster.restart(2)
            await waitUntil("every replica serving again", timeout: 30) { replicas.allSatisfy { $0.app.isReady } }
            try await putFleetPolicy(admin, name: "recovered", minimumClients: 1, permits: 1, openMs: 500)
            await waitUntil("the write after recovery everywhere") {
                replicas.allSatisfy { $0.app.registry.policy(registry: "default", name: "recovered") != nil }
            }
            await reader.close()
            await admin.close()
            for r in replicas { await r.stop() }
        }
    }
}
