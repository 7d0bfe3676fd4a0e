import Foundation
import FuseboxTesting
import XCTest

/// Reporters as fuseboxd tracks them, with real processes: a service killed
/// and restarted under the same client id, and a service failing alone below
/// its policy's quorum. Both need fuseboxd to know incarnations and trips
/// below quorum (OutcomeBatch.incarnation, ReportOutcomesResponse.below_quorum).
final class FleetReporterTests: XCTestCase {
    var fleet: Fleet!
    private var extraUpstreams: [LaunchedProcess] = []

    override func setUp() async throws {
        fleet = try Fleet()
    }

    override func tearDown() async throws {
        for u in extraUpstreams { u.stop(SIGKILL) }
        fleet?.tearDown()
    }

    private func started(_ id: String) -> [String: Any]? {
        guard let line = fleet.services[id]?.waitForLine(timeout: 30, { $0.contains("\"event\":\"started\"") }) else {
            return nil
        }
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    private func int(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? 0 }

    private func events(_ id: String, _ name: String) -> [[String: Any]] {
        fleet.events(id).filter { $0["event"] as? String == name }
    }

    /// A second flaky upstream, failing every call from the start.
    private func failingUpstream() throws -> Int {
        let u = try LaunchedProcess(builtProduct("fusebox-example"), ["upstream", "--port", "0", "--failing"])
        extraUpstreams.append(u)
        guard let line = u.waitForLine(timeout: 20, { $0.hasPrefix("upstream listening on") }),
            let port = Int(line.split(separator: ":").last ?? "")
        else { throw FleetHarnessFailure("failing upstream did not start: \(u.text) \(u.stderrTail())") }
        return port
    }

    /// A service is killed (no goodbye) and started again with the same client
    /// id. Its batches start again at sequence 1 under a larger incarnation,
    /// so fuseboxd must count them: the breaker trips on the restarted
    /// process's failures as fast as on a fresh client's. A server that kept
    /// only the last sequence per client id would drop them as duplicates
    /// until the new sequence passed the old one, about as long as the first
    /// process ran (8 s here).
    func testARestartedServiceWithTheSameClientIDIsCountedAgain() throws {
        try fleet.apply(fleetPolicy)
        try fleet.startService("svc-restart")
        let first = try XCTUnwrap(started("svc-restart"), fleet.services["svc-restart"]?.stderrTail() ?? "")
        XCTAssertTrue(
            try eventually(10) { try fleet.serverBreaker() != nil }, "the service's reports did not create the breaker")
        // About 80 batches (one per 100 ms report interval while calls run).
        Thread.sleep(forTimeInterval: 8)
        XCTAssertGreaterThan(
            int(fleet.lastStatus("svc-restart")?["ok"]), 100, "the first process hardly called the upstream")
        XCTAssertEqual(try fleet.serverBreaker()?.state, "CLOSED")

        fleet.services["svc-restart"]?.stop(SIGKILL)
        try fleet.startService("svc-restart")
        let second = try XCTUnwrap(started("svc-restart"), fleet.services["svc-restart"]?.stderrTail() ?? "")
        let before = try XCTUnwrap((first["incarnation"] as? NSNumber)?.uint64Value)
        let after = try XCTUnwrap((second["incarnation"] as? NSNumber)?.uint64Value)
        XCTAssertGreaterThan(after, before, "the restarted process did not pick a larger incarnation")

        // Only the restarted process reports now; its failures must trip the breaker.
        _ = try fleet.upstreamRequest("POST", "/fail")
        let failed = Date()
        XCTAssertTrue(
            eventually(4) { fleet.transitions("svc-restart").contains { $0.to == "OPEN" } },
            "the restarted service's failures did not trip the breaker within 4 s: \(fleet.transitions("svc-restart")); "
                + "status \(fleet.lastStatus("svc-restart") ?? [:])")
        print(
            "fleet: the restarted service tripped the breaker \(Int(Date().timeIntervalSince(failed) * 1000)) ms after the upstream failed"
        )
        XCTAssertTrue(try eventually(5) { try fleet.serverBreaker()?.state == "OPEN" })
    }

    /// Two services share a breaker whose policy needs 2 failing clients.
    /// One calls an upstream that fails for it alone, the other a healthy
    /// one. The failing service's own breaker opens (below quorum) and ends
    /// after the OPEN period; the fleet's breaker stays CLOSED and the
    /// healthy service keeps calling.
    func testAServiceFailingAloneOpensOnlyItsOwnBreaker() throws {
        try fleet.apply(quorumPolicy)
        let failingPort = try failingUpstream()
        try fleet.startService("svc-sick", policy: "quorum-test", upstreamPort: failingPort)
        try fleet.startService("svc-healthy", policy: "quorum-test")
        XCTAssertEqual(
            started("svc-sick")?["policy"] as? String, "quorum-test", fleet.services["svc-sick"]?.stderrTail() ?? "")
        XCTAssertEqual(
            started("svc-healthy")?["policy"] as? String, "quorum-test",
            fleet.services["svc-healthy"]?.stderrTail() ?? "")

        XCTAssertTrue(
            eventually(15) { !events("svc-sick", "local-open").isEmpty },
            "the failing service's breaker did not open locally: \(fleet.events("svc-sick").suffix(5))\n\(fleet.services["svc-sick"]?.stderrTail(2000) ?? "")"
        )
        let open = events("svc-sick", "local-open").first ?? [:]
        XCTAssertEqual(open["to"] as? String, "OPEN")
        XCTAssertTrue((open["reason"] as? String ?? "").contains("only 1 of 2 required clients failing"), "\(open)")

        // While it is open locally, the failing service rejects its calls itself.
        XCTAssertTrue(
            eventually(5) {
                (fleet.lastStatus("svc-sick")?["localOpen"] as? NSNumber)?.boolValue == true
                    && int(fleet.lastStatus("svc-sick")?["rejected"]) > 0
            },
            "\(fleet.lastStatus("svc-sick") ?? [:])")

        // The fleet's breaker stays CLOSED: no service saw a fleet transition, and the server says so.
        XCTAssertEqual(try fleet.serverBreaker()?.state, "CLOSED")
        XCTAssertTrue(fleet.transitions("svc-sick").isEmpty, "\(fleet.transitions("svc-sick"))")
        XCTAssertTrue(fleet.transitions("svc-healthy").isEmpty, "\(fleet.transitions("svc-healthy"))")

        // The healthy service keeps calling, never rejected, never opened locally.
        let ok = int(fleet.lastStatus("svc-healthy")?["ok"])
        XCTAssertTrue(
            eventually(5) { int(fleet.lastStatus("svc-healthy")?["ok"]) > ok + 20 },
            "\(fleet.lastStatus("svc-healthy") ?? [:])")
        XCTAssertEqual(int(fleet.lastStatus("svc-healthy")?["rejected"]), 0)
        XCTAssertTrue(events("svc-healthy", "local-open").isEmpty)

        // After the OPEN period (1.5 s) the failing service follows the fleet again.
        XCTAssertTrue(
            eventually(5) { !events("svc-sick", "local-open-ended").isEmpty }, "\(fleet.events("svc-sick").suffix(5))")
        XCTAssertEqual(events("svc-sick", "local-open-ended").first?["to"] as? String, "CLOSED")
        XCTAssertEqual(try fleet.serverBreaker()?.state, "CLOSED")
    }
}

let quorumPolicy = """
    name: quorum-test
    description: Trips at 25% failures over 10 calls, but only when 2 clients fail; 1.5 s open.
    circuitBreaker:
      failureRateThreshold: 25
      minimumCalls: 10
      minimumClients: 2
      openDuration:
        baseMs: 1500
    timeout:
      attemptMs: 1000
    """
