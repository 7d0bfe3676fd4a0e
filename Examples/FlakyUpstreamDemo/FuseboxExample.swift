import ArgumentParser
import Foundation
import FuseboxClient
import FuseboxCore
import Logging
import NIOHTTP1

/// The Fusebox demo: a flaky upstream, and a service that calls it through a
/// Fusebox guard and prints what its breaker does, one JSON object per line.
@main
struct FuseboxExample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fusebox-example",
        abstract: "A service guarding its calls to a flaky upstream with the Fusebox SDK.",
        discussion: """
            Start an upstream, then one or more services against it and a running fuseboxd:

              fusebox-example upstream --port 8081
              fusebox-example service --upstream 127.0.0.1:8081 --server 127.0.0.1:7443 \\
                --ca .fusebox/certs/ca.pem --cert .fusebox/certs/reporter.pem --key .fusebox/certs/reporter.key
              # a replicated fuseboxd: --server fb-1:7443,fb-2:7443,fb-3:7443 (fails over between them)
              curl -X POST 127.0.0.1:8081/fail      # every service's breaker opens together
              curl -X POST 127.0.0.1:8081/recover   # and closes together after the probes pass
            """,
        subcommands: [Upstream.self, Service.self, Patterns.self])
}

struct Upstream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the flaky HTTP upstream (GET /call, POST /fail, POST /recover, GET /stats).")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on; 0 picks a free one (printed).") var port = 8081
    @Flag(help: "Start failing.") var failing = false
    @Option(help: "Milliseconds every /call takes.") var latencyMs: Int64 = 0

    func run() async throws {
        try await FlakyUpstream(failing: failing, latencyMs: latencyMs).run(host: host, port: port)
    }
}

/// An upstream failure the guard can classify: 5xx is a server error (retried
/// by policies that retry server errors), a refused connection a network error.
struct UpstreamError: GuardClassifiedError, CustomStringConvertible {
    var status: Int?
    var message: String
    var retryCondition: RetryCondition? { status == nil ? .networkError : .serverError }
    var errorCode: String? { status.map { "http.\($0)" } ?? "network" }
    var description: String { message }
}

struct Service: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Call the upstream through a Fusebox guard and print breaker events as JSON lines.")

    @Option(help: "The upstream, HOST:PORT.") var upstream = "127.0.0.1:8081"
    @Option(help: "fuseboxd, HOST:PORT, or several comma-separated (HOST:PORT,HOST:PORT) to fail over between.")
    var server = "127.0.0.1:7443"
    @Option(help: "CA certificate that signed fuseboxd's certificate.") var ca = ".fusebox/certs/ca.pem"
    @Option(help: "Client certificate (role reporter).") var cert = ".fusebox/certs/reporter.pem"
    @Option(help: "Client private key.") var key = ".fusebox/certs/reporter.key"
    @Option(help: "Guard (breaker) name.") var guardName = "flaky-upstream"
    @Option(help: "Policy of registry 'default' the guard uses.") var policy = "api"
    @Option(help: "This process's client id in reports.") var clientId: String?
    @Option(help: "Directory of the policy cache.") var cacheDir = ".fusebox/cache"
    @Option(help: "Milliseconds between calls.") var intervalMs: Int64 = 50
    @Option(help: "Milliseconds between status lines (0: none).") var statusMs: Int64 = 1000
    @Option(help: "Seconds without fuseboxd before breakers run locally.") var stalenessSeconds: Double = 10
    @Option(help: "Seconds to wait for fuseboxd at startup before using the cache.") var startupTimeoutSeconds: Double = 5
    @Option(help: "Seconds of silence from fuseboxd before a keepalive PING (0: no keepalive).")
    var keepaliveSeconds: Double = 10
    @Option(help: "Seconds to wait for the PING's answer before dropping the connection.")
    var keepaliveTimeoutSeconds: Double = 5
    @Option(help: "Stop after this many seconds (0: run until killed).") var durationSeconds: Double = 0
    @Option(help: "Serve GET /health (the SDK's health report as JSON; 503 when critical) on this port of 127.0.0.1; 0 picks a free one (printed as a health-listening event); -1: off.")
    var healthPort: Int = -1
    @Option(help: "Milliseconds a guarded call may run past the policy's attempt timeout before it counts as blocked (an over-attempt line).")
    var overAttemptGraceMs: Int64 = 100

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        guard let (upHost, upPort) = Self.split(upstream) else {
            throw ValidationError("--upstream takes HOST:PORT")
        }
        let endpoints: [FuseboxEndpoint]
        do throws(FuseboxConfigurationError) {
            endpoints = try FuseboxEndpoint.list(parsing: server)
        } catch {
            throw ValidationError("--server takes HOST:PORT or HOST:PORT,HOST:PORT,…: \(error.message)")
        }
        guard keepaliveSeconds.isFinite, keepaliveSeconds >= 0,
            keepaliveTimeoutSeconds.isFinite, keepaliveTimeoutSeconds > 0
        else {
            throw ValidationError(
                "--keepalive-seconds takes 0 (off) or more, --keepalive-timeout-seconds more than 0; "
                    + "got \(keepaliveSeconds) and \(keepaliveTimeoutSeconds)")
        }
        var configuration = FuseboxConfiguration(
            endpoints: endpoints,
            tls: .client(trustRootsPath: ca, certificateChainPath: cert, privateKeyPath: key),
            clientID: clientId, cacheDirectory: cacheDir)
        configuration.stalenessBound = .milliseconds(Int64(stalenessSeconds * 1000))
        configuration.startupTimeout = .milliseconds(Int64(startupTimeoutSeconds * 1000))
        configuration.keepaliveInterval = keepaliveSeconds > 0 ? .milliseconds(Int64(keepaliveSeconds * 1000)) : nil
        configuration.keepaliveTimeout = .milliseconds(Int64(keepaliveTimeoutSeconds * 1000))
        configuration.onStateChange = { change in
            // This client's breaker alone (below the fleet's quorum) gets events of its
            // own, so "state" events stay the fleet's transitions.
            let event = !change.clientOnly ? "state" : change.to == .open ? "local-open" : "local-open-ended"
            Self.emit([
                "event": event, "breaker": change.breaker, "from": change.from.displayName, "to": change.to.displayName,
                "generation": change.generation, "reason": change.reason,
            ])
        }
        let fusebox = try await Fusebox.start(configuration)
        let upstreamGuard = fusebox.guard(guardName, policy: policy)
        Self.emit([
            "event": "started", "source": fusebox.policySource.rawValue, "policy": upstreamGuard.policy.name, "guard": guardName,
            "incarnation": fusebox.incarnation,
        ])

        // The health endpoint runs beside the calls, until they end.
        var healthTask: Task<Void, any Error>?
        if healthPort >= 0 {
            healthTask = Task {
                try await TinyHTTPServer.run(host: "127.0.0.1", port: healthPort, announce: { Self.emit(["event": "health-listening", "port": $0]) }) { head in
                    guard head.method == .GET, head.uri == "/health" else { return (.notFound, "text/plain", "GET /health\n") }
                    let report = fusebox.health()
                    return (report.status == .critical ? .serviceUnavailable : .ok, "application/json", report.json() + "\n")
                }
            }
        }
        let started = ContinuousClock.now
        var lastStatus = ContinuousClock.now
        var counts = (ok: 0, failed: 0, rejected: 0)
        // Each guarded call is timed against the attempt timeout of the policy in
        // force: a call that takes longer was held by something other than the
        // upstream (the SDK waiting on fuseboxd, say), which must never happen.
        var blocked = CallDurations()
        var lastMode = fusebox.mode
        while durationSeconds <= 0 || ContinuousClock.now - started < .milliseconds(Int64(durationSeconds * 1000)) {
            let callStart = ContinuousClock.now
            do {
                _ = try await upstreamGuard.run {
                    let status: Int
                    do {
                        status = try await HTTPGet.status(host: upHost, port: upPort, path: "/call")
                    } catch {
                        throw UpstreamError(status: nil, message: "\(error)")
                    }
                    guard status == 200 else { throw UpstreamError(status: status, message: "upstream answered \(status)") }
                    return status
                }
                counts.ok += 1
            } catch is GuardError {
                counts.rejected += 1
            } catch {
                counts.failed += 1
            }
            if let over = blocked.record(
                ContinuousClock.now - callStart, attemptMs: upstreamGuard.policy.timeout?.attemptMs, graceMs: overAttemptGraceMs)
            {
                Self.emit(["event": "over-attempt", "ms": over.ms, "attemptMs": over.attemptMs, "mode": fusebox.mode.rawValue])
            }
            if fusebox.mode != lastMode {
                lastMode = fusebox.mode
                Self.emit(["event": "mode", "mode": lastMode.rawValue])
            }
            if statusMs > 0, ContinuousClock.now - lastStatus >= .milliseconds(statusMs) {
                lastStatus = .now
                let s = upstreamGuard.breakerState
                Self.emit([
                    "event": "status", "state": s?.state.displayName ?? "NONE", "generation": s?.generation.value ?? 0,
                    "mode": fusebox.mode.rawValue, "ok": counts.ok, "failed": counts.failed, "rejected": counts.rejected,
                    "localOpen": upstreamGuard.localOpenUntil.map { $0 > Self.wallNow() } ?? false,
                    "policy": upstreamGuard.policy.name,
                    "consecutiveFailures": upstreamGuard.policy.circuitBreaker?.consecutiveFailuresThreshold ?? 0,
                    "calls": blocked.calls, "overAttempt": blocked.overAttempt, "maxCallMs": blocked.maxMs,
                ])
            }
            try await Task.sleep(for: .milliseconds(intervalMs))
        }
        healthTask?.cancel()
        await fusebox.shutdown()
    }

    static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
        return (String(address[..<colon]), port)
    }

    static func wallNow() -> Timestamp {
        Timestamp(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded()))
    }

    static func emit(_ fields: [String: any Sendable]) {
        var fields = fields
        fields["atMs"] = wallNow().milliseconds
        guard let data = try? JSONSerialization.data(withJSONObject: fields.mapValues { $0 as Any }, options: [.sortedKeys]),
            let line = String(data: data, encoding: .utf8)
        else { return }
        writeLine(line)
    }
}
