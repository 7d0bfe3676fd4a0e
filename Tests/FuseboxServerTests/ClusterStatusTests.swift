import Foundation
import FuseboxAuthority
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

@testable import FuseboxServer

/// `AdminService.GetClusterStatus`: the mapping of a report to the wire, a
/// standalone server's answer, and an answer from a given source.
final class ClusterStatusTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    static let threeReplicas = ClusterStatusReport(
        mode: "replicated", store: "etcd", leaderId: "fb-2",
        replicas: [
            .init(
                id: "fb-1", address: "10.0.0.1:7443", version: "0.2.0", leader: false, startedAtMs: 1_800_000_000_000,
                appliedRevision: 41, lagRevisions: 1, lastHeartbeatMs: 1_800_000_059_000, serving: true),
            .init(
                id: "fb-2", address: "10.0.0.2:7443", version: "0.2.0", leader: true, startedAtMs: 1_800_000_001_000,
                appliedRevision: 42, lagRevisions: 0, lastHeartbeatMs: 1_800_000_059_500, serving: true),
            .init(
                id: "fb-3", address: "10.0.0.3:7443", version: "0.1.9", leader: false, startedAtMs: 1_800_000_002_000,
                appliedRevision: 30, lagRevisions: 12, lastHeartbeatMs: 1_800_000_050_000, serving: false),
        ],
        etcdMembers: [
            .init(
                endpoint: "https://10.0.1.1:2379", reachable: true, leader: true, revision: 42, dbSizeBytes: 25_165_824,
                error: ""),
            .init(
                endpoint: "https://10.0.1.2:2379", reachable: false, leader: false, revision: 0, dbSizeBytes: 0,
                error: "connection refused"),
        ],
        answeredBy: "fb-1", atMs: 1_800_000_060_000)

    func testTheWireMappingCarriesEveryField() {
        let w = WireConversions.clusterStatus(Self.threeReplicas)
        XCTAssertEqual(w.mode, "replicated")
        XCTAssertEqual(w.store, "etcd")
        XCTAssertEqual(w.leaderId, "fb-2")
        XCTAssertEqual(w.answeredBy, "fb-1")
        XCTAssertEqual(w.atMs, 1_800_000_060_000)
        XCTAssertEqual(w.replicas.map(\.id), ["fb-1", "fb-2", "fb-3"])
        XCTAssertEqual(w.replicas.map(\.address), ["10.0.0.1:7443", "10.0.0.2:7443", "10.0.0.3:7443"])
        XCTAssertEqual(w.replicas.map(\.version), ["0.2.0", "0.2.0", "0.1.9"])
        XCTAssertEqual(w.replicas.map(\.leader), [false, true, false])
        XCTAssertEqual(w.replicas.map(\.startedAtMs), [1_800_000_000_000, 1_800_000_001_000, 1_800_000_002_000])
        XCTAssertEqual(w.replicas.map(\.appliedRevision), [41, 42, 30])
        XCTAssertEqual(w.replicas.map(\.lagRevisions), [1, 0, 12])
        XCTAssertEqual(w.replicas.map(\.lastHeartbeatMs), [1_800_000_059_000, 1_800_000_059_500, 1_800_000_050_000])
        XCTAssertEqual(w.replicas.map(\.serving), [true, true, false])
        XCTAssertEqual(w.etcdMembers.map(\.endpoint), ["https://10.0.1.1:2379", "https://10.0.1.2:2379"])
        XCTAssertEqual(w.etcdMembers.map(\.reachable), [true, false])
        XCTAssertEqual(w.etcdMembers.map(\.leader), [true, false])
        XCTAssertEqual(w.etcdMembers.map(\.revision), [42, 0])
        XCTAssertEqual(w.etcdMembers.map(\.dbSizeBytes), [25_165_824, 0])
        XCTAssertEqual(w.etcdMembers.map(\.error), ["", "connection refused"])
        // And it survives the wire's encoding.
        XCTAssertEqual(try Fusebox_V1_ClusterStatus(decoding: w.encode()), w)
    }

    /// A standalone server is the one replica: it leads, on SQLite, at the
    /// address it listens on; every role may ask.
    func testAStandaloneServerReportsItselfAsTheLeadingReplica() async throws {
        let server = try await ServerHarness.start(group: group)
        for identity in ["reader", "reporter", "admin", "replica"] {
            let client = try server.client(identity, group: group)
            let status = try await client.unary(
                "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(),
                as: Fusebox_V1_ClusterStatus.self)
            await client.close()
            XCTAssertEqual(status.mode, "standalone", identity)
            XCTAssertEqual(status.store, "sqlite")
            XCTAssertEqual(status.replicas.count, 1)
            let me = try XCTUnwrap(status.replicas.first)
            XCTAssertTrue(me.leader)
            XCTAssertTrue(me.serving)
            XCTAssertFalse(me.id.isEmpty)
            XCTAssertEqual(status.leaderId, me.id)
            XCTAssertEqual(status.answeredBy, me.id)
            XCTAssertEqual(me.address, "127.0.0.1:\(server.port)")
            XCTAssertEqual(me.version, "dev")
            XCTAssertEqual(me.appliedRevision, 0)
            XCTAssertEqual(me.lagRevisions, 0)
            XCTAssertGreaterThan(me.startedAtMs, 0)
            XCTAssertLessThanOrEqual(me.startedAtMs, status.atMs)
            XCTAssertEqual(me.lastHeartbeatMs, status.atMs)
            XCTAssertEqual(status.etcdMembers, [])
        }
        try await server.stop()
    }

    /// With a source configured (the replicated mode's), the server answers from it.
    func testTheServerAnswersFromTheConfiguredSource() async throws {
        struct Fixed: ClusterStatusSource {
            func clusterStatus() async -> ClusterStatusReport { ClusterStatusTests.threeReplicas }
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fusebox-cluster-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = FuseboxServerApp.Configuration(
            dataDirectory: directory,
            tls: .server(
                certificateChainPath: try TestCertificates.path("server.pem"),
                privateKeyPath: try TestCertificates.path("server.key"),
                clientCAPath: try TestCertificates.path("ca.pem")))
        configuration.clusterStatus = Fixed()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let app = try await FuseboxServerApp.start(configuration, group: group)
        let serving = Task { try await app.serve() }
        let reader = try RPCClient(
            configuration: RPCClientConfiguration(
                host: "127.0.0.1", port: app.rpc.port,
                tls: .client(
                    trustRootsPath: try TestCertificates.path("ca.pem"),
                    certificateChainPath: try TestCertificates.path("reader.pem"),
                    privateKeyPath: try TestCertificates.path("reader.key"))), group: group)
        let status = try await reader.unary(
            "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(),
            as: Fusebox_V1_ClusterStatus.self)
        XCTAssertEqual(status, WireConversions.clusterStatus(Self.threeReplicas))
        await reader.close()
        await app.shutdown()
        try await serving.value
    }

    /// Standalone, named `replicaId`, with a health that says NOT_SERVING.
    func testTheStandaloneSourceNamesItselfAndFollowsItsHealth() async {
        let clock = ManualFleetClock(start: 1_800_000_000_000)
        let health = HealthService()
        let source = StandaloneClusterStatus(
            replicaId: "fb-solo", version: "0.1.0", startedAtMs: 1_799_999_000_000, clock: clock,
            address: { "10.0.0.9:7443" },
            serving: { health.status() == .serving })
        var report = await source.clusterStatus()
        XCTAssertEqual(
            report,
            ClusterStatusReport(
                mode: "standalone", store: "sqlite", leaderId: "fb-solo",
                replicas: [
                    .init(
                        id: "fb-solo", address: "10.0.0.9:7443", version: "0.1.0", leader: true,
                        startedAtMs: 1_799_999_000_000,
                        appliedRevision: 0, lagRevisions: 0, lastHeartbeatMs: 1_800_000_000_000, serving: true)
                ],
                etcdMembers: [], answeredBy: "fb-solo", atMs: 1_800_000_000_000))
        health.shutdown()
        report = await source.clusterStatus()
        XCTAssertEqual(report.replicas.map(\.serving), [false])
    }
}
