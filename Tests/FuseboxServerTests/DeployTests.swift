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

    /// Every query of the Grafana dashboard (panels and template variables)
    /// names metrics fuseboxd exports: each one is registered by the server's
    /// code (`Counter(label: "fusebox_…")` and the like in Sources/,
    /// histograms with their _bucket/_sum/_count series) and listed in
    /// docs/SERVER.md's metrics.
    func testTheGrafanaDashboardQueriesOnlyMetricsTheServerExports() throws {
        let dashboard = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try deployFile("grafana/fusebox.json").utf8)) as? [String: Any])
        var expressions: [String] = []
        func walk(_ value: Any) {
            if let map = value as? [String: Any] {
                for (key, item) in map {
                    // Panel queries, and template variables' queries (a string or {query: …}).
                    if key == "expr" || key == "query" || key == "definition", let text = item as? String { expressions.append(text) }
                    walk(item)
                }
            } else if let list = value as? [Any] {
                list.forEach(walk)
            }
        }
        walk(dashboard)
        XCTAssertGreaterThanOrEqual(expressions.count, 10, "the dashboard has panels with queries")
        func names(in text: String) -> Set<String> {
            Set(text.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }).map(String.init).filter { $0.hasPrefix("fusebox_") })
        }
        var registered = Set<String>()
        let sources = repositoryRoot.appendingPathComponent("Sources")
        let walker = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)
        while let url = walker?.nextObject() as? URL {
            guard url.pathExtension == "swift", !url.path.contains("/FuseboxClient/"), !url.path.contains("/Benchmarks/") else { continue }
            let text = try String(contentsOf: url, encoding: .utf8)
            // A metric is registered as Counter/Gauge/Timer/Recorder(label: "fusebox_…").
            for part in text.components(separatedBy: "(label: \"").dropFirst() where part.hasPrefix("fusebox_") {
                registered.insert(String(part.prefix { $0.isLetter || $0.isNumber || $0 == "_" }))
            }
        }
        let documented = names(in: try String(contentsOf: repositoryRoot.appendingPathComponent("docs/SERVER.md"), encoding: .utf8))
        var queried = Set<String>()
        for expression in expressions { queried.formUnion(names(in: expression)) }
        XCTAssertGreaterThanOrEqual(queried.count, 10)
        for name in queried.sorted() {
            var base = name
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && registered.contains(String(name.dropLast(suffix.count))) {
                base = String(name.dropLast(suffix.count))
            }
            XCTAssertTrue(registered.contains(base), "\(name), queried by deploy/grafana/fusebox.json, is not a metric fuseboxd registers")
            XCTAssertTrue(documented.contains(base), "\(name), queried by deploy/grafana/fusebox.json, is not in docs/SERVER.md's metrics")
        }
    }

    /// deploy/prometheus/alerts.yaml passes its unit tests (alerts.test.yaml:
    /// OPEN and FORCED_OPEN for 15 minutes fire, a breaker that closed does
    /// not, flapping, fuseboxd absent), with Debian's promtool.
    func testPrometheusRulesPassTheirUnitTests() throws {
        let checked = try runProcess(["promtool", "check", "rules", "deploy/prometheus/alerts.yaml"], timeout: 60)
        XCTAssertEqual(checked.status, 0, checked.output)
        let tested = try runProcess(["promtool", "test", "rules", "deploy/prometheus/alerts.test.yaml"], timeout: 120)
        XCTAssertEqual(tested.status, 0, tested.output)
        XCTAssertTrue(tested.output.contains("SUCCESS"), tested.output)
    }

    /// The example Alertmanager configuration is valid for Debian's amtool.
    func testAlertmanagerExampleConfigIsValid() throws {
        let checked = try runProcess(["amtool", "check-config", "deploy/prometheus/alertmanager.yml"], timeout: 60)
        XCTAssertEqual(checked.status, 0, checked.output)
        XCTAssertTrue(checked.output.contains("SUCCESS"), checked.output)
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

        // The build stage's own `swift build` command, run in that context.
        // Podman and buildah cannot pull the Swift image here, so this is the
        // image build as far as this machine allows. Debug instead of
        // `-c release`: a release build from scratch takes about 10 minutes
        // on 2 cores; what can break is the COPY set and the flags, not the
        // optimiser.
        // Lines ending in "\" continue on the next one, as in the shell.
        let logical = build.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n")
        let run = try XCTUnwrap(logical.first { $0.hasPrefix("RUN swift build") }, "no RUN swift build in the build stage")
        var arguments = run.dropFirst("RUN ".count).components(separatedBy: "&&")[0].split(separator: " ").map(String.init)
        XCTAssertEqual(Array(arguments.prefix(2)), ["swift", "build"])
        if let release = arguments.firstIndex(of: "-c") { arguments.removeSubrange(release...(release + 1)) }
        let built = try runProcess(arguments + ["--package-path", context.path], in: context, timeout: 1_200)
        XCTAssertEqual(built.status, 0, "the Dockerfile's build failed in its COPY set: \(built.output.suffix(3_000))")
        let bin = try runProcess(["swift", "build", "--package-path", context.path, "--show-bin-path"], in: context, timeout: 120)
        let binary = bin.output.split(separator: "\n").last.map { String($0) + "/fuseboxd" } ?? ""
        let help = try runProcess([binary, "--help"], timeout: 30)
        XCTAssertEqual(help.status, 0, help.output)
        XCTAssertTrue(help.output.contains("OVERVIEW: The Fusebox control plane"), help.output)

        // Every shared library it needs is in the runtime stage: installed
        // there by apt, or part of debian:bookworm-slim.
        let runtime = try XCTUnwrap(stages.first { $0.hasPrefix("debian:bookworm-slim") }, "no debian:bookworm-slim runtime stage")
        let installLine = try XCTUnwrap(
            runtime.components(separatedBy: "--no-install-recommends").dropFirst().first, "the runtime stage installs nothing with apt-get")
        let installed = Set(installLine.split(whereSeparator: { $0 == " " || $0 == "\\" || $0 == "\n" }).prefix { $0 != "&&" }.map(String.init))
        XCTAssertTrue(installed.contains("libssl3"), "runtime packages parsed: \(installed)")
        let base: Set<String> = ["libc6", "libgcc-s1", "libstdc++6", "zlib1g"]
        // The libraries it names itself (ELF NEEDED); apt brings their own dependencies.
        let dynamic = try runProcess(["readelf", "-d", binary], timeout: 30)
        XCTAssertEqual(dynamic.status, 0, dynamic.output)
        let needed = Set(dynamic.output.split(separator: "\n").filter { $0.contains("(NEEDED)") }.compactMap { line -> String? in
            guard let open = line.range(of: "["), let close = line.range(of: "]", range: open.upperBound..<line.endIndex) else { return nil }
            return String(line[open.upperBound..<close.lowerBound])
        })
        XCTAssertTrue(needed.contains("libcurl.so.4"), "readelf found: \(needed.sorted())")
        let linked = try runProcess(["ldd", binary], timeout: 30)
        XCTAssertEqual(linked.status, 0, linked.output)
        var missing: [String] = []
        for line in linked.output.split(separator: "\n") {
            guard let arrow = line.range(of: "=> "), let path = line[arrow.upperBound...].split(separator: " ").first, path.hasPrefix("/"),
                let name = line.split(separator: " ").first.map({ String($0).trimmingCharacters(in: .whitespaces) }), needed.contains(name)
            else { continue }
            let owner = try runProcess(["dpkg", "-S", String(path)], timeout: 30)
            // "libssl3:amd64: /lib/x86_64-linux-gnu/libssl.so.3"; dpkg names a path under /lib by its /usr/lib twin.
            var package = owner.output.split(separator: ":").first.map(String.init) ?? ""
            if owner.status != 0 {
                let usr = try runProcess(["dpkg", "-S", "/usr" + String(path)], timeout: 30)
                package = usr.status == 0 ? usr.output.split(separator: ":").first.map(String.init) ?? "" : "?"
            }
            if !installed.contains(package) && !base.contains(package) { missing.append("\(path) (\(package))") }
        }
        XCTAssertEqual(missing, [], "fuseboxd needs libraries the runtime image does not install")
    }

    func testSystemdUnitVerifies() throws {
        guard (try? runProcess(["systemd-analyze", "--version"], timeout: 10))?.status == 0 else {
            throw DeployCheckFailure("systemd-analyze is not installed: scripts/install-deps installs systemd")
        }
        let unit = try deployFile("systemd/fuseboxd.service").replacingOccurrences(of: "/usr/local/bin/fuseboxd", with: fuseboxd)
        let path = work + "/fuseboxd.service"
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try runProcess(["systemd-analyze", "verify", path], timeout: 60)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertFalse(result.output.contains("fuseboxd.service:"), "warnings about the unit: \(result.output)")
    }

    // MARK: - Replicated mode on etcd (docs/REPLICATION.md)

    /// The Kubernetes manifests for replicated mode: every document parses;
    /// three fuseboxd replicas on a three-member etcd, each replica named and
    /// addressed by its pod, with disruption budgets, probes and anti-affinity;
    /// every variable is one the server documents, and every file a path names
    /// is in the volume mounted there.
    func testReplicatedKubernetesManifests() throws {
        let directory = "kubernetes/replicated"
        let files = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appendingPathComponent("deploy/\(directory)").path)
            .filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(files, ["configmap.yaml", "etcd.yaml", "fuseboxd.yaml", "migrate-job.yaml", "networkpolicy.yaml", "secrets.example.yaml"])
        let readme = try deployFile("\(directory)/README.md")
        var objects: [[String: Any]] = []
        for file in files {
            let documents = try yamlDocuments(try deployFile("\(directory)/\(file)"), source: file)
            XCTAssertFalse(documents.isEmpty, file)
            for document in documents {
                XCTAssertNotNil(document["apiVersion"] as? String, file)
                XCTAssertNotNil(document["kind"] as? String, file)
                XCTAssertNotNil(document.path("metadata", "name") as? String, file)
            }
            objects += documents
            XCTAssertTrue(readme.contains("`\(file)`"), "README.md does not mention \(file)")
        }
        func object(_ kind: String, _ name: String) throws -> [String: Any] {
            try XCTUnwrap(objects.first { $0["kind"] as? String == kind && $0.path("metadata", "name") as? String == name }, "no \(kind) \(name)")
        }
        let variables = try documentedVariables()

        // etcd: three members with stable names from a headless Service.
        let etcd = try object("StatefulSet", "etcd")
        XCTAssertEqual(etcd.path("spec", "replicas") as? Int, 3)
        XCTAssertEqual(etcd.path("spec", "podManagementPolicy") as? String, "Parallel", "members wait for each other's quorum")
        let etcdService = try XCTUnwrap(etcd.path("spec", "serviceName") as? String)
        XCTAssertEqual(try object("Service", etcdService).path("spec", "clusterIP") as? String, "None")
        XCTAssertEqual(try object("Service", etcdService).path("spec", "publishNotReadyAddresses") as? Bool, true)
        XCTAssertEqual((etcd.path("spec", "volumeClaimTemplates") as? [Any])?.count, 1, "members keep their data on a volume")
        let etcdPod = try XCTUnwrap(etcd.path("spec", "template") as? [String: Any])
        let etcdContainer = try XCTUnwrap((etcdPod.path("spec", "containers") as? [[String: Any]])?.first)
        let etcdArguments = ((etcdContainer["command"] as? [String]) ?? []) + ((etcdContainer["args"] as? [String]) ?? [])
        func argument(_ flag: String) -> String? {
            etcdArguments.first { $0.hasPrefix("--\(flag)=") }.map { String($0.dropFirst(flag.count + 3)) }
        }
        let members = (0..<3).map { "etcd-\($0)" }
        let peerDomain = "\(etcdService).$(POD_NAMESPACE).svc"
        XCTAssertEqual(argument("name"), "$(POD_NAME)")
        XCTAssertEqual(argument("initial-cluster"), members.map { "\($0)=https://\($0).\(peerDomain):2380" }.joined(separator: ","))
        XCTAssertEqual(argument("initial-advertise-peer-urls"), "https://$(POD_NAME).\(peerDomain):2380")
        XCTAssertEqual(argument("advertise-client-urls"), "https://$(POD_NAME).\(peerDomain):2379")
        XCTAssertTrue(etcdArguments.contains("--client-cert-auth"), "etcd requires client certificates")
        XCTAssertTrue(etcdArguments.contains("--peer-client-cert-auth"))
        try checkDownwardAPI(etcdContainer)
        try checkAntiAffinity(etcdPod, selector: try XCTUnwrap(etcd.path("spec", "selector", "matchLabels") as? [String: String]))

        // fuseboxd: three replicas, identified by their pods, on that etcd.
        let fuseboxd = try object("StatefulSet", "fuseboxd")
        XCTAssertEqual(fuseboxd.path("spec", "replicas") as? Int, 3)
        let peers = try XCTUnwrap(fuseboxd.path("spec", "serviceName") as? String)
        XCTAssertEqual(try object("Service", peers).path("spec", "clusterIP") as? String, "None")
        let pod = try XCTUnwrap(fuseboxd.path("spec", "template") as? [String: Any])
        let container = try XCTUnwrap((pod.path("spec", "containers") as? [[String: Any]])?.first)
        try checkDownwardAPI(container)
        let env = try environment(container)
        XCTAssertEqual(env["FUSEBOX_STORE_KIND"], "etcd")
        XCTAssertEqual(env["FUSEBOX_REPLICA_ID"], "$(POD_NAME)")
        XCTAssertEqual(env["FUSEBOX_ADVERTISE"], "$(POD_NAME).\(peers).$(POD_NAMESPACE).svc:7443")
        XCTAssertEqual(env["FUSEBOX_ETCD_ENDPOINTS"], members.map { "https://\($0).\(peerDomain):2379" }.joined(separator: ","))
        for name in ["FUSEBOX_ETCD_CA", "FUSEBOX_ETCD_CERT", "FUSEBOX_ETCD_KEY", "FUSEBOX_PEER_CERT", "FUSEBOX_PEER_KEY"] {
            XCTAssertNotNil(env[name], "fuseboxd sets \(name)")
        }
        for name in env.keys where name.hasPrefix("FUSEBOX_") {
            XCTAssertTrue(variables.all.contains(name), "\(name) is documented nowhere")
            if ["FUSEBOX_STORE", "FUSEBOX_ETCD", "FUSEBOX_REPLICA", "FUSEBOX_ADVERTISE", "FUSEBOX_PEER"].contains(where: name.hasPrefix) {
                XCTAssertTrue(variables.replication.contains(name), "\(name) is not in docs/REPLICATION.md")
            }
        }
        let ports = Dictionary(((container["ports"] as? [[String: Any]]) ?? []).compactMap { port in
            (port["name"] as? String).flatMap { name in (port["containerPort"] as? Int).map { (name, $0) } }
        }, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(ports["grpc"], 7443)
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            XCTAssertEqual(container.path(probe, "httpGet", "path") as? String, path, probe)
            let port = container.path(probe, "httpGet", "port")
            XCTAssertEqual((port as? Int) ?? (port as? String).flatMap { ports[$0] }, 7444, "\(probe) is on the observability port")
        }
        let selector = try XCTUnwrap(fuseboxd.path("spec", "selector", "matchLabels") as? [String: String])
        try checkAntiAffinity(pod, selector: selector)
        let clients = try object("Service", "fuseboxd")
        XCTAssertEqual(clients.path("spec", "selector") as? [String: String], selector)

        // Disruption budgets: at most one replica and one member at a time.
        let budgets = objects.filter { $0["kind"] as? String == "PodDisruptionBudget" }
        func budget(for pod: [String: Any]) -> [String: Any]? {
            let labels = (pod.path("metadata", "labels") as? [String: String]) ?? [:]
            return budgets.first { budget in
                let selector = (budget.path("spec", "selector", "matchLabels") as? [String: String]) ?? [:]
                return !selector.isEmpty && selector.allSatisfy { labels[$0.key] == $0.value }
            }
        }
        XCTAssertEqual(budget(for: pod)?.path("spec", "minAvailable") as? Int, 2, "fuseboxd's budget")
        XCTAssertEqual(budget(for: etcdPod)?.path("spec", "maxUnavailable") as? Int, 1, "etcd's budget")
        let job = try object("Job", "fuseboxd-migrate")
        let jobPod = try XCTUnwrap(job.path("spec", "template") as? [String: Any])
        XCTAssertNil(budget(for: jobPod), "the migration Job's pod is not counted as a replica")

        // The example Secrets hold no key material, and every file a path names is there.
        var secrets: [String: Set<String>] = [:]
        for secret in objects where secret["kind"] as? String == "Secret" {
            let data = try XCTUnwrap(secret["stringData"] as? [String: String])
            for (key, value) in data {
                XCTAssertTrue(value.contains("\n...\n"), "\(key) in the example Secret must be a placeholder")
            }
            secrets[try XCTUnwrap(secret.path("metadata", "name") as? String)] = Set(data.keys)
        }
        let configMap = try object("ConfigMap", "fuseboxd-config")
        let configMaps = ["fuseboxd-config": Set(((configMap["data"] as? [String: Any]) ?? [:]).keys)]
        let volumeFiles = Files(secrets: secrets, configMaps: configMaps)
        for (name, value) in env where value.hasPrefix("/") && name != "FUSEBOX_CERTS" && name != "FUSEBOX_DATA_DIR" {
            volumeFiles.check(value, in: container, pod: pod, named: name)
        }
        let dataMount = ((container["volumeMounts"] as? [[String: Any]]) ?? []).first { $0["mountPath"] as? String == env["FUSEBOX_DATA_DIR"] }
        XCTAssertNotNil(dataMount, "the entrypoint needs a writable FUSEBOX_DATA_DIR")
        XCTAssertNotEqual(dataMount?["readOnly"] as? Bool, true)
        for file in ["server.pem", "server.key", "ca.pem"] {  // what the entrypoint requires in FUSEBOX_CERTS
            volumeFiles.check((env["FUSEBOX_CERTS"] ?? "") + "/" + file, in: container, pod: pod, named: "FUSEBOX_CERTS")
        }
        for flag in ["trusted-ca-file", "cert-file", "key-file", "peer-trusted-ca-file", "peer-cert-file", "peer-key-file"] {
            volumeFiles.check(argument(flag) ?? "--\(flag) missing", in: etcdContainer, pod: etcdPod, named: flag)
        }
        let jobContainer = try XCTUnwrap((jobPod.path("spec", "containers") as? [[String: Any]])?.first)
        for (name, value) in try environment(jobContainer) where name.hasPrefix("FUSEBOX_") {
            XCTAssertTrue(variables.replication.contains(name), "\(name) is not in docs/REPLICATION.md")
            volumeFiles.check(value, in: jobContainer, pod: jobPod, named: name)
        }

        // The shared configuration: only keys the server documents, the replica role, probes reachable.
        let embedded = try XCTUnwrap((configMap["data"] as? [String: Any])?["fusebox.yaml"] as? String)
        let config = try XCTUnwrap(try Yams.load(yaml: embedded) as? [String: Any])
        let known = Set(ServerConfiguration.keys.keys).union(variables.replicationKeys)
        XCTAssertTrue(variables.replicationKeys.contains("store.etcd.leaseSeconds"), "docs/REPLICATION.md's key table was read")
        for key in leafKeys(config) {
            XCTAssertTrue(known.contains(key), "configmap.yaml: \(key) is neither a key of today's parser nor one of docs/REPLICATION.md")
        }
        XCTAssertEqual(config.path("observability", "port") as? Int, 7444)
        XCTAssertEqual(config.path("observability", "host") as? String, "0.0.0.0", "the kubelet probes the pod's address")
        XCTAssertEqual(config.path("listen", "port") as? Int, 7443)
        let roles = (config["roles"] as? [[String: Any]]) ?? []
        XCTAssertEqual(roles.filter { $0["role"] as? String == "replica" }.compactMap { $0["pattern"] as? String }, ["fusebox-replica"])
        for key in [["tls", "certificate"], ["tls", "key"], ["tls", "clientCA"]] {
            volumeFiles.check((config.path(key) as? String) ?? "\(key) missing", in: container, pod: pod, named: key.joined(separator: "."))
        }
        if ServerConfiguration.keys["store.kind"] != nil {
            // Once the parser knows the replicated mode's keys, it must accept this file as it is.
            var parsed = ServerConfiguration()
            try parsed.apply(yaml: embedded, source: "replicated/configmap.yaml")
        }
    }

    /// The three-node systemd setup: one etcd cluster that every node's env
    /// file describes alike, and three fuseboxd replicas with their own ids
    /// and addresses on it, using only variables the server documents.
    func testReplicatedSystemdEnvironmentFiles() throws {
        let variables = try documentedVariables()
        let nodes = [1, 2, 3]
        let etcd = try nodes.map { try environmentFile(try deployFile("systemd/replicated/etcd-node\($0).env")) }
        let fuseboxd = try nodes.map { try environmentFile(try deployFile("systemd/replicated/fuseboxd-node\($0).env")) }

        let names = etcd.compactMap { $0["ETCD_NAME"] }
        XCTAssertEqual(Set(names).count, 3, "one member name per node")
        XCTAssertEqual(Set(etcd.compactMap { $0["ETCD_INITIAL_CLUSTER"] }).count, 1, "every node names the same cluster")
        XCTAssertEqual(Set(etcd.compactMap { $0["ETCD_INITIAL_CLUSTER_TOKEN"] }).count, 1)
        let cluster = etcd.compactMap { member in
            member["ETCD_NAME"].flatMap { name in member["ETCD_INITIAL_ADVERTISE_PEER_URLS"].map { "\(name)=\($0)" } }
        }.joined(separator: ",")
        XCTAssertEqual(etcd.first?["ETCD_INITIAL_CLUSTER"], cluster, "the initial cluster is the members' own peer URLs")
        for member in etcd {
            XCTAssertEqual(member["ETCD_CLIENT_CERT_AUTH"], "true")
            XCTAssertEqual(member["ETCD_PEER_CLIENT_CERT_AUTH"], "true")
            for key in ["ETCD_TRUSTED_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE", "ETCD_DATA_DIR"] {
                XCTAssertTrue(member[key]?.hasPrefix("/") ?? false, "\(key) is an absolute path")
            }
            let listen = Set((member["ETCD_LISTEN_CLIENT_URLS"] ?? "").split(separator: ",").map(String.init))
            XCTAssertTrue(listen.contains(member["ETCD_ADVERTISE_CLIENT_URLS"] ?? "-"), "a member listens where it says clients reach it")
        }
        let clientURLs = etcd.compactMap { $0["ETCD_ADVERTISE_CLIENT_URLS"] }.joined(separator: ",")

        XCTAssertEqual(Set(fuseboxd.compactMap { $0["FUSEBOX_REPLICA_ID"] }).count, 3, "one replica id per node")
        XCTAssertEqual(Set(fuseboxd.compactMap { $0["FUSEBOX_ADVERTISE"] }).count, 3, "one address per node")
        for (replica, member) in zip(fuseboxd, etcd) {
            XCTAssertEqual(replica["FUSEBOX_STORE_KIND"], "etcd")
            XCTAssertEqual(replica["FUSEBOX_ETCD_ENDPOINTS"], clientURLs, "each replica knows every member")
            XCTAssertEqual(replica["FUSEBOX_ADVERTISE"]?.hasSuffix(":7443"), true)
            let host = (member["ETCD_ADVERTISE_CLIENT_URLS"] ?? "").dropFirst("https://".count).prefix { $0 != ":" }
            XCTAssertEqual(replica["FUSEBOX_ADVERTISE"], "\(host):7443", "the replica and the member of a node share its address")
            for key in ["FUSEBOX_ETCD_CA", "FUSEBOX_ETCD_CERT", "FUSEBOX_ETCD_KEY", "FUSEBOX_PEER_CERT", "FUSEBOX_PEER_KEY"] {
                XCTAssertNotNil(replica[key], key)
            }
            for name in replica.keys {
                XCTAssertTrue(variables.all.contains(name), "\(name) is documented nowhere")
                if !variables.server.contains(name) {
                    XCTAssertTrue(variables.replication.contains(name), "\(name) is not in docs/REPLICATION.md")
                }
            }
        }
        let unit = try deployFile("systemd/replicated/fuseboxd.service")
        XCTAssertTrue(unit.contains("\nEnvironmentFile=/etc/fusebox/fuseboxd.env\n"), "the replica's env file is required")
        XCTAssertTrue(try deployFile("systemd/replicated/etcd.service").contains("\nEnvironmentFile=/etc/etcd/etcd.env\n"))
        // The replicated unit keeps every hardening line of the single-server unit.
        let single = try deployFile("systemd/fuseboxd.service").split(separator: "\n")
        let hardening = single.drop { !$0.hasPrefix("DynamicUser=") }.prefix { !$0.hasPrefix("[Install]") }.filter { !$0.isEmpty }
        XCTAssertGreaterThan(hardening.count, 15)
        let lines = Set(unit.split(separator: "\n"))
        for line in hardening {
            XCTAssertTrue(lines.contains(line), "replicated/fuseboxd.service lacks \(line)")
        }
        let etcdLines = Set(try deployFile("systemd/replicated/etcd.service").split(separator: "\n"))
        for line in hardening where !line.hasPrefix("User=") && !line.hasPrefix("Group=") && !line.hasPrefix("StateDirectory=") && !line.hasPrefix("ConfigurationDirectory=") {
            XCTAssertTrue(etcdLines.contains(line), "etcd.service lacks \(line)")
        }
    }

    /// `systemd-analyze verify` accepts the replicated units (ExecStart pointing
    /// at the built fuseboxd, and at etcd where it is installed).
    func testReplicatedSystemdUnitsVerify() throws {
        guard (try? runProcess(["systemd-analyze", "--version"], timeout: 10))?.status == 0 else {
            throw DeployCheckFailure("systemd-analyze is not installed: scripts/install-deps installs systemd")
        }
        // verify checks that ExecStart's program exists; without etcd here, a stand-in that does.
        let etcdPath = (try? runProcess(["sh", "-c", "command -v etcd"], timeout: 10))
            .flatMap { $0.status == 0 ? $0.output.trimmingCharacters(in: .whitespacesAndNewlines) : nil } ?? "/usr/bin/env"
        let units = [
            ("fuseboxd.service", try deployFile("systemd/replicated/fuseboxd.service").replacingOccurrences(of: "/usr/local/bin/fuseboxd", with: fuseboxd)),
            ("etcd.service", try deployFile("systemd/replicated/etcd.service").replacingOccurrences(of: "/usr/local/bin/etcd", with: etcdPath)),
        ]
        for (name, text) in units {
            let path = work + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try runProcess(["systemd-analyze", "verify", path], timeout: 60)
            XCTAssertEqual(result.status, 0, result.output)
            XCTAssertFalse(result.output.contains("\(name):"), "warnings about \(name): \(result.output)")
        }
    }

    /// Every YAML document of a multi-document file, each a mapping.
    private func yamlDocuments(_ text: String, source: String) throws -> [[String: Any]] {
        var sequence = try Yams.load_all(yaml: text)
        var documents: [[String: Any]] = []
        while let document = sequence.next() {
            documents.append(try XCTUnwrap(document as? [String: Any], "\(source): a document that is not a mapping"))
        }
        if let error = sequence.error { throw error }
        return documents
    }

    /// The variables the server documents: `replication` in docs/REPLICATION.md,
    /// `server` in docs/SERVER.md, `all` those and the container entrypoint's;
    /// and the YAML keys of docs/REPLICATION.md's configuration table.
    private func documentedVariables() throws -> (replication: Set<String>, server: Set<String>, all: Set<String>, replicationKeys: Set<String>) {
        func document(_ path: String) throws -> String {
            try String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8)
        }
        func variables(_ text: String) -> Set<String> {
            Set(text.split(separator: "`").map(String.init).filter { quoted in
                quoted.hasPrefix("FUSEBOX_") && quoted.allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" }
            })
        }
        let replicationText = try document("docs/REPLICATION.md")
        let replication = variables(replicationText)
        let server = variables(try document("docs/SERVER.md"))
        let entrypoint = Set(try document("deploy/docker/entrypoint.sh").split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("#   FUSEBOX") else { return nil }
            return line.dropFirst(4).split(separator: " ").first.map(String.init)
        })
        XCTAssertTrue(replication.isSuperset(of: ["FUSEBOX_STORE_KIND", "FUSEBOX_ETCD_ENDPOINTS", "FUSEBOX_REPLICA_ID", "FUSEBOX_ADVERTISE"]), "\(replication)")
        XCTAssertTrue(entrypoint.isSuperset(of: ["FUSEBOX_CONFIG", "FUSEBOX_CERTS", "FUSEBOX_DATA_DIR"]), "\(entrypoint)")
        let keys = Set(replicationText.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("| `") else { return nil }
            let key = line.dropFirst(3).prefix { $0 != "`" }
            return key.contains("/") ? nil : String(key)
        })
        return (replication, server, replication.union(server).union(entrypoint), keys)
    }

    /// A container's `env` as name → value; names set from the downward API map to "".
    private func environment(_ container: [String: Any]) throws -> [String: String] {
        var env: [String: String] = [:]
        for variable in (container["env"] as? [[String: Any]]) ?? [] {
            let name = try XCTUnwrap(variable["name"] as? String)
            XCTAssertNil(env[name], "\(name) is set twice")
            env[name] = (variable["value"] as? String) ?? ""
        }
        return env
    }

    /// POD_NAME and POD_NAMESPACE come from the pod itself, before anything uses them.
    private func checkDownwardAPI(_ container: [String: Any]) throws {
        let env = (container["env"] as? [[String: Any]]) ?? []
        let fields = Dictionary(env.compactMap { variable in
            (variable["name"] as? String).map { ($0, variable.path("valueFrom", "fieldRef", "fieldPath") as? String) }
        }, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(fields["POD_NAME"], "metadata.name")
        XCTAssertEqual(fields["POD_NAMESPACE"], "metadata.namespace")
        let order = env.compactMap { $0["name"] as? String }
        for (index, variable) in env.enumerated() {
            guard let value = variable["value"] as? String else { continue }
            for reference in ["POD_NAME", "POD_NAMESPACE"] where value.contains("$(\(reference))") {
                XCTAssertLessThan(order.firstIndex(of: reference) ?? Int.max, index, "\(reference) is defined after its use")
            }
        }
    }

    /// No two pods of the workload on one node.
    private func checkAntiAffinity(_ pod: [String: Any], selector: [String: String]) throws {
        let terms = try XCTUnwrap(pod.path("spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution") as? [[String: Any]])
        XCTAssertTrue(terms.contains { term in
            term["topologyKey"] as? String == "kubernetes.io/hostname" && term.path("labelSelector", "matchLabels") as? [String: String] == selector
        }, "\(selector): pods are spread across nodes")
    }

    /// Leaf keys of a configuration mapping, dotted (`store.etcd.prefix`).
    private func leafKeys(_ mapping: [String: Any], prefix: String = "") -> [String] {
        mapping.flatMap { key, value -> [String] in
            let path = prefix.isEmpty ? key : prefix + "." + key
            return (value as? [String: Any]).map { leafKeys($0, prefix: path) } ?? [path]
        }
    }

    /// The assignments of a systemd EnvironmentFile.
    private func environmentFile(_ text: String) throws -> [String: String] {
        var assignments: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            XCTAssertEqual(parts.count, 2, "not an assignment: \(line)")
            XCTAssertNil(assignments[parts[0]], "\(parts[0]) is set twice")
            assignments[parts[0]] = parts.count == 2 ? parts[1] : ""
        }
        XCTAssertFalse(assignments.isEmpty)
        return assignments
    }
}

extension [String: Any] {
    /// The value at a path of nested mappings.
    fileprivate func path(_ keys: String...) -> Any? { path(keys) }

    fileprivate func path(_ keys: [String]) -> Any? {
        guard let first = keys.first else { return self }
        let value = self[first]
        return keys.count == 1 ? value : (value as? [String: Any])?.path(Array(keys.dropFirst()))
    }
}

/// The Secrets and ConfigMaps of the replicated manifests, and the files they hold.
private struct Files {
    var secrets: [String: Set<String>]
    var configMaps: [String: Set<String>]

    /// `path` is on a volume the container mounts; for a Secret or ConfigMap, one of its keys.
    func check(_ path: String, in container: [String: Any], pod: [String: Any], named name: String, file: StaticString = #filePath, line: UInt = #line) {
        let mounts = (container["volumeMounts"] as? [[String: Any]]) ?? []
        guard let mount = mounts.first(where: { ($0["mountPath"] as? String).map { path.hasPrefix($0 + "/") } ?? false }),
            let mountPath = mount["mountPath"] as? String
        else {
            return XCTFail("\(name): \(path) is on no volume the container mounts", file: file, line: line)
        }
        let key = String(path.dropFirst(mountPath.count + 1))
        let volumes = (pod.path("spec", "volumes") as? [[String: Any]]) ?? []
        guard let volume = volumes.first(where: { $0["name"] as? String == mount["name"] as? String }) else {
            return XCTFail("\(name): volume \(mount["name"] ?? "?") is not declared", file: file, line: line)
        }
        if let secret = volume.path("secret", "secretName") as? String {
            XCTAssertTrue(secrets[secret]?.contains(key) ?? false, "\(name): Secret \(secret) has no \(key)", file: file, line: line)
        } else if let configMap = volume.path("configMap", "name") as? String {
            XCTAssertTrue(configMaps[configMap]?.contains(key) ?? false, "\(name): ConfigMap \(configMap) has no \(key)", file: file, line: line)
        }
    }
}

/// A tool the deploy checks need is missing: a failure, not a skip.
struct DeployCheckFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
