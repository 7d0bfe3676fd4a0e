import Foundation
import FuseboxRPC
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// Connection churn against a real fuseboxd process: `connections` sessions at
/// once, each connecting (mutual TLS), watching the breakers, reporting every
/// 5 s for 20–30 s and disconnecting, then starting over, for the
/// run's length. Once warmed up, the server's RSS and open descriptors stay
/// flat; when the clients are gone, no connection, call or descriptor is left.
///
/// The test command runs it for 105 s with 1,000 sessions; `scripts/soak`
/// for longer (FUSEBOX_SOAK_SECONDS, FUSEBOX_SOAK_CONNECTIONS;
/// FUSEBOX_SOAK_WATCH 0/1/2/3 = no watch, WatchBreakers, WatchRegistry,
/// Health/Watch; FUSEBOX_SOAK_REPORTS and FUSEBOX_SOAK_INTERVAL_MS shape a
/// session). docs/RELIABILITY.md has the figures.
final class SoakTests: XCTestCase {
    /// One sample of the server process.
    struct Sample {
        let at: Duration
        let rssKiB: Int
        let fds: Int
    }

    /// What the sessions did, shared by all of them.
    final class Tally: Sendable {
        private let state = NIOLockedValueBox(
            (sessions: 0, reports: 0, failures: [String: Int](), examples: [String: String](), latencies: [(Duration, Duration)]()))

        func session() { state.withLockedValue { $0.sessions += 1 } }
        func report(at: Duration, took: Duration) { state.withLockedValue { $0.reports += 1; $0.latencies.append((at, took)) } }
        func failure(_ what: String, _ example: String = "") {
            state.withLockedValue {
                $0.failures[what, default: 0] += 1
                if $0.examples[what] == nil { $0.examples[what] = example }
            }
        }
        var sessions: Int { state.withLockedValue { $0.sessions } }
        var reports: Int { state.withLockedValue { $0.reports } }
        var failures: [String: Int] { state.withLockedValue { $0.failures } }
        var examples: [String: String] { state.withLockedValue { $0.examples } }

        /// The p99 report latency of the reports sent in [from, to).
        func p99(from: Duration, to: Duration) -> Duration? {
            let window = state.withLockedValue { $0.latencies }.filter { $0.0 >= from && $0.0 < to }.map(\.1).sorted()
            guard !window.isEmpty else { return nil }
            return window[min(window.count - 1, window.count * 99 / 100)]
        }
    }

    /// CPU seconds (user + system) process `pid` has used.
    static func cpuSeconds(pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func environment(_ name: String, default value: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap(Int.init) ?? value
    }

    static func sample(pid: Int32) -> (rssKiB: Int, fds: Int)? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let rss = line.split(separator: " ").compactMap({ Int($0) }).first,
            let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        else { return nil }
        return (rss, fds)
    }

    /// A gauge's value in fuseboxd's /metrics.
    static func gauge(_ name: String, metricsPort: Int) throws -> Double? {
        let result = try runProcess([
            "python3", "-c",
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:\(metricsPort)/metrics', timeout=10).read().decode())",
        ], timeout: 20)
        let line = result.output.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    func testConnectionChurnLeavesNothingBehind() async throws {
        // The test command runs it for 105 s; `scripts/soak` for 30 minutes.
        let seconds = Self.environment("FUSEBOX_SOAK_SECONDS", default: 105)
        let connections = Self.environment("FUSEBOX_SOAK_CONNECTIONS", default: 1_000)
        let watchdog = TestWatchdog("SoakTests (\(seconds) s)", limit: .seconds(seconds + 240))
        defer { watchdog.disarm() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-soak-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("fusebox.yaml")
        try "limits:\n  maxConnections: \(connections + 500)\n".write(to: config, atomically: true, encoding: .utf8)
        let server = try FuseboxdProcess(dataDirectory: directory.appendingPathComponent("data").path, extra: ["--config", config.path])
        defer { server.stop(SIGTERM) }
        let pid = server.process.processIdentifier
        // The baseline: after a first report, which opens the store's write-ahead log.
        let first = try testClient(port: server.port, identity: "reporter", group: MultiThreadedEventLoopGroup.singleton)
        _ = try await first.unary(
            "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "soak", breaker: "soak-0", policy: "api", generation: 0, success: 1),
            as: Fusebox_V1_ReportOutcomesResponse.self)
        await first.close()
        try await Task.sleep(for: .seconds(1))
        let idle = try XCTUnwrap(Self.sample(pid: pid), "cannot read /proc/\(pid)")

        let group = MultiThreadedEventLoopGroup.singleton
        let tally = Tally()
        let cpuBefore = (server: Self.cpuSeconds(pid: pid), tests: Self.cpuSeconds(pid: getpid()))
        let samples = NIOLockedValueBox<[Sample]>([])
        let started = ContinuousClock.now
        let deadline = started + .seconds(seconds)
        let port = server.port
        await withTaskGroup(of: Void.self) { sessions in
            sessions.addTask {
                while ContinuousClock.now < deadline {
                    if let s = Self.sample(pid: pid) {
                        samples.withLockedValue { $0.append(Sample(at: ContinuousClock.now - started, rssKiB: s.rssKiB, fds: s.fds)) }
                    }
                    try? await Task.sleep(for: .seconds(2))
                }
            }
            for i in 0..<connections {
                sessions.addTask {
                    // Spread the first connections over the first 10 s.
                    try? await Task.sleep(for: .milliseconds(i * 10_000 / connections))
                    var round = 0
                    while ContinuousClock.now < deadline {
                        round += 1
                        await Self.session(i, round: round, port: port, group: group, tally: tally, started: started, deadline: deadline)
                    }
                }
            }
        }

        let cpu = (server: Self.cpuSeconds(pid: pid) - cpuBefore.server, tests: Self.cpuSeconds(pid: getpid()) - cpuBefore.tests)
        // Everyone is gone: nothing may be left behind.
        var after = Self.sample(pid: pid)
        var connected: Double? = nil
        var inFlight: Double? = nil
        var watchers: Double? = nil
        var tls: Double? = nil
        var inMemory: Double? = nil
        let settle = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < settle {
            after = Self.sample(pid: pid)
            connected = try Self.gauge("fusebox_connected_clients", metricsPort: server.metricsPort)
            inFlight = try Self.gauge("fusebox_rpc_calls_in_flight", metricsPort: server.metricsPort)
            watchers = try Self.gauge("fusebox_watchers{kind=\"breakers\"}", metricsPort: server.metricsPort)
            tls = try Self.gauge("fusebox_tls_connections_live", metricsPort: server.metricsPort)
            inMemory = try Self.gauge("fusebox_rpc_connections_in_memory", metricsPort: server.metricsPort)
            if inMemory == 0, connected == 0, inFlight == 0, watchers == 0, tls == 0, let after, after.fds <= idle.fds + 1 { break }
            try await Task.sleep(for: .seconds(1))
        }

        let all = samples.withLockedValue { $0 }
        // Warmed up: every session has connected at least twice.
        let warm = Duration.seconds(max(45, seconds / 3))
        let loaded = all.filter { $0.at >= warm }
        let span = max(1, loaded.count / 5)
        let early = loaded.prefix(span)
        let late = loaded.suffix(span)
        let rssEarly = early.map(\.rssKiB).max() ?? 0
        let rssLate = late.map(\.rssKiB).max() ?? 0
        let fdsEarly = early.map(\.fds).max() ?? 0
        let fdsLate = late.map(\.fds).max() ?? 0
        let rssGrowth = Double(rssLate - rssEarly) / Double(max(rssEarly, 1)) * 100
        let fdsGrowth = Double(fdsLate - fdsEarly) / Double(max(fdsEarly, 1)) * 100
        let third = Duration.seconds(max(20, (seconds - max(45, seconds / 3)) / 2))
        let p99Early = tally.p99(from: warm, to: warm + third)
        let p99Late = tally.p99(from: .seconds(seconds) - third, to: .seconds(seconds))
        func ms(_ d: Duration?) -> String {
            guard let d else { return "-" }
            return String(format: "%.1f ms", Double(d.components.attoseconds) / 1e15 + Double(d.components.seconds) * 1000)
        }
        print("""
            SOAK \(seconds) s, \(connections) concurrent sessions: \(tally.sessions) sessions (connect, watch, report, disconnect), \
            \(tally.reports) reports; failures \(tally.failures)
            SOAK server RSS idle \(idle.rssKiB / 1024) MiB, warmed up \(rssEarly / 1024) MiB, end \(rssLate / 1024) MiB \
            (growth \(String(format: "%.1f", rssGrowth)) %); descriptors idle \(idle.fds), warmed up \(fdsEarly), end \(fdsLate) \
            (growth \(String(format: "%.1f", fdsGrowth)) %)
            SOAK CPU: fuseboxd \(Int(cpu.server)) s, the clients (this process) \(Int(cpu.tests)) s, over \(seconds) s
            SOAK report p99 just after warm-up \(ms(p99Early)), at the end \(ms(p99Late))
            SOAK RSS MiB every 2 s: \(all.map { "\($0.rssKiB / 1024)" }.joined(separator: " "))
            SOAK after the clients left: connected \(connected.map { "\(Int($0))" } ?? "-"), calls in flight \
            \(inFlight.map { "\(Int($0))" } ?? "-"), breaker watchers \(watchers.map { "\(Int($0))" } ?? "-"), TLS connections \(tls.map { "\(Int($0))" } ?? "-"), \
            connections in memory \(inMemory.map { "\(Int($0))" } ?? "-"), descriptors \(after?.fds ?? -1) (idle \(idle.fds))
            """)

        XCTAssertGreaterThanOrEqual(tally.sessions, connections * 2, "every session connected again (churn); 4,000 on an idle machine")
        XCTAssertEqual(tally.failures.values.reduce(0, +), 0, "calls failed: \(tally.failures), e.g. \(tally.examples)")
        // Over 30 minutes (`scripts/soak`) RSS must stay flat within 5 %. The
        // 105-s variant sees only a minute after warm-up, in which glibc's
        // arenas still settle by a few MiB (CI: +7 %, 138 → 148 MiB); there it
        // bounds gross leaks (a leaked connection costs ~90 KiB, so 2,000
        // sessions leaking one each would add > 100 %), and the gauges below
        // catch what is left behind.
        let rssLimit: Double = seconds >= 600 ? 5 : 15
        XCTAssertLessThan(rssGrowth, rssLimit, "RSS grew after warm-up: \(rssEarly) KiB → \(rssLate) KiB")
        XCTAssertLessThan(fdsGrowth, 5, "descriptors grew after warm-up: \(fdsEarly) → \(fdsLate)")
        // The report p99 stays stable: at the end at most twice what it was just
        // after warm-up, plus 2 s. The clients share 2 cores with the server, and
        // in 105 s the p99 is noisy (fresh-clone runs: 1.0 s then 1.5 s; 0.47 s
        // then 1.67 s). A server whose queues keep growing fails this; noise and
        // a two-fold drift do not.
        if let early = p99Early, let late = p99Late {
            XCTAssertLessThanOrEqual(late, early * 2 + .seconds(2), "report p99 grew: \(ms(early)) just after warm-up, \(ms(late)) at the end")
        } else {
            XCTFail("no reports were timed in the early or the late part of the run")
        }
        XCTAssertEqual(connected, 0, "connections left open after every client left")
        XCTAssertEqual(inFlight, 0, "calls (tasks) left running after every client left")
        XCTAssertEqual(watchers, 0, "watchers left subscribed after every client left")
        XCTAssertEqual(tls, 0, "TLS connections (OpenSSL objects) left after every client left")
        XCTAssertEqual(inMemory, 0, "connections kept in memory after every client left")
        XCTAssertLessThanOrEqual(after?.fds ?? .max, idle.fds + 1, "descriptors left open after every client left")
    }

    /// One session: connect, watch, report every 5 s for 20–30 s, disconnect.
    static func session(
        _ i: Int, round: Int, port: Int, group: any EventLoopGroup, tally: Tally, started: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant
    ) async {
        let client: RPCClient
        do { client = try testClient(port: port, identity: "reporter", group: group) } catch {
            tally.failure("client: \(error)")
            try? await Task.sleep(for: .seconds(1))
            return
        }
        tally.session()
        let options = RPCCallOptions(timeout: .seconds(30))
        let watching = environment("FUSEBOX_SOAK_WATCH", default: 1)
        let watch = Task {
            guard watching > 0 else { return }
            if watching == 2 {
                var request = Fusebox_V1_WatchRegistryRequest()
                request.registry = "default"
                _ = try? await client.serverStreaming(
                    "fusebox.v1.RegistryService", "WatchRegistry", request, as: Fusebox_V1_RegistryEvent.self) { _ in }
                return
            }
            if watching == 3 {
                var request = Grpc_Health_V1_HealthCheckRequest()
                request.service = ""
                _ = try? await client.serverStreaming(
                    "grpc.health.v1.Health", "Watch", request, as: Grpc_Health_V1_HealthCheckResponse.self) { _ in }
                return
            }
            do throws(RPCError) {
                try await client.serverStreaming(
                    "fusebox.v1.BreakerService", "WatchBreakers", Fusebox_V1_WatchBreakersRequest(), as: Fusebox_V1_BreakerEvent.self
                ) { _ in }
            } catch where error.code == .cancelled {
            } catch {
                tally.failure("watch: \(error.code)", error.message)
            }
        }
        let reports = Self.environment("FUSEBOX_SOAK_REPORTS", default: 4 + (i + round) % 3)
        let interval = Duration.milliseconds(Self.environment("FUSEBOX_SOAK_INTERVAL_MS", default: 5_000))
        for _ in 0..<reports where ContinuousClock.now < deadline {
            let sent = ContinuousClock.now
            do throws(RPCError) {
                _ = try await client.unary(
                    "fusebox.v1.BreakerService", "ReportOutcomes",
                    batch(client: "soak-\(i)", breaker: "soak-\(i % 50)", policy: "api", generation: 0, success: 3),
                    as: Fusebox_V1_ReportOutcomesResponse.self, options: options)
                tally.report(at: sent - started, took: ContinuousClock.now - sent)
            } catch {
                tally.failure("report: \(error.code)", error.message)
            }
            try? await Task.sleep(for: interval)
        }
        if reports == 0 { try? await Task.sleep(for: interval) }
        watch.cancel()
        _ = await watch.value
        await client.close()
    }

    /// One reporter naming 100,000 random breakers (before the limit existed:
    /// 100,000 breakers and +625 MiB in under a minute) gets the first ones
    /// up to `limits.maxBreakersPerRegistry` and refusals for the rest, and
    /// the server's memory stops growing with the names once the limit is
    /// reached.
    func testRandomBreakerNamesCannotExhaustTheServer() async throws {
        let watchdog = TestWatchdog("SoakTests random breaker names", limit: .seconds(300))
        defer { watchdog.disarm() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-names-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let limit = 10_000
        let config = directory.appendingPathComponent("fusebox.yaml")
        try "limits:\n  maxBreakersPerRegistry: \(limit)\n".write(to: config, atomically: true, encoding: .utf8)
        let server = try FuseboxdProcess(dataDirectory: directory.appendingPathComponent("data").path, extra: ["--config", config.path])
        defer { server.stop(SIGTERM) }
        let pid = server.process.processIdentifier
        let before = try XCTUnwrap(Self.sample(pid: pid))
        let client = try testClient(port: server.port, identity: "reporter", group: MultiThreadedEventLoopGroup.singleton)
        var accepted = 0
        var refused = 0
        var refusal = ""
        var atLimit: (rssKiB: Int, fds: Int)?
        var generator = SystemRandomNumberGenerator()
        for round in 0..<1_000 {
            var names = Fusebox_V1_OutcomeBatch()
            names.clientId = "greedy"
            names.breakers = (0..<100).map { _ in
                batch(client: "greedy", breaker: "random-\(generator.next())", policy: "api", generation: 0, success: 1).breakers[0]
            }
            let response = try await client.unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", names, as: Fusebox_V1_ReportOutcomesResponse.self,
                options: RPCCallOptions(timeout: .seconds(30)))
            accepted += Int(response.accepted)
            refused += response.rejected.count
            if let first = response.rejected.first { refusal = first.description }
            // 20,000 names sent: the limit is twice reached.
            if round == 199 {
                try await Task.sleep(for: .seconds(1))
                atLimit = Self.sample(pid: pid)
            }
        }
        try await Task.sleep(for: .seconds(1))
        let after = try XCTUnwrap(Self.sample(pid: pid))
        let reached = try XCTUnwrap(atLimit)
        await client.close()
        let growth = Double(after.rssKiB - reached.rssKiB) / Double(reached.rssKiB) * 100
        print("""
            SOAK random breaker names: 100,000 sent, \(accepted) accepted, \(refused) refused (limit \(limit)); server RSS \
            \(before.rssKiB / 1024) MiB before, \(reached.rssKiB / 1024) MiB after 20,000 names, \(after.rssKiB / 1024) MiB after 100,000 \
            (\(String(format: "%.1f", growth)) % over the last 80,000)
            """)
        XCTAssertEqual(accepted, limit, "the registry took names up to its limit")
        XCTAssertEqual(refused, 100_000 - limit)
        XCTAssertTrue(refusal.contains("limits.maxBreakersPerRegistry"), refusal)
        XCTAssertLessThan(growth, 5, "memory grew with names beyond the limit")
    }
}
