import Foundation
import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import NIOPosix
import XCTest

/// fuseboxd with alert sinks, as an operator runs it: a real process, its
/// config file naming a webhook whose URL is in a file and whose signing
/// secret is in an environment variable, and a real HTTPS receiver that
/// verifies the signature (Tests/Support/alert_receivers.py).
final class FleetAlertsProcessTests: XCTestCase {
    private var directory = ""
    private var receivers: AlertReceivers!
    private var server: FuseboxdProcess!
    private let secret = "whsec-\(UUID().uuidString)"
    private let group = MultiThreadedEventLoopGroup.singleton

    override func setUp() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-alerts-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        receivers = try AlertReceivers(secret: secret, smtpUser: "alerts", smtpPassword: "unused")
        try "https://127.0.0.1:\(receivers.httpsPort)/hooks/ops-\(UUID().uuidString)\n".write(toFile: directory + "/hook-url", atomically: true, encoding: .utf8)
        let config = """
            alerts:
              sinks:
                - name: ops
                  kind: webhook
                  urlFile: \(directory)/hook-url
                  secretEnv: FUSEBOX_TEST_WEBHOOK_SECRET
                  caFile: \(try TestCertificates.path("ca.pem"))
              rules:
                - name: breaker-opened
                  kind: breakerOpened
                  severity: critical
                  cooldownSeconds: 4
                - name: flapping
                  kind: flapping
                  severity: warning
                  trips: 5
                  windowMinutes: 1
                  cooldownSeconds: 4
            """
        try config.write(toFile: directory + "/fusebox.yaml", atomically: true, encoding: .utf8)
        server = try FuseboxdProcess(
            dataDirectory: directory + "/data", extra: ["--config", directory + "/fusebox.yaml"],
            environment: ["FUSEBOX_TEST_WEBHOOK_SECRET": secret])
    }

    override func tearDown() {
        server?.stop(SIGTERM)
        receivers?.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func client(_ identity: String) throws -> RPCClient { try testClient(port: server.port, identity: identity, group: group) }

    private func cli(_ args: [String]) throws -> ProcessResult {
        try runProcess([builtProduct("fusebox").path] + args + [
            "--server", "127.0.0.1:\(server.port)", "--ca", try TestCertificates.path("ca.pem"),
            "--cert", try TestCertificates.path("admin.pem"), "--key", try TestCertificates.path("admin.key"),
        ], timeout: 30)
    }

    private func waitFor(_ what: String, seconds: Double, _ done: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while !done(), Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertTrue(done(), "timed out after \(seconds) s waiting for \(what)")
    }

    /// Reports failures until the breaker trips; returns its generation then.
    private func trip(_ reporter: RPCClient, _ name: String, generation: UInt64) async throws -> UInt64 {
        let r = try await reporter.unary(
            "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "svc-a", breaker: name, generation: generation, failure: 20),
            as: Fusebox_V1_ReportOutcomesResponse.self)
        let state = try XCTUnwrap(r.states.first)
        XCTAssertEqual(state.state, .open, "20 failures did not trip \(name)")
        return state.generation
    }

    private func reset(_ admin: RPCClient, _ name: String) async throws -> UInt64 {
        var request = Fusebox_V1_ResetRequest()
        request.breaker = ref(name)
        request.reason = "alert test"
        let r = try await admin.unary("fusebox.v1.AdminService", "Reset", request, as: Fusebox_V1_AdminActionResponse.self)
        return r.after?.generation ?? 0
    }

    private func hooks(_ status: String, rule: String = "breaker-opened") -> [[String: Any]] {
        receivers.events("http").filter {
            let body = $0["body"] as? [String: Any]
            return body?["status"] as? String == status && body?["rule"] as? String == rule
        }
    }

    func testATripAlertsSignedWithinASecondResolvesAfterTheCloseAndTheCLIShowsIt() async throws {
        let admin = try client("admin")
        let reporter = try client("reporter")
        defer { Task { await admin.close(); await reporter.close() } }
        try await putFleetPolicy(admin)

        // A health watcher: healthy first, then critical once the breaker trips.
        let reader = try client("reader")
        let seen = NIOLockedValueBox<[Fusebox_V1_HealthStatus]>([])
        let watch = Task {
            try? await reader.serverStreaming(
                "fusebox.v1.FleetHealthService", "WatchFleetHealth", Fusebox_V1_GetFleetHealthRequest(), as: Fusebox_V1_FleetHealth.self,
                options: RPCCallOptions(timeout: .seconds(20))
            ) { health in seen.withLockedValue { $0.append(health.status) } }
        }
        defer { watch.cancel() }
        waitFor("the health watch's first answer", seconds: 5) { !seen.withLockedValue { $0 }.isEmpty }
        XCTAssertEqual(seen.withLockedValue { $0 }.first, .healthy)

        let tripped = Date()
        _ = try await trip(reporter, "payments", generation: 0)
        waitFor("the health watch to say critical", seconds: 3) { seen.withLockedValue { $0 }.last == .critical }
        waitFor("the firing webhook", seconds: 5) { !hooks("firing").isEmpty }
        let firing = try XCTUnwrap(hooks("firing").first)
        let latency = (firing["at"] as? Double ?? 0) - tripped.timeIntervalSince1970
        print("FleetAlertsProcessTests: the signed alert reached the receiver \(String(format: "%.0f", latency * 1000)) ms after the trip was acknowledged")
        XCTAssertLessThan(latency, 1.0, "the alert came more than 1 s after the trip")
        XCTAssertEqual(firing["signature_valid"] as? Bool, true, "the receiver could not verify the signature")
        let body = try XCTUnwrap(firing["body"] as? [String: Any])
        XCTAssertEqual(body["severity"] as? String, "critical")
        XCTAssertEqual(body["subject"] as? [String: String], ["registry": "default", "breaker": "payments"])
        XCTAssertEqual(body["summary"] as? String, "breaker default/payments is OPEN")

        // Closed by an operator: "resolved" once the 4 s cooldown has passed.
        _ = try await reset(admin, "payments")
        waitFor("the resolved webhook", seconds: 10) { !hooks("resolved").isEmpty }
        XCTAssertEqual(hooks("resolved").first?["signature_valid"] as? Bool, true)
        XCTAssertEqual(hooks("firing").count, 1)

        // The history, through the CLI.
        let listed = try cli(["alerts", "list", "-o", "json"])
        XCTAssertEqual(listed.status, 0, listed.output)
        let entries = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]], listed.output)
        XCTAssertEqual(entries.map { $0["status"] as? String }, ["resolved", "firing"], "newest first")
        XCTAssertEqual(entries.first?["subject"] as? String, "default/payments")
        let delivery = (entries.last?["deliveries"] as? [[String: Any]])?.first
        XCTAssertEqual(delivery?["sink"] as? String, "ops")
        XCTAssertEqual(delivery?["state"] as? String, "delivered")
        let table = try cli(["alerts", "list"])
        XCTAssertTrue(table.output.contains("breaker default/payments is OPEN"), table.output)

        // Counted per rule, severity and sink.
        let metrics = try runProcess([
            "python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:\(server.metricsPort)/metrics').read().decode())",
        ]).output
        XCTAssertTrue(
            metrics.split(separator: "\n").contains { $0.hasPrefix("fusebox_alerts_sent_total{") && $0.contains("rule=\"breaker-opened\"")
                && $0.contains("severity=\"critical\"") && $0.contains("sink=\"ops\"") && $0.hasSuffix(" 2") },
            metrics.split(separator: "\n").filter { $0.contains("alerts") }.joined(separator: "\n"))

        // Secrets: neither the URL's path nor the signing key in the logs or the API.
        let urlPath = try String(contentsOfFile: directory + "/hook-url", encoding: .utf8).components(separatedBy: "/hooks/")[1]
            .trimmingCharacters(in: .newlines)
        for (what, text) in [("stdout", server.launched.text), ("stderr", server.launched.stderrTail(1_000_000)), ("alerts list", listed.output)] {
            XCTAssertFalse(text.contains(secret), "the webhook secret appears in \(what)")
            XCTAssertFalse(text.contains(urlPath), "the webhook URL appears in \(what)")
        }
    }

    func testTwentyTripsInTheCooldownGiveOneAlertAndOneResolved() async throws {
        let admin = try client("admin")
        let reporter = try client("reporter")
        defer { Task { await admin.close(); await reporter.close() } }
        try await putFleetPolicy(admin)
        var generation: UInt64 = 0
        let started = Date()
        for _ in 0..<20 {
            generation = try await trip(reporter, "flappy", generation: generation)
            generation = try await reset(admin, "flappy")
        }
        let took = Date().timeIntervalSince(started)
        XCTAssertLessThan(took, 4, "the 20 trips took longer than the 4 s cooldown; the test proves nothing")
        waitFor("the resolved alert", seconds: 10) { !hooks("resolved").isEmpty }
        try await Task.sleep(for: .milliseconds(1_500))
        XCTAssertEqual(hooks("firing").count, 1, "20 trips in \(String(format: "%.1f", took)) s, inside the cooldown")
        XCTAssertEqual(hooks("resolved").count, 1)
        let resolved = try XCTUnwrap(hooks("resolved").first?["body"] as? [String: Any])
        XCTAssertEqual(resolved["suppressedTriggers"] as? Int, 19)
        // And the flapping rule saw them: 20 trips ≥ 5 in a minute.
        XCTAssertEqual(hooks("firing", rule: "flapping").count, 1)

        // The fleet's health says so, through the CLI.
        let health = try cli(["health", "--fleet", "-o", "json"])
        // stdout's JSON, then stderr's "error: the fleet is degraded".
        let json = health.output.components(separatedBy: "\nerror: ")[0]
        XCTAssertTrue(health.output.contains("error: the fleet is degraded"), health.output)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], health.output)
        XCTAssertEqual(report["status"] as? String, "degraded", health.output)
        XCTAssertNotEqual(health.status, 0, "a degraded fleet exits non-zero")
        let registries = try XCTUnwrap(report["registries"] as? [[String: Any]])
        let flappy = (registries.first?["breakers"] as? [[String: Any]])?.first
        XCTAssertEqual(flappy?["breaker"] as? String, "default/flappy")
        XCTAssertEqual((flappy?["reasons"] as? [[String: Any]])?.first?["code"] as? String, "flapping")
        let text = try cli(["health", "--fleet"])
        XCTAssertTrue(text.output.contains("fleet: DEGRADED"), text.output)
        XCTAssertTrue(text.output.contains("tripped 20 times in 10 min"), text.output)
    }
}
