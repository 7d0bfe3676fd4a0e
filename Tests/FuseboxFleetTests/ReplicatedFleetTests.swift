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
        let (cluster, replicas) = try await startCluster()
        for id in ["a", "b", "c"] { try replicas.start(id) }
        let id = "svc-replicated"
        let (fleet, _, service) = try startService(id, on: replicas)

        func ready() -> [String] { Self.ready(replicas) }
        XCTAssertEqual(ready(), ["200", "200", "200"])

        // One member of three lost: etcd keeps its quorum, and nothing changes for the service.
        cluster.kill(1)
        let okBefore = fleet.lastStatus(id)?["ok"] as? Int ?? 0
        XCTAssertTrue(
            eventually(20) { (fleet.lastStatus(id)?["ok"] as? Int ?? 0) > okBefore + 20 },
            "calls stopped with one etcd member down: \(service.lines.suffix(5))")
        XCTAssertEqual(fleet.lastStatus(id)?["mode"] as? String, "fleet")
        XCTAssertEqual(ready(), ["200", "200", "200"], "a replica stopped serving with one etcd member down")

        // Two of three: no quorum. Every replica says NOT_SERVING (/readyz 503) and the service goes local.
        cluster.kill(2)
        let lost = Date()
        XCTAssertTrue(eventually(30) { fleet.lastStatus(id)?["mode"] as? String == "local" }, "the service stayed in fleet mode: \(service.lines.suffix(5))")
        print("ReplicatedFleetTests: the service ran locally \(String(format: "%.1f", Date().timeIntervalSince(lost))) s after etcd lost its quorum")
        XCTAssertTrue(eventually(20) { ready() == ["503", "503", "503"] }, "/readyz without etcd's quorum: \(ready())")

        try cluster.restart(1)
        try cluster.restart(2)
        let back = Date()
        XCTAssertTrue(
            eventually(60) { fleet.lastStatus(id)?["mode"] as? String == "fleet" },
            "the service did not follow the fleet again: \(service.lines.suffix(5)) \(replicas.logs)")
        print("ReplicatedFleetTests: back in fleet mode \(String(format: "%.1f", Date().timeIntervalSince(back))) s after the members restarted")
        XCTAssertTrue(eventually(20) { ready() == ["200", "200", "200"] }, "/readyz after etcd came back: \(ready())")
    }

    /// One replica loses etcd while etcd keeps its quorum (each replica talks
    /// to one member; that replica's member is killed): that replica says
    /// NOT_SERVING, and a service connected to it moves to another replica
    /// and keeps following the fleet, never going local. When the member is
    /// back, so is the replica.
    func testAServiceMovesOffAReplicaThatLostEtcdWhileTheOthersServe() async throws {
        let (cluster, replicas) = try await startCluster()
        for (member, id) in ["a", "b", "c"].enumerated() { try replicas.start(members: [member], id) }
        // "a" first: the service starts on the replica that will lose etcd.
        let id = "svc-moves"
        let (fleet, servers, service) = try startService(id, on: replicas)

        func ready() -> [String] { Self.ready(replicas) }
        XCTAssertEqual(ready(), ["200", "200", "200"])

        cluster.kill(0)
        let lost = Date()
        XCTAssertTrue(eventually(30) { ready() == ["503", "200", "200"] }, "/readyz with a's member gone: \(ready()) \(replicas.logs)")
        print("ReplicatedFleetTests: replica a said NOT_SERVING \(String(format: "%.1f", Date().timeIntervalSince(lost))) s after its etcd member died")
        let okBefore = fleet.lastStatus(id)?["ok"] as? Int ?? 0
        XCTAssertTrue(
            eventually(30) { (fleet.lastStatus(id)?["ok"] as? Int ?? 0) > okBefore + 20 && fleet.lastStatus(id)?["mode"] as? String == "fleet" },
            "the service did not keep calling in fleet mode: \(service.lines.suffix(5))")
        let modes = fleet.events(id).filter { $0["event"] as? String == "mode" }.compactMap { $0["mode"] as? String }
        XCTAssertFalse(modes.contains("local"), "the service went local although two replicas served: \(modes)")
        // a answers `fusebox cluster status` at once, saying it does not serve:
        // not after its audit entry has waited out etcd's 15 s of retries
        // (the CLI gives up at 15 s; this took 14.7 s before the entry was queued).
        let asked = Date()
        let status = try fleet.cli(["cluster", "status", "-o", "json"], server: servers[0])
        XCTAssertLessThan(Date().timeIntervalSince(asked), 5, "cluster status on a replica without etcd was slow: \(status.output)")
        XCTAssertEqual(status.status, 0, status.output)
        XCTAssertTrue(status.output.contains("\"serving\": false"), status.output)
        XCTAssertTrue(status.output.contains("\"reachable\": false"), status.output)
        // Its watch follows another replica now: a trip reaches it.
        // Until a's lease expires in etcd (its TTL), a write may still be
        // forwarded to a and refused UNAVAILABLE: an operator retries.
        var forced = try fleet.cli(["breaker", "force-open", "orders-upstream", "--reason", "drill"], server: servers[2])
        let deadline = Date().addingTimeInterval(20)
        while forced.status != 0, Date() < deadline {
            try await Task.sleep(for: .milliseconds(500))
            forced = try fleet.cli(["breaker", "force-open", "orders-upstream", "--reason", "drill"], server: servers[2])
        }
        XCTAssertEqual(forced.status, 0, "\(forced.output)\n\(replicas.logs)")
        XCTAssertTrue(
            eventually(20) { fleet.lastStatus(id)?["state"] as? String == "FORCED_OPEN" },
            "the service did not see a breaker forced open through another replica: \(service.lines.suffix(5))")

        try cluster.restart(0)
        XCTAssertTrue(eventually(60) { ready() == ["200", "200", "200"] }, "/readyz after a's member came back: \(ready())")
    }

    /// A healthy three-member etcd and its replica set (no replica started).
    private func startCluster() async throws -> (EtcdTestCluster, FuseboxdReplicas) {
        let cluster = try EtcdTestCluster(size: 3)
        self.cluster = cluster
        let probe = try cluster.client()
        try await cluster.waitUntilHealthy(probe)
        await probe.close()
        let replicas = try FuseboxdReplicas(cluster: cluster)
        self.replicas = replicas
        return (cluster, replicas)
    }

    /// A fleet with the test policy (applied through replica b) and service
    /// `id` knowing every replica, a first, once it calls in fleet mode.
    private func startService(_ id: String, on replicas: FuseboxdReplicas) throws -> (Fleet, [String], LaunchedProcess) {
        let fleet = try Fleet()
        self.fleet = fleet
        let servers = replicas.ids.compactMap { replicas.process($0).map { "127.0.0.1:\($0.port)" } }
        try fleet.apply(fleetPolicy, server: servers[1])
        let service = try fleet.startService(id, staleness: 2, servers: servers.joined(separator: ","))
        XCTAssertTrue(
            eventually(20) { fleet.lastStatus(id)?["mode"] as? String == "fleet" && (fleet.lastStatus(id)?["ok"] as? Int ?? 0) > 10 },
            "not calling in fleet mode: \(service.text) \(service.stderrTail())")
        return (fleet, servers, service)
    }

    /// Each replica's /readyz status code.
    private static func ready(_ replicas: FuseboxdReplicas) -> [String] {
        replicas.ids.compactMap { replicas.process($0)?.metricsPort }.map { port in
            let probe = "import urllib.request\ntry:\n print(urllib.request.urlopen('http://127.0.0.1:\(port)/readyz', timeout=5).status)\nexcept urllib.error.HTTPError as e:\n print(e.code)\nexcept Exception as e:\n print('unreachable', e)"
            return ((try? runProcess(["python3", "-c", probe], timeout: 20))?.output ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}
