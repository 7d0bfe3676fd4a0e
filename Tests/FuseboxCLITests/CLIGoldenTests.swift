import Foundation
import FuseboxTesting
import XCTest

/// The CLI as a user runs it, against a real fuseboxd, compared with the
/// files in Golden/ (times, ports and temporary paths normalised). Run with
/// UPDATE_GOLDEN=1 to rewrite them after an intended change, then review the diff.
final class CLIGoldenTests: XCTestCase {
    static let golden = repositoryRoot.appendingPathComponent("Tests/FuseboxCLITests/Golden")
    var server: FuseboxdProcess!
    var directory = ""

    override func setUp() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        server = try FuseboxdProcess(dataDirectory: directory + "/data")
    }

    override func tearDown() async throws {
        server?.stop(SIGKILL)
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func fusebox(_ args: [String], identity: String? = "admin", server address: String? = nil) throws -> ProcessResult {
        var full = args + ["--server", address ?? "127.0.0.1:\(server.port)", "--ca", try TestCertificates.path("ca.pem")]
        if let identity { full += ["--cert", try TestCertificates.path("\(identity).pem"), "--key", try TestCertificates.path("\(identity).key")] }
        return try runProcess([builtProduct("fusebox").path] + full, timeout: 30, environment: ["HOME": directory, "COLUMNS": "200"])
    }

    private func normalise(_ text: String) -> String {
        var t = text.replacingOccurrences(of: #"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"#, with: "<TIME>", options: .regularExpression)
        t = t.replacingOccurrences(of: "127.0.0.1:\(server.port)", with: "127.0.0.1:<PORT>")
        t = t.replacingOccurrences(of: directory, with: "<DIR>")
        t = t.replacingOccurrences(of: #"\(\d+ ms\)"#, with: "(<MS> ms)", options: .regularExpression)
        t = t.replacingOccurrences(of: #""latencyMs": \d+"#, with: "\"latencyMs\": <MS>", options: .regularExpression)
        return t
    }

    /// Compares `result` (exit status and output) with Golden/`name`.txt.
    private func assertGolden(_ name: String, _ result: ProcessResult, file: StaticString = #filePath, line: UInt = #line) throws {
        let actual = "exit: \(result.status)\n---\n" + normalise(result.output)
        let url = Self.golden.appendingPathComponent("\(name).txt")
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try actual.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        XCTAssertEqual(actual, expected, "output of \(name) differs from \(url.path) (UPDATE_GOLDEN=1 rewrites it)", file: file, line: line)
    }

    /// `cluster status` against a standalone server, as a reader: itself,
    /// the one replica, leading (the host name in it varies, so no golden file).
    func testClusterStatusOfAStandaloneServer() throws {
        let result = try fusebox(["cluster", "status"], identity: "reader")
        XCTAssertEqual(result.status, 0, result.output)
        let lines = result.output.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.first?.hasPrefix("standalone on sqlite; leader ") ?? false, result.output)
        XCTAssertTrue(lines.contains { $0.hasPrefix("ID ") && $0.hasSuffix("LAST HEARTBEAT") }, result.output)
        XCTAssertEqual(lines.filter { $0.contains("127.0.0.1:\(server.port)  *") && $0.contains("  yes  ") }.count, 1, result.output)
        XCTAssertFalse(result.output.contains("ENDPOINT"), "no etcd members: \(result.output)")
        let json = try fusebox(["cluster", "status", "-o", "json"], identity: "reader")
        XCTAssertEqual(json.status, 0, json.output)
        XCTAssertTrue(json.output.contains("\"mode\": \"standalone\""), json.output)
        XCTAssertTrue(json.output.contains("\"address\": \"127.0.0.1:\(server.port)\""), json.output)
        XCTAssertTrue(json.output.contains("\"etcdMembers\": []"), json.output)
    }

    /// Global options work before the subcommand too, as `fusebox --help` shows.
    func testGlobalOptionsBeforeTheSubcommand() throws {
        let result = try runProcess([
            builtProduct("fusebox").path, "--server", "127.0.0.1:\(server.port)", "--ca", try TestCertificates.path("ca.pem"),
            "--cert", try TestCertificates.path("admin.pem"), "--key", try TestCertificates.path("admin.key"), "-o", "json",
            "audit", "--since", "1h",
        ], timeout: 30, environment: ["HOME": directory, "COLUMNS": "200"])
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertFalse(result.output.contains("Unknown option"), result.output)
        XCTAssertTrue(result.output.hasPrefix("[") || result.output.hasPrefix("{"), "JSON output expected: \(result.output)")
        let registries = try runProcess([
            builtProduct("fusebox").path, "--server=127.0.0.1:\(server.port)", "--ca", try TestCertificates.path("ca.pem"),
            "--cert", try TestCertificates.path("reader.pem"), "--key", try TestCertificates.path("reader.key"), "registries", "list",
        ], timeout: 30, environment: ["HOME": directory, "COLUMNS": "200"])
        XCTAssertEqual(registries.status, 0, registries.output)
        XCTAssertTrue(registries.output.contains("default"), registries.output)
    }

    /// A list of endpoints, from a context (as a YAML list) or from
    /// FUSEBOX_SERVER: an unreachable first endpoint is skipped.
    func testServerListsFromTheConfigFileAndTheEnvironment() throws {
        let dead = "127.0.0.1:1"
        let alive = "127.0.0.1:\(server.port)"
        let config = directory + "/ha-config.yaml"
        try """
            current-context: ha
            contexts:
              ha:
                server: [\(dead), \(alive)]
                ca: \(try TestCertificates.path("ca.pem"))
                cert: \(try TestCertificates.path("reader.pem"))
                key: \(try TestCertificates.path("reader.key"))
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let fromFile = try runProcess(
            [builtProduct("fusebox").path, "registries", "list", "--config", config], timeout: 30,
            environment: ["HOME": directory, "COLUMNS": "200"])
        XCTAssertEqual(fromFile.status, 0, fromFile.output)
        XCTAssertTrue(fromFile.output.contains("default"), fromFile.output)

        let identity = [
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reader.pem"),
            "--key", try TestCertificates.path("reader.key"),
        ]
        let fromEnvironment = try runProcess(
            [builtProduct("fusebox").path, "registries", "list"] + identity, timeout: 30,
            environment: ["HOME": directory, "COLUMNS": "200", "FUSEBOX_SERVER": "\(dead),\(alive)"])
        XCTAssertEqual(fromEnvironment.status, 0, fromEnvironment.output)

        let allDown = try runProcess(
            [builtProduct("fusebox").path, "registries", "list"] + identity, timeout: 30,
            environment: ["HOME": directory, "COLUMNS": "200", "FUSEBOX_SERVER": "\(dead),127.0.0.1:2"])
        XCTAssertEqual(allDown.status, 3, allDown.output)
        XCTAssertTrue(allDown.output.contains("cannot reach fuseboxd at \(dead),127.0.0.1:2"), allDown.output)
        XCTAssertTrue(allDown.output.contains("tried 2 of 2 endpoints"), allDown.output)
    }

    func testPolicyListingsAsTableJSONAndYAML() throws {
        try assertGolden("policies-list-table", try fusebox(["policies", "list"]))
        try assertGolden("policies-get-yaml", try fusebox(["policies", "get", "external", "-o", "yaml"]))
        try assertGolden("policies-get-json", try fusebox(["policies", "get", "ai", "-o", "json"]))
        try assertGolden("registries-list-json", try fusebox(["registries", "list", "-o", "json"]))
    }

    func testBreakerOverrideAndListings() throws {
        try assertGolden("breaker-force-open", try fusebox(["breaker", "force-open", "payments-api", "--policy", "api", "--reason", "drill", "--for", "10m"]))
        try assertGolden("breakers-list-table", try fusebox(["breakers", "list"], identity: "reader"))
        try assertGolden("breakers-list-json", try fusebox(["breakers", "list", "-o", "json"], identity: "reader"))
        try assertGolden("breakers-get-table", try fusebox(["breakers", "get", "payments-api"], identity: "reader"))
        try assertGolden("audit-table", try fusebox(["audit", "--since", "1h"]))
        try assertGolden("error-audit-by-reader", try fusebox(["audit"], identity: "reader"))
    }

    func testApplyDiffAndHistory() throws {
        let path = directory + "/checkout.yaml"
        try """
            name: checkout
            description: Checkout's calls to payments.
            circuitBreaker:
              failureRateThreshold: 50
              minimumCalls: 20
            retry:
              maxAttempts: 2
            timeout:
              attemptMs: 800
            """.write(toFile: path, atomically: true, encoding: .utf8)
        try assertGolden("policies-diff-new", try fusebox(["policies", "diff", "-f", path]))
        try assertGolden("policies-apply", try fusebox(["policies", "apply", "-f", path, "--reason", "first version"]))
        try assertGolden("policies-diff-same", try fusebox(["policies", "diff", "-f", path]))
        try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "attemptMs: 800", with: "attemptMs: 1200")
            .write(toFile: path, atomically: true, encoding: .utf8)
        try assertGolden("policies-diff-changed", try fusebox(["policies", "diff", "-f", path]))
        try assertGolden("policies-apply-again", try fusebox(["policies", "apply", "-f", path, "--reason", "slower bank"]))
        let history = try fusebox(["policies", "history", "checkout", "-o", "json"])
        XCTAssertEqual(history.status, 0, history.output)
        XCTAssertTrue(history.output.contains("\"reason\": \"slower bank\""), history.output)
    }

    func testErrorMessages() throws {
        try assertGolden("error-permission-denied", try fusebox(["breaker", "force-open", "payments-api", "--reason", "drill"], identity: "reporter"))
        try assertGolden("error-connection-refused", try fusebox(["breakers", "list"], server: "127.0.0.1:1"))
        try assertGolden("error-not-found", try fusebox(["policies", "get", "no-such-policy"]))
        try assertGolden("error-apply-by-reader", try fusebox(["policies", "apply", "-f", try badOrGoodFile(good: true)], identity: "reader"))
        try assertGolden("error-bad-duration", try fusebox(["breaker", "force-open", "x", "--reason", "r", "--for", "ten minutes"]))
        try assertGolden("error-wrong-ca", try wrongCA())
        try assertGolden("error-no-ca", try runProcess([builtProduct("fusebox").path, "health"], timeout: 30, environment: ["HOME": directory]))
    }

    func testValidateReportsEveryProblemWithLineAndColumn() throws {
        let bad = try badOrGoodFile(good: false)
        try assertGolden("validate-bad", try runProcess([builtProduct("fusebox").path, "policies", "validate", "-f", bad], timeout: 30))
        try assertGolden("validate-bad-json", try runProcess([builtProduct("fusebox").path, "policies", "validate", "-f", bad, "-o", "json"], timeout: 30))
        try assertGolden("apply-bad", try fusebox(["policies", "apply", "-f", bad]))
        let good = try badOrGoodFile(good: true)
        try assertGolden("validate-good", try runProcess([builtProduct("fusebox").path, "policies", "validate", "-f", good], timeout: 30))
    }

    func testApplyShowsTheServersProblemsAtTheirLinesInTheFile() async throws {
        let registry = try await StricterRegistry.start()
        let path = directory + "/strict.yaml"
        try """
            name: relaxed
            labels: {team: payments}
            timeout: {attemptMs: 800}
            ---
            name: strict
            labels: {tier: "1"}
            circuitBreaker:
              failureRateThreshold: 50
            retry:
              backoff: {initialMs: 100, maxMs: 10000}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try fusebox(["policies", "apply", "-f", path], server: "127.0.0.1:\(registry.port)")
        try await registry.stop()
        try assertGolden("apply-rejected-by-server", result)
    }

    func testContextsFromTheConfigFile() throws {
        let config = directory + "/.config/fusebox"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        try """
            current-context: local
            contexts:
              local:
                server: 127.0.0.1:\(server.port)
                ca: \(try TestCertificates.path("ca.pem"))
                cert: \(try TestCertificates.path("reader.pem"))
                key: \(try TestCertificates.path("reader.key"))
                output: json
              elsewhere:
                server: 127.0.0.1:1
                ca: \(try TestCertificates.path("ca.pem"))
            """.write(toFile: config + "/config.yaml", atomically: true, encoding: .utf8)
        let env = ["HOME": directory]
        let r = try runProcess([builtProduct("fusebox").path, "registries", "list"], timeout: 30, environment: env)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("\"name\": \"default\""), "the context's server and output were not used: \(r.output)")
        let other = try runProcess([builtProduct("fusebox").path, "health", "--context", "elsewhere"], timeout: 30, environment: env)
        XCTAssertEqual(other.status, 3, other.output)
        let env2 = env.merging(["FUSEBOX_OUTPUT": "yaml"]) { $1 }
        let y = try runProcess([builtProduct("fusebox").path, "registries", "list"], timeout: 30, environment: env2)
        XCTAssertTrue(y.output.contains("- name: default"), "FUSEBOX_OUTPUT did not override the context: \(y.output)")
        let missing = try runProcess([builtProduct("fusebox").path, "health", "--context", "nope"], timeout: 30, environment: env)
        XCTAssertEqual(missing.status, 2, missing.output)
        XCTAssertTrue(missing.output.contains("contexts there: elsewhere, local"), missing.output)
    }

    func testWatchPrintsTheCurrentStatesThenTransitions() throws {
        XCTAssertEqual(try fusebox(["breaker", "force-open", "ledger", "--policy", "api", "--reason", "setup"]).status, 0)
        let watch = try LaunchedProcess(builtProduct("fusebox"), [
            "breakers", "watch", "-o", "json", "--count", "1", "--timeout", "20s", "--server", "127.0.0.1:\(server.port)",
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reader.pem"), "--key", try TestCertificates.path("reader.key"),
        ])
        XCTAssertNotNil(watch.waitForLine(timeout: 20) { $0.contains("\"event\": \"current\"") && $0.contains("FORCED_OPEN") }, watch.text + watch.stderrTail())
        XCTAssertEqual(try fusebox(["breaker", "reset", "ledger", "--reason", "watch test"]).status, 0)
        let line = watch.waitForLine(timeout: 20) { $0.contains("\"event\": \"transition\"") }
        XCTAssertTrue(line?.contains("\"from\": \"FORCED_OPEN\"") ?? false, line ?? watch.text)
        XCTAssertTrue(line?.contains("\"state\": \"CLOSED\"") ?? false, line ?? watch.text)
        XCTAssertEqual(watch.stop(SIGTERM, timeout: 20), 0, "watch did not end by itself after --count 1: \(watch.stderrTail())")
    }

    func testEveryCommandsHelpShowsExamples() throws {
        let commands = [
            ["breakers", "list"], ["breakers", "get"], ["breakers", "watch"], ["breaker", "force-open"], ["breaker", "force-close"],
            ["breaker", "disable"], ["breaker", "shadow"], ["breaker", "reset"], ["policies", "list"], ["policies", "get"],
            ["policies", "apply"], ["policies", "delete"], ["policies", "history"], ["policies", "diff"], ["policies", "validate"],
            ["registries", "list"], ["audit"], ["health"], ["version"], [],
        ]
        for command in commands {
            let r = try runProcess([builtProduct("fusebox").path] + command + ["--help"], timeout: 30)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains("Examples:"), "`fusebox \(command.joined(separator: " ")) --help` shows no examples")
        }
    }

    private func badOrGoodFile(good: Bool) throws -> String {
        let path = directory + (good ? "/good.yaml" : "/bad.yaml")
        let text = good ? """
            name: search
            circuitBreaker:
              consecutiveFailuresThreshold: 5
            bulkhead:
              maxConcurrent: 10
            """ : """
            name: search api
            circuitBreaker:
              failureRateThresold: 50
              minimumCalls: 0
              window: {kind: sliding, size: 100}
            retry:
              maxAttempts: three
              backoff:
                initialMs: 500
                maxMs: 100
            timeout: {attemptMs: 2000, totalMs: 1000}
            cache: {maxEntries: 10}
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func wrongCA() throws -> ProcessResult {
        // A CA that did not sign the server's certificate.
        let other = directory + "/other-ca"
        let made = try runProcess(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                   "-keyout", other + ".key", "-out", other + ".pem", "-days", "1", "-subj", "/CN=other-ca"], timeout: 30)
        XCTAssertEqual(made.status, 0, made.output)
        let r = try runProcess([builtProduct("fusebox").path, "health", "--server", "127.0.0.1:\(server.port)", "--ca", other + ".pem",
                                "--cert", try TestCertificates.path("reader.pem"), "--key", try TestCertificates.path("reader.key")], timeout: 30)
        return r
    }
}
