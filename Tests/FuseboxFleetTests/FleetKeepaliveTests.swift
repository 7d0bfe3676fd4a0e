import Foundation
import FuseboxTesting
import XCTest

/// A fuseboxd that stops answering without closing its connections (SIGSTOP):
/// the SDK's keepalive notices, the watches end, and after the staleness
/// bound the service runs its breakers locally; once fuseboxd resumes
/// (SIGCONT) it returns to fleet mode.
final class FleetKeepaliveTests: XCTestCase {
    private var fleet: Fleet!
    private var stoppedServer: pid_t?

    override func setUp() async throws {
        fleet = try Fleet()
        try fleet.apply(fleetPolicy)
    }

    override func tearDown() async throws {
        if let pid = stoppedServer { kill(pid, SIGCONT) }
        fleet?.tearDown()
    }

    func testAServiceGoesLocalWhenFuseboxdStopsAnsweringAndBackWhenItResumes() throws {
        let (keepalive, timeout, staleness) = (1.0, 1.0, 1.0)
        let id = "svc-keepalive"
        let service = try LaunchedProcess(
            builtProduct("fusebox-example"),
            [
                "service", "--upstream", "127.0.0.1:\(fleet.upstreamPort)", "--server",
                "127.0.0.1:\(fleet.server.port)",
                "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reporter.pem"),
                "--key", try TestCertificates.path("reporter.key"), "--guard-name", "orders-upstream", "--policy",
                "fleet-test",
                "--client-id", id, "--cache-dir", "\(fleet.directory)/cache-\(id)", "--interval-ms", "20",
                "--status-ms", "100",
                "--staleness-seconds", "\(staleness)", "--startup-timeout-seconds", "2",
                "--keepalive-seconds", "\(keepalive)", "--keepalive-timeout-seconds", "\(timeout)",
            ])
        fleet.services[id] = service
        let started = service.waitForLine(timeout: 30) { $0.contains("\"event\":\"started\"") }
        XCTAssertTrue(
            started?.contains("\"source\":\"server\"") ?? false,
            "did not start from the server: \(service.stderrTail())")
        XCTAssertTrue(
            eventually(10) {
                fleet.lastStatus(id)?["mode"] as? String == "fleet" && (fleet.lastStatus(id)?["ok"] as? Int ?? 0) > 10
            },
            "not calling in fleet mode: \(service.text)")
        // Keepalive PINGs while the watches are open must not cost the connection (no GOAWAY too_many_pings):
        // a few intervals later the service is still in fleet mode and has never been local.
        Thread.sleep(forTimeInterval: 2.5 * keepalive)
        XCTAssertFalse(
            service.lines.contains { isMode($0, "local") }, "went local with fuseboxd running: \(service.text)")

        let pid = fleet.server.process.processIdentifier
        let linesBefore = service.lines.count
        kill(pid, SIGSTOP)
        stoppedServer = pid
        let stopped = Date()
        let local = service.waitForLine(timeout: keepalive + timeout + staleness + 10) { isMode($0, "local") }
        let toLocal = Date().timeIntervalSince(stopped)
        let bound = keepalive + timeout + staleness + 1
        print("fuseboxd stopped: local mode after \(String(format: "%.2f", toLocal)) s (bound \(bound) s)")
        XCTAssertNotNil(local, "never went local: \(service.lines.suffix(5)) \(service.stderrTail())")
        XCTAssertLessThanOrEqual(toLocal, bound, "local mode came later than keepalive + timeout + staleness + 1 s")
        guard local != nil else { return }  // the tear-down resumes fuseboxd

        kill(pid, SIGCONT)
        stoppedServer = nil
        let resumed = Date()
        let back = eventually(20) { service.lines.dropFirst(linesBefore).contains { isMode($0, "fleet") } }
        print("fuseboxd resumed: fleet mode after \(String(format: "%.2f", Date().timeIntervalSince(resumed))) s")
        XCTAssertTrue(back, "did not return to fleet mode: \(service.lines.suffix(5)) \(service.stderrTail())")
    }

    /// The example's `{"event":"mode","mode":…}` line.
    private func isMode(_ line: String, _ mode: String) -> Bool {
        line.contains("\"event\":\"mode\"") && line.contains("\"mode\":\"\(mode)\"")
    }
}
