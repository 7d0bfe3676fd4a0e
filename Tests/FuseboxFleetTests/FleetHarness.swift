import Foundation
import FuseboxTesting
import XCTest

/// A real fleet on 127.0.0.1: fuseboxd, the demo's flaky upstream, example
/// services (separate processes running the SDK) and the `fusebox` CLI.
final class Fleet: @unchecked Sendable {
    let directory: String
    var server: FuseboxdProcess
    let upstream: LaunchedProcess
    let upstreamPort: Int
    var services: [String: LaunchedProcess] = [:]
    /// More fuseboxd processes a test started (killed at tear-down).
    var otherServers: [FuseboxdProcess] = []

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-fleet-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        server = try FuseboxdProcess(dataDirectory: directory + "/data")
        upstream = try LaunchedProcess(builtProduct("fusebox-example"), ["upstream", "--port", "0"])
        guard let line = upstream.waitForLine(timeout: 20, { $0.hasPrefix("upstream listening on") }),
            let port = Int(line.split(separator: ":").last ?? "")
        else { throw FleetHarnessFailure("upstream did not start: \(upstream.text) \(upstream.stderrTail())") }
        upstreamPort = port
    }

    func tearDown() {
        for s in services.values { s.stop(SIGKILL) }
        for s in otherServers { s.stop(SIGKILL) }
        upstream.stop(SIGKILL)
        server.stop(SIGKILL)
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: CLI

    /// Runs `fusebox ARGS --server … --ca … --cert/--key IDENTITY`; `server`
    /// overrides the address (default: this fleet's fuseboxd).
    func cli(_ args: [String], identity: String = "admin", input: String? = nil, server address: String? = nil) throws -> ProcessResult {
        let full = args + [
            "--server", address ?? "127.0.0.1:\(server.port)", "--ca", try TestCertificates.path("ca.pem"),
            "--cert", try TestCertificates.path("\(identity).pem"), "--key", try TestCertificates.path("\(identity).key"),
        ]
        return try runProcess([builtProduct("fusebox").path] + full, timeout: 30)
    }

    /// Applies `yaml` with `fusebox policies apply -f`.
    func apply(_ yaml: String, server address: String? = nil) throws {
        let file = directory + "/policy-\(UUID().uuidString).yaml"
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try cli(["policies", "apply", "-f", file, "--reason", "fleet test"], server: address)
        XCTAssertEqual(r.status, 0, r.output)
    }

    // MARK: Services

    /// Starts an example service guarding "orders-upstream" with `policy`,
    /// calling the fleet's upstream or the one on `upstreamPort`, reporting to
    /// the fleet's fuseboxd or to `servers` ("a:1,b:2").
    @discardableResult
    func startService(
        _ id: String, policy: String = "fleet-test", staleness: Double = 30, cacheDir: String? = nil, upstreamPort: Int? = nil,
        servers: String? = nil, extra: [String] = []
    ) throws -> LaunchedProcess {
        let s = try LaunchedProcess(builtProduct("fusebox-example"), [
            "service", "--upstream", "127.0.0.1:\(upstreamPort ?? self.upstreamPort)", "--server", servers ?? "127.0.0.1:\(server.port)",
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reporter.pem"),
            "--key", try TestCertificates.path("reporter.key"), "--guard-name", "orders-upstream", "--policy", policy,
            "--client-id", id, "--cache-dir", cacheDir ?? "\(directory)/cache-\(id)", "--interval-ms", "20", "--status-ms", "100",
            "--staleness-seconds", "\(staleness)", "--startup-timeout-seconds", "2",
        ] + extra)
        services[id] = s
        return s
    }

    /// The JSON events a service printed.
    func events(_ id: String) -> [[String: Any]] {
        (services[id]?.lines ?? []).compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    /// State changes a service saw: (to, generation, atMs).
    func transitions(_ id: String) -> [(to: String, generation: Int, atMs: Int64)] {
        events(id).compactMap { e in
            guard e["event"] as? String == "state", let to = e["to"] as? String, let g = e["generation"] as? Int,
                let at = (e["atMs"] as? NSNumber)?.int64Value
            else { return nil }
            return (to, g, at)
        }
    }

    /// The last status line of a service.
    func lastStatus(_ id: String) -> [String: Any]? {
        events(id).last { $0["event"] as? String == "status" }
    }

    // MARK: Upstream

    /// POSTs or GETs the upstream's control endpoints (through Python, an independent HTTP client).
    func upstreamRequest(_ method: String, _ path: String) throws -> String {
        let script = """
            import urllib.request, sys
            r = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:\(upstreamPort)\(path)", method="\(method)", data=b"" if "\(method)" == "POST" else None), timeout=5)
            sys.stdout.write(r.read().decode())
            """
        let r = try runProcess(["python3", "-c", script], timeout: 20)
        guard r.status == 0 else { throw FleetHarnessFailure("upstream request failed: \(r.output)") }
        return r.output
    }

    /// Calls that reached the upstream so far.
    func upstreamCalls() throws -> Int {
        let stats = try upstreamRequest("GET", "/stats")
        guard let range = stats.range(of: "calls="), let n = Int(stats[range.upperBound...].prefix { $0.isNumber }) else {
            throw FleetHarnessFailure("unexpected /stats answer: \(stats)")
        }
        return n
    }

    /// The server's view of the breaker, through the CLI (`-o json`).
    func serverBreaker(server address: String? = nil) throws -> (state: String, generation: Int)? {
        let r = try cli(["breakers", "get", "orders-upstream", "-o", "json"], identity: "reader", server: address)
        guard r.status == 0, let obj = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any],
            let status = obj["status"] as? [String: Any], let state = status["state"] as? String, let g = status["generation"] as? Int
        else { return nil }
        return (state, g)
    }
}

/// Polls (bounded, 10 ms) until `condition` holds; false on timeout.
func eventually(_ timeout: TimeInterval, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    return try condition()
}

let fleetPolicy = """
    name: fleet-test
    description: Trips after 3 consecutive failures; 1.5 s open; 2 probes, both must pass.
    circuitBreaker:
      consecutiveFailuresThreshold: 3
      minimumCalls: 1
      openDuration:
        baseMs: 1500
      halfOpen:
        permittedCalls: 2
        successThreshold: 2
        maxWaitMs: 5000
    timeout:
      attemptMs: 1000
    """

/// The fleet's own infrastructure (the upstream) failed: the test fails
/// with this, rather than being skipped, so a broken harness cannot pass.
struct FleetHarnessFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
