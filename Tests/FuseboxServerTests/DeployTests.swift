import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxServer
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
import Yams

/// What deploy/ promises, checked on this machine.
final class DeployTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var work: String!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-deploy-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: work)
        try await group.shutdownGracefully()
    }

    private func deployFile(_ path: String) throws -> String {
        try String(contentsOf: repositoryRoot.appendingPathComponent("deploy/\(path)"), encoding: .utf8)
    }

    private var fuseboxd: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fuseboxd").path
    }

    /// Every configuration in deploy/ parses with the server's own parser.
    func testEveryConfigInDeployParses() throws {
        var example = ServerConfiguration()
        try example.apply(yaml: try deployFile("fusebox.example.yaml"), source: "fusebox.example.yaml")
        XCTAssertEqual(example, ServerConfiguration(), "the example documents the defaults, and only them")
        XCTAssertEqual(Set(example.roles), Set(Authorizer.developmentRules))

        let configMap = try XCTUnwrap(try Yams.load(yaml: try deployFile("kubernetes/configmap.yaml")) as? [String: Any])
        let embedded = try XCTUnwrap((configMap["data"] as? [String: Any])?["fusebox.yaml"] as? String)
        var k8s = ServerConfiguration()
        try k8s.apply(yaml: embedded, source: "configmap.yaml")
        XCTAssertEqual(k8s.host, "0.0.0.0")
        XCTAssertEqual(k8s.maximumConnections, 5_000)
        XCTAssertEqual(k8s.roles.map(\.role), [.reporter, .admin])
        // The example has a line for every key the parser knows.
        for key in ServerConfiguration.keys.keys {
            let leaf = String(key.split(separator: ".").last ?? "")
            XCTAssertTrue(try deployFile("fusebox.example.yaml").contains(leaf + ":"), "fusebox.example.yaml lacks \(key)")
        }
        // Every manifest is valid YAML.
        for file in ["statefulset.yaml", "service.yaml", "poddisruptionbudget.yaml", "networkpolicy.yaml", "secret.example.yaml"] {
            XCTAssertNotNil(try Yams.load(yaml: try deployFile("kubernetes/\(file)")), file)
        }
    }

    /// Every metric the alert rules name exists on a live server's /metrics.
    func testAlertRulesNameOnlyMetricsTheServerExports() async throws {
        let rules = try XCTUnwrap(try Yams.load(yaml: try deployFile("prometheus/alerts.yaml")) as? [String: Any])
        let exprs = ((rules["groups"] as? [[String: Any]]) ?? []).flatMap { ($0["rules"] as? [[String: Any]]) ?? [] }.compactMap { $0["expr"] as? String }
        XCTAssertEqual(exprs.count, 5)
        let names = Set(exprs.flatMap { expr in
            expr.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }).map(String.init).filter { $0.hasPrefix("fusebox_") }
        })
        XCTAssertGreaterThanOrEqual(names.count, 5)
        let server = try FuseboxdProcess(dataDirectory: work + "/data")
        let reporter = try server.client("reporter", group: group)
        _ = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "a", breaker: "alerted", policy: "api", generation: 0, failure: 5), as: Fusebox_V1_ReportOutcomesResponse.self)
        let metrics = try runProcess(["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:\(server.metricsPort)/metrics').read().decode())"]).output
        for name in names.sorted() {
            XCTAssertTrue(metrics.contains("\(name){") || metrics.contains("\(name) "), "\(name) is not on /metrics")
        }
        await reporter.close()
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// A backup taken while writes are running restores into a server that
    /// serves the same data: a consistent prefix of the writes.
    func testBackupDuringWritesRestoresIntoAWorkingServer() async throws {
        let server = try FuseboxdProcess(dataDirectory: work + "/data")
        let admin = try server.client("admin", group: group)
        let acknowledged = NIOLockedValueBox(0)
        let writer = Task {
            for i in 0..<400 {
                var request = Fusebox_V1_PutPolicyRequest()
                request.registry = "bk"
                var policy = Presets.database
                policy.name = "p\(i)"
                request.policy = PolicyMapping.wire(policy)
                _ = try await admin.unary("fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self)
                acknowledged.withLockedValue { $0 += 1 }
            }
        }
        while acknowledged.withLockedValue({ $0 }) < 100 { try await Task.sleep(for: .milliseconds(5)) }
        let before = acknowledged.withLockedValue { $0 }
        let backup = try runProcess([fuseboxd, "backup", "--data-dir", work + "/data", "--out", work + "/backup.db"], timeout: 60)
        XCTAssertEqual(backup.status, 0, backup.output)
        try await writer.value
        XCTAssertEqual(acknowledged.withLockedValue { $0 }, 400, "writes went on during the backup")
        await admin.close()
        XCTAssertEqual(server.stop(SIGTERM).0, 0)

        try FileManager.default.createDirectory(atPath: work + "/restored", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: work + "/backup.db", toPath: work + "/restored/fusebox.db")
        let restored = try FuseboxdProcess(dataDirectory: work + "/restored")
        let reader = try restored.client("reader", group: group)
        var get = Fusebox_V1_GetRegistryRequest()
        get.registry = "bk"
        let snapshot = try await reader.unary("fusebox.v1.RegistryService", "GetRegistry", get, as: Fusebox_V1_RegistrySnapshot.self)
        let version = Int(snapshot.version)
        XCTAssertGreaterThanOrEqual(version, before, "the backup holds every write acknowledged before it began")
        XCTAssertLessThan(version, 400, "and was taken while writes were running")
        XCTAssertEqual(Set(snapshot.policies.compactMap { $0.policy?.name }), Set((0..<version).map { "p\($0)" }), "a consistent prefix")
        XCTAssertEqual(snapshot.policies.first?.policy.flatMap { try? PolicyMapping.policy(from: $0).get() }?.bulkhead, Presets.database.bulkhead)
        await reader.close()
        XCTAssertEqual(restored.stop(SIGTERM).0, 0)
    }

    /// The container entrypoint starts a working server on this machine.
    func testContainerEntrypointStartsAWorkingServer() async throws {
        let certs = work + "/certs"
        try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
        for f in ["server.pem", "server.key", "ca.pem"] {
            try FileManager.default.copyItem(atPath: try TestCertificates.path(f), toPath: certs + "/" + f)
        }
        let config = work + "/fusebox.yaml"
        try "listen:\n  port: 0\nobservability:\n  port: 0\n".write(toFile: config, atomically: true, encoding: .utf8)
        // Missing pieces are named.
        let missing = try runProcess(
            ["bash", "deploy/docker/entrypoint.sh"], timeout: 20,
            environment: ["FUSEBOX_CONFIG": config, "FUSEBOX_CERTS": work + "/nowhere", "FUSEBOXD": fuseboxd])
        XCTAssertEqual(missing.status, 78)
        XCTAssertTrue(missing.output.contains("nowhere/server.pem is missing"), missing.output)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repositoryRoot.appendingPathComponent("deploy/docker/entrypoint.sh").path]
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["FUSEBOX_CONFIG": config, "FUSEBOX_CERTS": certs, "FUSEBOX_DATA_DIR": work + "/data", "FUSEBOXD": fuseboxd]) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while !text.contains("observability on"), Date() < deadline, process.isRunning {
            text += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        }
        let portText = text.range(of: "listening on 127.0.0.1:").map { text[$0.upperBound...].prefix { $0.isNumber } }
        let port = try XCTUnwrap(portText.flatMap { Int($0) }, text)
        let client = try RPCClient(configuration: RPCClientConfiguration(
            host: "127.0.0.1", port: port,
            tls: .client(trustRootsPath: certs + "/ca.pem", certificateChainPath: try TestCertificates.path("reader.pem"),
                         privateKeyPath: try TestCertificates.path("reader.key"))), group: group)
        let health = try await client.unary("grpc.health.v1.Health", "Check", Grpc_Health_V1_HealthCheckRequest(), as: Grpc_Health_V1_HealthCheckResponse.self)
        XCTAssertEqual(health.status, .serving)
        await client.close()
        kill(process.processIdentifier, SIGTERM)  // exec'd: the signal reaches fuseboxd itself
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
    }

    /// `systemd-analyze verify` accepts the unit (with ExecStart pointing at the built binary).
    /// The image builds from what its Dockerfile copies: the build stage's
    /// COPY set, reproduced in an empty directory, is a package SwiftPM can
    /// load, with the fuseboxd product. (No container engine runs here, so
    /// the image itself is not built; this is the check that failed when the
    /// Dockerfile left out directories the manifest declares targets in.)
    func testTheDockerfileCopiesEverythingThePackageNeeds() throws {
        let dockerfile = try String(contentsOf: repositoryRoot.appendingPathComponent("deploy/docker/Dockerfile"), encoding: .utf8)
        let stages = dockerfile.components(separatedBy: "\nFROM ")
        let build = try XCTUnwrap(stages.first { $0.contains(" AS build") } ?? stages.first)
        let copies = build.split(separator: "\n").filter { $0.hasPrefix("COPY ") && !$0.contains("--from") }
        XCTAssertFalse(copies.isEmpty)
        let context = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-docker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: context, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: context) }
        for line in copies {
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count == 3 else { return XCTFail("unexpected COPY line: \(line)") }
            let destination = parts[2] == "./" ? context.appendingPathComponent(parts[1]) : context.appendingPathComponent(parts[2])
            try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent(parts[1]), to: destination)
        }
        let described = try runProcess(["swift", "package", "--package-path", context.path, "describe", "--type", "json"], timeout: 120)
        XCTAssertEqual(described.status, 0, described.output)
        XCTAssertTrue(described.output.contains("\"fuseboxd\""), described.output)
    }

    func testSystemdUnitVerifies() throws {
        guard (try? runProcess(["systemd-analyze", "--version"], timeout: 10))?.status == 0 else {
            throw XCTSkip("systemd-analyze is not installed")
        }
        let unit = try deployFile("systemd/fuseboxd.service").replacingOccurrences(of: "/usr/local/bin/fuseboxd", with: fuseboxd)
        let path = work + "/fuseboxd.service"
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try runProcess(["systemd-analyze", "verify", path], timeout: 60)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertFalse(result.output.contains("fuseboxd.service:"), "warnings about the unit: \(result.output)")
    }
}
