import Foundation
import FuseboxEtcd
import FuseboxTesting
import XCTest

/// A service given three fuseboxd replicas on a three-member etcd: when etcd
/// loses its quorum the replicas say NOT_SERVING and let their watchers go,
/// and the service runs its breakers locally (fail-static); when etcd is
/// back, the service follows the fleet again, with no fuseboxd restarted.
final class ReplicatedFleetTests: XCTestCase {
    private var fleet: Fleet?
    private var cluster: EtcdTestCluster?
    private var replicas: FuseboxdReplicas?

    override func tearDown() async throws {
        fleet?.tearDown()
        replicas?.stopAll()
        cluster?.stop()
    }

    func testAServiceGoesLocalWhenEtcdLosesQuorumAndFollowsTheFleetWhenItIsBack() async throws {
        let cluster = try EtcdTestCluster(size: 3)
        self.cluster = cluster
        let probe = try cluster.client()
        try await cluster.waitUntilHealthy(probe)
        await probe.close()
        let replicas = try FuseboxdReplicas(cluster: cluster)
        self.replicas = replicas
        for id in ["a", "b", "c"] { try replicas.start(id) }
        let fleet = try Fleet()
        self.fleet = fleet
        let servers = replicas.ids.compactMap { replicas.process($0).map { "127.0.0.1:\($0.port)" } }
        try fleet.apply(fleetPolicy, server: servers[1])

        let id = "svc-replicated"
        let service = try fleet.startService(id, staleness: 2, servers: servers.joined(separator: ","))
        XCTAssertTrue(
            eventually(20) { fleet.lastStatus(id)?["mode"] as? String == "fleet" && (fleet.lastStatus(id)?["ok"] as? Int ?? 0) > 10 },
            "not calling in fleet mode: \(service.text) \(service.stderrTail())")

        cluster.kill(1)
        cluster.kill(2)
        let lost = Date()
        XCTAssertTrue(eventually(30) { fleet.lastStatus(id)?["mode"] as? String == "local" }, "the service stayed in fleet mode: \(service.lines.suffix(5))")
        print("ReplicatedFleetTests: the service ran locally \(String(format: "%.1f", Date().timeIntervalSince(lost))) s after etcd lost its quorum")

        try cluster.restart(1)
        try cluster.restart(2)
        let back = Date()
        XCTAssertTrue(
            eventually(60) { fleet.lastStatus(id)?["mode"] as? String == "fleet" },
            "the service did not follow the fleet again: \(service.lines.suffix(5)) \(replicas.logs)")
        print("ReplicatedFleetTests: back in fleet mode \(String(format: "%.1f", Date().timeIntervalSince(back))) s after the members restarted")
    }
}
