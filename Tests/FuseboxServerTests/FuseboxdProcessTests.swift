import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

extension FuseboxdProcess {
    func client(_ identity: String, group: any EventLoopGroup) throws -> RPCClient {
        try RPCClient(configuration: RPCClientConfiguration(
            host: "127.0.0.1", port: port,
            tls: .client(trustRootsPath: try TestCertificates.path("ca.pem"), certificateChainPath: try TestCertificates.path("\(identity).pem"),
                         privateKeyPath: try TestCertificates.path("\(identity).key"))), group: group)
    }
}

final class FuseboxdProcessTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var directory: String!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fuseboxd-\(UUID().uuidString)").path
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: directory)
        try await group.shutdownGracefully()
    }

    /// The gRPC listener's backlog is 4096 by default (was 256) and
    /// `limits.listenBacklog` sets it; the kernel caps it at somaxconn. For a
    /// listening socket `ss` shows the backlog as Send-Q.
    func testTheListenBacklogIsWhatTheConfigSays() throws {
        let somaxconn = Int((try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 4_096
        func backlog(_ server: FuseboxdProcess) throws -> Int? {
            let listing = try runProcess(["ss", "-ltnH", "sport = :\(server.port)"], timeout: 10)
            XCTAssertEqual(listing.status, 0, listing.output)
            // "LISTEN 0 4096 127.0.0.1:41234 0.0.0.0:*": state, Recv-Q, Send-Q (the backlog), …
            return listing.output.split(separator: "\n").first.flatMap { line in
                let fields = line.split(separator: " ")
                return fields.count > 2 ? Int(fields[2]) : nil
            }
        }
        let byDefault = try FuseboxdProcess(dataDirectory: directory + "/default")
        XCTAssertEqual(try backlog(byDefault), min(4_096, somaxconn))
        byDefault.stop(SIGTERM)

        let config = directory + "/backlog.yaml"
        try "limits:\n  listenBacklog: 1234\n".write(toFile: config, atomically: true, encoding: .utf8)
        let configured = try FuseboxdProcess(dataDirectory: directory + "/configured", extra: ["--config", config])
        XCTAssertEqual(try backlog(configured), min(1_234, somaxconn))
        configured.stop(SIGTERM)
    }

    func testSIGTERMExitsZeroWithinFiveSecondsAndEndsWatches() async throws {
        let server = try FuseboxdProcess(dataDirectory: directory)
        let reader = try server.client("reader", group: group)
        let ended = NIOLockedValueBox<String?>(nil)
        let watch = Task {
            do throws(RPCError) {
                try await reader.serverStreaming("fusebox.v1.BreakerService", "WatchBreakers", Fusebox_V1_WatchBreakersRequest(), as: Fusebox_V1_BreakerEvent.self) { _ in }
                ended.withLockedValue { $0 = "OK" }
            } catch {
                ended.withLockedValue { $0 = "\(error.code)" }
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        let (status, seconds) = server.stop(SIGTERM)
        XCTAssertEqual(status, 0, "exit code")
        XCTAssertLessThan(seconds, 5, "graceful shutdown took \(seconds) s")
        _ = await watch.result
        XCTAssertEqual(ended.withLockedValue { $0 }, "OK", "the watch stream was ended by the server, with status OK")
        await reader.close()
    }

    /// kill -9 while a client streams 500 policy writes: every acknowledged
    /// write is there after a restart; generations go on upward; overrides still apply.
    func testKillNineKeepsEveryAcknowledgedWrite() async throws {
        var server = try FuseboxdProcess(dataDirectory: directory)
        var admin = try server.client("admin", group: group)
        var override = Fusebox_V1_OverrideRequest()
        override.breaker = ref("ledger")
        override.policy = "api"
        override.reason = "before the crash"
        let forced = try await admin.unary("fusebox.v1.AdminService", "ForceOpen", override, as: Fusebox_V1_AdminActionResponse.self)
        let generationBefore = forced.after?.generation ?? 0
        let acknowledged = NIOLockedValueBox<[String]>([])
        let writer = Task { [admin] in
            for i in 0..<500 {
                var request = Fusebox_V1_PutPolicyRequest()
                request.registry = "crash"
                var policy = Presets.api
                policy.name = "p\(i)"
                request.policy = PolicyMapping.wire(policy)
                do throws(RPCError) {
                    _ = try await admin.unary("fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self)
                    acknowledged.withLockedValue { $0.append(policy.name) }
                } catch {
                    return
                }
            }
        }
        while acknowledged.withLockedValue({ $0.count }) < 150 { try await Task.sleep(for: .milliseconds(5)) }
        _ = server.stop(SIGKILL)
        _ = await writer.result
        await admin.close()
        let acked = acknowledged.withLockedValue { $0 }
        XCTAssertGreaterThanOrEqual(acked.count, 150)

        server = try FuseboxdProcess(dataDirectory: directory)
        admin = try server.client("admin", group: group)
        var get = Fusebox_V1_GetRegistryRequest()
        get.registry = "crash"
        let snapshot = try await admin.unary("fusebox.v1.RegistryService", "GetRegistry", get, as: Fusebox_V1_RegistrySnapshot.self)
        let stored = Set(snapshot.policies.compactMap { $0.policy?.name })
        XCTAssertTrue(Set(acked).isSubset(of: stored), "lost: \(Set(acked).subtracting(stored).sorted())")
        var detail = Fusebox_V1_GetBreakerRequest()
        detail.breaker = ref("ledger")
        let ledger = try await admin.unary("fusebox.v1.BreakerService", "GetBreaker", detail, as: Fusebox_V1_BreakerDetail.self)
        XCTAssertEqual(ledger.status?.state, .forcedOpen, "the override still applies")
        override.reason = "after the crash"
        let reset = try await admin.unary("fusebox.v1.AdminService", "ForceClose", override, as: Fusebox_V1_AdminActionResponse.self)
        XCTAssertGreaterThan(reset.after?.generation ?? 0, generationBefore, "generations continue upward")
        await admin.close()
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// An independent client: Python grpcio with stubs generated from Protos/.
    func testPythonGrpcioClientFetchesWatchesAndReports() async throws {
        let server = try FuseboxdProcess(dataDirectory: directory)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("fuseboxd-py-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let result = try runProcess([
            "python3", "Tests/Interop/fuseboxd_client.py", "--port", "\(server.port)",
            "--protos", repositoryRoot.appendingPathComponent("Protos").path, "--work", work.path,
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reporter.pem"),
            "--key", try TestCertificates.path("reporter.key"),
        ], timeout: 60)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("policies ai,api,critical,database,external"), "presets seeded on first start: \(result.output)")
        XCTAssertTrue(result.output.contains("accepted 1 state BREAKER_STATE_OPEN"), result.output)
        XCTAssertTrue(result.output.contains("transition stripe BREAKER_STATE_OPEN 1"), result.output)
        XCTAssertTrue(result.output.hasSuffix("ok\n"), result.output)
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// An independent grpcio client, written from Protos/ and docs/ alone,
    /// checks what the contract promises: field paths, error details, audit
    /// entries, reads, paging, duplicates, below-quorum trips and cluster status.
    func testTheContractAsAnIndependentClientSeesIt() async throws {
        let server = try FuseboxdProcess(dataDirectory: directory)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("fuseboxd-contract-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let result = try runProcess([
            "python3", "Tests/Interop/contract_client.py", "--port", "\(server.port)",
            "--protos", repositoryRoot.appendingPathComponent("Protos").path, "--work", work.path,
            "--certs", URL(fileURLWithPath: try TestCertificates.path("ca.pem")).deletingLastPathComponent().path,
        ], timeout: 120)
        print(result.output)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertFalse(result.output.contains("FAIL"), result.output)
        XCTAssertEqual(result.output.components(separatedBy: "\nok ").count + (result.output.hasPrefix("ok ") ? 1 : 0) - 1, 9, result.output)
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// A WatchBreakers client that stops reading while hundreds of
    /// transitions happen is neither reset nor skipped silently: once it reads
    /// again it gets a fresh snapshot and the stream goes on.
    func testAWatcherThatStopsReadingGetsAFreshSnapshotWhenItReadsAgain() async throws {
        let server = try FuseboxdProcess(dataDirectory: directory)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("fuseboxd-slow-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let result = try runProcess([
            "python3", "Tests/Interop/h2_misbehave.py", "slow-watcher", "--port", "\(server.port)",
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reader.pem"),
            "--key", try TestCertificates.path("reader.key"), "--admin-cert", try TestCertificates.path("admin.pem"),
            "--admin-key", try TestCertificates.path("admin.key"),
            "--protos", repositoryRoot.appendingPathComponent("Protos").path, "--work", work.path,
        ], timeout: 90)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("first [\'snapshot\']") || result.output.contains("first ['snapshot']"), result.output)
        XCTAssertFalse(result.output.contains("reset 1"), "the stream was reset: \(result.output)")
        let line = result.output.split(separator: "\n").first { $0.hasPrefix("snapshots ") } ?? ""
        let numbers = line.split(separator: " ").compactMap { Int($0) }
        XCTAssertEqual(numbers.first, 2, "a fresh snapshot after falling behind: \(result.output)")
        XCTAssertLessThan(numbers.last ?? 400, 400, "it fell behind, so not every transition was sent: \(result.output)")
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// `fusebox_breaker_state` exists for a breaker from its creation, and
    /// for every restored breaker from startup, before any transition in the
    /// new process; a shadow breaker's evaluated state is exported too.
    func testBreakerStateMetricsExistFromCreationAndStartup() async throws {
        var server = try FuseboxdProcess(dataDirectory: directory)
        let admin = try server.client("admin", group: group)
        var request = Fusebox_V1_OverrideRequest()
        request.breaker = ref("watched")
        request.policy = "api"
        request.reason = "tuning"
        _ = try await admin.unary("fusebox.v1.AdminService", "Shadow", request, as: Fusebox_V1_AdminActionResponse.self)
        let reporter = try server.client("reporter", group: group)
        _ = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "m", breaker: "created", policy: "api", generation: 0, success: 1), as: Fusebox_V1_ReportOutcomesResponse.self)
        var metrics = try metricsText(server)
        XCTAssertTrue(metrics.contains(#"fusebox_breaker_state{registry="default",breaker="created"} 0"#) || metrics.contains(#"fusebox_breaker_state{breaker="created",registry="default"} 0"#), metrics)
        XCTAssertTrue(metrics.contains("fusebox_breaker_evaluated_state"), metrics)
        await admin.close()
        await reporter.close()
        server.stop(SIGKILL)
        server = try FuseboxdProcess(dataDirectory: directory)
        metrics = try metricsText(server)
        for (breaker, state) in [("created", 0), ("watched", 6)] {
            XCTAssertTrue(
                metrics.contains(#"fusebox_breaker_state{registry="default",breaker="\#(breaker)"} \#(state)"#)
                    || metrics.contains(#"fusebox_breaker_state{breaker="\#(breaker)",registry="default"} \#(state)"#),
                "restored breaker \(breaker) has no state gauge after a restart: \(metrics)")
        }
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    private func metricsText(_ server: FuseboxdProcess) throws -> String {
        try runProcess(["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:\(server.metricsPort)/metrics').read().decode())"], timeout: 20).output
    }

    /// /metrics names the server's metrics once they have values; /healthz and /readyz answer.
    func testObservabilityEndpoints() async throws {
        let server = try FuseboxdProcess(dataDirectory: directory)
        let reporter = try server.client("reporter", group: group)
        _ = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "m", breaker: "metered", policy: "api", generation: 0, failure: 5), as: Fusebox_V1_ReportOutcomesResponse.self)
        try await Task.sleep(for: .milliseconds(1_200))  // the gauges refresh every second
        func get(_ path: String) throws -> ProcessResult {
            try runProcess(["python3", "-c", "import sys, urllib.request\ntry:\n r = urllib.request.urlopen('http://127.0.0.1:\(server.metricsPort)\(path)')\n print(r.status); print(r.read().decode())\nexcept urllib.error.HTTPError as e:\n print(e.code)"], timeout: 20)
        }
        let metrics = try get("/metrics").output
        for name in [
            "fusebox_breaker_state", "fusebox_breaker_transitions_total", "fusebox_reports_total", "fusebox_outcomes_total",
            "fusebox_connected_clients", "fusebox_watchers", "fusebox_rpc_duration_seconds", "fusebox_rpc_calls_total",
            "fusebox_store_duration_seconds",
        ] {
            XCTAssertTrue(metrics.contains(name), "\(name) missing from /metrics:\n\(metrics.prefix(2_000))")
        }
        XCTAssertTrue(metrics.contains("fusebox_breaker_state{registry=\"default\",breaker=\"metered\"} 1"), String(metrics.prefix(3_000)))
        // A call's own time is microseconds: its histogram has buckets from 10 µs (docs/SERVER.md).
        let report = "fusebox_rpc_duration_seconds_bucket{method=\"/fusebox.v1.BreakerService/ReportOutcomes\","
        for bound in ["0.00001", "0.00002", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.002", "0.005"] {
            XCTAssertTrue(metrics.contains(report + "le=\"\(bound)\"} "), "no \(bound) s bucket:\n\(metrics.prefix(3_000))")
        }
        XCTAssertTrue(try get("/healthz").output.hasPrefix("200"))
        XCTAssertTrue(try get("/readyz").output.hasPrefix("200"))
        await reporter.close()
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// Each limit a client can reach through the API is counted by its name in
    /// `fusebox_limit_rejections_total` (connections and watches are counted
    /// in RPCConnectionLimitsTests).
    func testEveryLimitReachedIsCountedByName() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/limits.yaml"
        try "limits:\n  maxRegistries: 2\n  maxBreakersPerRegistry: 2\n  maxPolicyBytes: 1024\n".write(toFile: config, atomically: true, encoding: .utf8)
        let server = try FuseboxdProcess(dataDirectory: directory + "/data", extra: ["--config", config])
        let admin = try server.client("admin", group: group)
        // A third breaker in `default`: refused in the answer.
        for name in ["l1", "l2", "l3"] {
            _ = try await admin.unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "limits", breaker: name, policy: "api", generation: 0, success: 1),
                as: Fusebox_V1_ReportOutcomesResponse.self)
        }
        func put(_ registry: String, _ policy: Policy) async -> RPCError? {
            var request = Fusebox_V1_PutPolicyRequest()
            request.registry = registry
            request.policy = PolicyMapping.wire(policy)
            do {
                _ = try await admin.unary("fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self)
                return nil
            } catch {
                return error
            }
        }
        var small = Policy(name: "small")
        small.timeout = TimeoutPolicy(attemptMs: 100)
        let secondRegistry = await put("r1", small)
        XCTAssertNil(secondRegistry, "a second registry is within the limit of 2")
        let thirdRegistry = await put("r2", small)
        XCTAssertEqual(thirdRegistry?.code, .resourceExhausted)
        var big = small
        big.description = String(repeating: "x", count: 2_000)
        let tooBig = await put("default", big)
        XCTAssertEqual(tooBig?.code, .invalidArgument)
        await admin.close()
        let metrics = try metricsText(server)
        for limit in ["breakers_per_registry", "registries", "policy_bytes"] {
            let line = metrics.split(whereSeparator: \.isNewline).first { $0.hasPrefix("fusebox_limit_rejections_total{limit=\"\(limit)\"}") }
            XCTAssertEqual(line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }, 1, "\(limit): \(line.map(String.init) ?? "no line")\n\(metrics.prefix(3_000))")
        }
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// SIGHUP (systemd's ExecReload) reloads the certificate files: a new
    /// connection sees the new server certificate.
    func testSIGHUPReloadsCertificates() async throws {
        let certs = directory + "-certs"
        try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: certs) }
        func install(_ name: String) throws {
            for (from, to) in [("\(name).pem", "server.pem"), ("\(name).key", "server.key")] {
                try? FileManager.default.removeItem(atPath: certs + "/" + to)
                try FileManager.default.copyItem(atPath: try TestCertificates.path(from), toPath: certs + "/" + to)
            }
        }
        try install("server")
        let server = try FuseboxdProcess(dataDirectory: directory, extra: ["--cert", certs + "/server.pem", "--key", certs + "/server.key"])
        func subject() throws -> String {
            try runProcess(["bash", "-c", "openssl s_client -connect 127.0.0.1:\(server.port) -CAfile '\(try TestCertificates.path("ca.pem"))' -cert '\(try TestCertificates.path("reader.pem"))' -key '\(try TestCertificates.path("reader.key"))' -alpn h2 </dev/null 2>/dev/null | grep '^subject='"], timeout: 20).output
        }
        let original = try subject()
        XCTAssertTrue(original.contains("CN = fuseboxd\n"), original)
        try install("rotated-server")
        kill(server.process.processIdentifier, SIGHUP)
        var rotated = false
        for _ in 0..<100 where !rotated {
            rotated = try subject().contains("fuseboxd-rotated")
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertTrue(rotated, "new connections use the reloaded certificate")
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    /// A standalone fuseboxd answers GetClusterStatus as the one replica,
    /// leading, on SQLite, under the id it was given, at its bound address.
    func testStandaloneServerAnswersClusterStatusAsTheLeadingReplica() async throws {
        let server = try FuseboxdProcess(dataDirectory: directory, extra: ["--replica-id", "fb-solo"])
        let reader = try server.client("reader", group: group)
        let status = try await reader.unary(
            "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(), as: Fusebox_V1_ClusterStatus.self)
        XCTAssertEqual(status.mode, "standalone")
        XCTAssertEqual(status.store, "sqlite")
        XCTAssertEqual(status.leaderId, "fb-solo")
        XCTAssertEqual(status.answeredBy, "fb-solo")
        XCTAssertEqual(status.replicas.map(\.id), ["fb-solo"])
        XCTAssertEqual(status.replicas.map(\.leader), [true])
        XCTAssertEqual(status.replicas.map(\.serving), [true])
        XCTAssertEqual(status.replicas.map(\.address), ["127.0.0.1:\(server.port)"])
        XCTAssertEqual(status.replicas.first?.version.isEmpty, false)
        XCTAssertEqual(status.etcdMembers.count, 0)
        await reader.close()
        XCTAssertEqual(server.stop(SIGTERM).0, 0)
    }

    func testBadConfigurationIsRefusedNamingTheKey() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).yaml")
        try "listen:\n  port: eighty\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fuseboxd").path
        let result = try runProcess([binary, "--config", file.path], timeout: 20)
        XCTAssertEqual(result.status, 78)
        XCTAssertTrue(result.output.contains(":2: listen.port (\"eighty\") must be a whole number from 0 to 65535"), result.output)
    }

    /// The replicated mode's flags override its environment variables, and
    /// `--store etcd` without endpoints is refused naming the key.
    func testReplicationFlagsOverrideTheEnvironmentAndEtcdNeedsEndpoints() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fuseboxd").path
        let missing = try runProcess([binary, "--store", "etcd", "--check-config"], timeout: 20, environment: ["FUSEBOX_ETCD_ENDPOINTS": ""])
        XCTAssertEqual(missing.status, 78, missing.output)
        XCTAssertTrue(missing.output.contains("store.etcd.endpoints is required when store.kind is etcd"), missing.output)
        let noEndpoints = try runProcess([binary, "--store", "etcd", "--check-config"], timeout: 20)
        XCTAssertEqual(noEndpoints.status, 78, noEndpoints.output)
        XCTAssertTrue(noEndpoints.output.contains("store.etcd.endpoints is required when store.kind is etcd"), noEndpoints.output)
        let ok = try runProcess(
            [binary, "--store", "etcd", "--etcd-endpoints", "https://flag-1:2379,flag-2:2379", "--replica-id", "from-flag", "--check-config"],
            timeout: 20,
            environment: ["FUSEBOX_ETCD_ENDPOINTS": "env:2379", "FUSEBOX_REPLICA_ID": "from-env", "FUSEBOX_ETCD_PREFIX": "/env", "FUSEBOX_STORE_KIND": "sqlite"])
        XCTAssertEqual(ok.status, 0, ok.output)
        XCTAssertTrue(ok.output.contains("store etcd https://flag-1:2379,flag-2:2379 prefix /env, replica from-flag"), ok.output)
        let badFlag = try runProcess([binary, "--etcd-endpoints", "https://a:2379/v3", "--check-config"], timeout: 20)
        XCTAssertEqual(badFlag.status, 78, badFlag.output)
        XCTAssertTrue(badFlag.output.contains(#"flag: store.etcd.endpoints item "https://a:2379/v3" must be"#), badFlag.output)
    }
}
