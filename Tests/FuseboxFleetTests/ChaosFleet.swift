import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxTesting
import FuseboxWire
import NIOCore
import NIOPosix
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The chaos suite's fleet: one fuseboxd (SQLite, real TLS, 127.0.0.1), the
/// demo's upstream, five `fusebox-example` services calling it through the
/// guard `chaos-upstream` every 20 ms, and an admin client in this process
/// that writes policies and overrides through the API.
///
/// Every service times each guarded call against the policy's attempt
/// timeout and prints an `over-attempt` line for a call that took longer
/// (plus `graceMs` for the machine's scheduling): that count is the figure
/// "calls blocked by the outage".
final class ChaosFleet: @unchecked Sendable {
    static let guardName = "chaos-upstream"
    static let serviceIDs = (1...5).map { "chaos-\($0)" }
    /// Seconds: keepalive PING after 1 s of silence, 1 s for its answer, local mode 1 s later.
    static let keepalive = 1.0
    static let staleness = 1.0
    /// The chaos policy's attempt timeout, and how much later than it a call
    /// may end before it counts as blocked. On 2 cores shared at load average
    /// 10-12, calls that nothing held took up to 445 ms; a call held by the
    /// outage took 1 s or more (a permit timeout, a TLS handshake).
    static let attemptMs: Int64 = 500
    static let graceMs: Int64 = 250

    let directory: String
    let dataDirectory: String
    var server: FuseboxdProcess
    let upstream: LaunchedProcess
    let upstreamPort: Int
    private(set) var services: [String: LaunchedProcess] = [:]
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let admin: RPCClient

    /// Starts fuseboxd on `dataDirectory` (default: a fresh one under `directory`) and the upstream.
    init(directory: String, dataDirectory: String? = nil) throws {
        self.directory = directory
        self.dataDirectory = dataDirectory ?? directory + "/data"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        server = try FuseboxdProcess(dataDirectory: self.dataDirectory)
        upstream = try LaunchedProcess(builtProduct("fusebox-example"), ["upstream", "--port", "0"])
        guard let line = upstream.waitForLine(timeout: 20, { $0.hasPrefix("upstream listening on") }),
            let port = Int(line.split(separator: ":").last ?? "")
        else {
            server.stop(SIGKILL)
            throw FleetHarnessFailure("upstream did not start: \(upstream.text) \(upstream.stderrTail())")
        }
        upstreamPort = port
        admin = try RPCClient(
            configuration: RPCClientConfiguration(
                host: "127.0.0.1", port: server.port,
                tls: .client(
                    trustRootsPath: try TestCertificates.path("ca.pem"),
                    certificateChainPath: try TestCertificates.path("admin.pem"),
                    privateKeyPath: try TestCertificates.path("admin.key"))), group: group)
    }

    /// Kills everything this fleet started (SIGCONT first: a stopped process cannot die of SIGKILL until resumed).
    func tearDown() async {
        kill(server.process.processIdentifier, SIGCONT)
        for s in services.values { s.stop(SIGKILL) }
        upstream.stop(SIGKILL)
        server.stop(SIGKILL)
        await admin.close()
        try? await group.shutdownGracefully()
    }

    // MARK: Set-up

    /// Stores the chaos policy with the CLI (`fusebox policies apply`).
    func applyChaosPolicy() throws {
        let file = directory + "/chaos-policy.yaml"
        try chaosPolicy.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try runProcess(
            [
                builtProduct("fusebox").path, "policies", "apply", "-f", file, "--reason", "chaos suite",
                "--server", "127.0.0.1:\(server.port)", "--ca", try TestCertificates.path("ca.pem"),
                "--cert", try TestCertificates.path("admin.pem"), "--key", try TestCertificates.path("admin.key"),
            ], timeout: 30)
        guard r.status == 0 else { throw ChaosFailure("fusebox policies apply failed (\(r.status)): \(r.output)") }
    }

    /// Starts the five services and waits (bounded) until each has started
    /// from the server and made calls in fleet mode.
    func startServices() throws {
        for id in Self.serviceIDs {
            services[id] = try LaunchedProcess(
                builtProduct("fusebox-example"),
                [
                    "service", "--upstream", "127.0.0.1:\(upstreamPort)", "--server", "127.0.0.1:\(server.port)",
                    "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("reporter.pem"),
                    "--key", try TestCertificates.path("reporter.key"), "--guard-name", Self.guardName, "--policy",
                    "chaos",
                    "--client-id", id, "--cache-dir", "\(directory)/cache-\(id)", "--interval-ms", "20", "--status-ms",
                    "100",
                    "--staleness-seconds", "\(Self.staleness)", "--startup-timeout-seconds", "5",
                    "--keepalive-seconds", "\(Self.keepalive)", "--keepalive-timeout-seconds", "\(Self.keepalive)",
                    "--over-attempt-grace-ms", "\(Self.graceMs)",
                ])
        }
        for id in Self.serviceIDs {
            guard let started = services[id]?.waitForLine(timeout: 30, { $0.contains("\"event\":\"started\"") }),
                started.contains("\"source\":\"server\""), started.contains("\"policy\":\"chaos\"")
            else {
                throw ChaosFailure(
                    "\(id) did not start from the server: \(services[id]?.text ?? "") \(services[id]?.stderrTail() ?? "")"
                )
            }
        }
        guard eventually(20, { Self.serviceIDs.allSatisfy { (self.calls($0)) > 10 && self.mode($0) == "fleet" } })
        else {
            throw ChaosFailure(
                "the services are not calling in fleet mode: \(Self.serviceIDs.map { lastStatus($0) ?? [:] })")
        }
    }

    // MARK: What the services printed

    func events(_ id: String) -> [[String: Any]] {
        (services[id]?.lines ?? []).compactMap { line in
            guard line.hasPrefix("{") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    func lastStatus(_ id: String) -> [String: Any]? {
        events(id).last { $0["event"] as? String == "status" }
    }

    /// Guarded calls the service has made (from its last status line).
    func calls(_ id: String) -> Int { lastStatus(id)?["calls"] as? Int ?? 0 }

    func mode(_ id: String) -> String? { lastStatus(id)?["mode"] as? String }

    /// Every call a service timed past its attempt timeout (+ grace): (service, ms, mode).
    func blockedCalls() -> [(service: String, ms: Int, mode: String)] {
        Self.serviceIDs.flatMap { id in
            events(id).compactMap { e -> (String, Int, String)? in
                guard e["event"] as? String == "over-attempt", let ms = e["ms"] as? Int else { return nil }
                return (id, ms, e["mode"] as? String ?? "?")
            }
        }
    }

    /// The longest guarded call any service has timed so far, in ms.
    func longestCallMs() -> Int { Self.serviceIDs.compactMap { lastStatus($0)?["maxCallMs"] as? Int }.max() ?? 0 }

    /// Guarded calls of all services together.
    func totalCalls() -> Int { Self.serviceIDs.reduce(0) { $0 + calls($1) } }

    /// When (wall ms) each service first printed a transition to `state` at
    /// `generation` or later; nil for a service that has not.
    func firstSeen(_ state: String, generation: UInt64) -> [String: Int64?] {
        Dictionary(
            uniqueKeysWithValues: Self.serviceIDs.map { id in
                let at = events(id).first { e in
                    e["event"] as? String == "state" && e["to"] as? String == state
                        && UInt64(e["generation"] as? Int ?? 0) >= generation
                }.flatMap { ($0["atMs"] as? NSNumber)?.int64Value }
                return (id, at)
            })
    }

    /// Waits (bounded) until every service saw `state` at `generation` or
    /// later; returns the seconds from `since` to the last of them, or nil.
    func convergence(on state: String, generation: UInt64, since: Date, timeout: TimeInterval) -> Double? {
        guard eventually(timeout, { firstSeen(state, generation: generation).values.allSatisfy { $0 != nil } }) else {
            return nil
        }
        let last = firstSeen(state, generation: generation).values.compactMap { $0 }.max() ?? 0
        return max(0, Double(last) / 1000 - since.timeIntervalSince1970)
    }

    // MARK: Admin API (this process, RPC)

    private var breakerRef: Fusebox_V1_BreakerRef {
        var ref = Fusebox_V1_BreakerRef()
        ref.registry = "default"
        ref.name = Self.guardName
        return ref
    }

    /// ForceOpen of the chaos breaker; the acknowledged generation.
    func forceOpen(_ reason: String, timeout: Duration = .seconds(10)) async throws(RPCError) -> UInt64 {
        var request = Fusebox_V1_OverrideRequest()
        request.breaker = breakerRef
        request.policy = "chaos"
        request.reason = reason
        let response = try await admin.unary(
            "fusebox.v1.AdminService", "ForceOpen", request, as: Fusebox_V1_AdminActionResponse.self,
            options: RPCCallOptions(timeout: timeout, waitForReady: true))
        return response.after?.generation ?? 0
    }

    /// Reset of the chaos breaker (to CLOSED, overrides cleared); the acknowledged generation.
    func reset(_ reason: String, timeout: Duration = .seconds(10)) async throws(RPCError) -> UInt64 {
        var request = Fusebox_V1_ResetRequest()
        request.breaker = breakerRef
        request.reason = reason
        let response = try await admin.unary(
            "fusebox.v1.AdminService", "Reset", request, as: Fusebox_V1_AdminActionResponse.self,
            options: RPCCallOptions(timeout: timeout, waitForReady: true))
        return response.after?.generation ?? 0
    }

    /// The server's view of the chaos breaker: (state, generation).
    func serverBreaker() async throws(RPCError) -> (state: Fusebox_V1_BreakerState, generation: UInt64) {
        var request = Fusebox_V1_GetBreakerRequest()
        request.breaker = breakerRef
        let detail = try await admin.unary(
            "fusebox.v1.BreakerService", "GetBreaker", request, as: Fusebox_V1_BreakerDetail.self,
            options: RPCCallOptions(timeout: .seconds(10), waitForReady: true))
        return (detail.status?.state ?? .unspecified, detail.status?.generation ?? 0)
    }

    /// Stores policy `name` (the `api` preset renamed, `padding` bytes of description) in `registry`.
    func putPolicy(
        _ name: String, registry: String, padding: Int = 0, timeout: Duration = .seconds(2)
    ) async throws(RPCError) {
        var policy = Presets.api
        policy.name = name
        if padding > 0 { policy.description = String(repeating: "c", count: padding) }
        var request = Fusebox_V1_PutPolicyRequest()
        request.registry = registry
        request.policy = PolicyMapping.wire(policy)
        _ = try await admin.unary(
            "fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self,
            options: RPCCallOptions(timeout: timeout))
    }

    /// The names of the policies `registry` holds.
    func policyNames(_ registry: String) async throws(RPCError) -> Set<String> {
        var request = Fusebox_V1_GetRegistryRequest()
        request.registry = registry
        let snapshot = try await admin.unary(
            "fusebox.v1.RegistryService", "GetRegistry", request, as: Fusebox_V1_RegistrySnapshot.self,
            options: RPCCallOptions(timeout: .seconds(10), waitForReady: true))
        return Set(snapshot.policies.compactMap { $0.policy?.name })
    }
}

struct ChaosFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The guard's policy: trips after 3 consecutive failures, 1 s open; in
/// HALF_OPEN one probe at a time and 1,000 must pass, so HALF_OPEN lasts long
/// enough to stop fuseboxd in it; attempt timeout 500 ms, no retry.
let chaosPolicy = """
    name: chaos
    description: Chaos suite. Trips after 3 consecutive failures; 1 s open; one probe at a time, 1000 must pass; 500 ms per attempt.
    circuitBreaker:
      consecutiveFailuresThreshold: 3
      minimumCalls: 1
      openDuration:
        baseMs: 1000
      halfOpen:
        permittedCalls: 1
        successThreshold: 1000
        maxWaitMs: 2000
    timeout:
      attemptMs: \(ChaosFleet.attemptMs)
    """

/// `CHAOS name: figures` on standard output, one line per scenario.
func chaosFigure(_ scenario: String, _ figures: String) {
    print("CHAOS \(scenario): \(figures)")
    fflush(nil)
}
