import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire
import NIOCore

// MARK: - 13. The report path while alert sinks are down

struct AlertOutageResult {
    /// ReportOutcomes round trips (ms) of the steady reporter, sorted: with no
    /// trips (before), and while breakers trip (during).
    var beforeMs: [Double]
    var duringMs: [Double]
    /// Breakers tripped during (each an alert for every sink).
    var trips: Int
    /// From /metrics after the run.
    var dropped: Double
    var failures: Double
}

/// A socket that is listened on and never accepted from: the kernel completes
/// TCP handshakes, nothing ever answers (a sink that hangs).
final class BlackHole {
    let fd: Int32
    let port: Int

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard s >= 0, bound == 0, listen(s, 1024) == 0 else { throw BenchError("black hole: cannot listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) } }
        fd = s
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

/// The same steady ReportOutcomes load on two fuseboxd: one without alerts,
/// one whose every trip alerts two sinks that are down (connection refused,
/// and a black hole that never answers; 2 s timeout, 4 attempts, queues of
/// 100), while another connection trips a new breaker every `tripEveryMs`.
func reportPathDuringSinkOutage(_ env: Environment, calls: Int, tripEveryMs: Int, group: any EventLoopGroup) async throws -> (alerts: AlertOutageResult, alone: AlertOutageResult) {
    let hole = try BlackHole()
    let urlFile = "\(env.work)/dead-sink-url"
    try "https://127.0.0.1:\(hole.port)/hook\n".write(toFile: urlFile, atomically: true, encoding: .utf8)
    let refusedFile = "\(env.work)/refused-sink-url"
    try "https://127.0.0.1:\(freePort())/hook\n".write(toFile: refusedFile, atomically: true, encoding: .utf8)
    let alerts = """
        alerts:
          sinks:
            - {name: black-hole, kind: webhook, urlFile: \(urlFile), timeoutMs: 2000, maxAttempts: 4, queueCapacity: 100}
            - {name: refused, kind: slack, urlFile: \(refusedFile), timeoutMs: 2000, maxAttempts: 4, queueCapacity: 100}
          rules:
            - {name: opened, kind: breakerOpened, severity: critical, cooldownSeconds: 0}
        """
    var results: [AlertOutageResult] = []
    for (name, extra) in [("alerts-down", alerts), ("alerts-none", "")] {
        let server = try Fuseboxd(env, name: name, extraConfig: extra)
        defer { server.stop() }
        let admin = try server.client("admin", group: group)
        try await putPolicy(tripPolicy("trip"), admin)
        await admin.close()
        let reporter = try server.client("reporter", group: group)
        let tripper = try server.client("reporter", group: group)
        var sequence: UInt64 = 0
        func steady() async throws -> [Double] {
            var times: [Double] = []
            times.reserveCapacity(calls)
            for i in 0..<calls {
                sequence += 1
                let start = ContinuousClock.now
                _ = try await reporter.unary(
                    "fusebox.v1.BreakerService", "ReportOutcomes",
                    outcomeBatch(client: "steady", sequence: sequence, breakers: [("steady-\(i % 10)", 0)], policy: "trip", success: 5, failure: 0),
                    as: Fusebox_V1_ReportOutcomesResponse.self)
                times.append(ms(ContinuousClock.now - start))
            }
            return times.sorted()
        }
        let before = try await steady()
        let running = ManagedAtomicFlag()
        async let trips: Int = {
            var n = 0
            while !running.isSet, n < 100_000 {
                n += 1
                _ = try? await tripper.unary(
                    "fusebox.v1.BreakerService", "ReportOutcomes",
                    outcomeBatch(client: "tripper", sequence: 0, breakers: [("tripped-\(n)", 0)], policy: "trip", success: 0, failure: 1),
                    as: Fusebox_V1_ReportOutcomesResponse.self)
                try? await Task.sleep(for: .milliseconds(tripEveryMs))
            }
            return n
        }()
        let during = try await steady()
        running.set()
        let tripped = await trips
        try await Task.sleep(for: .milliseconds(500))
        let metrics = try await server.metrics(group: group)
        results.append(AlertOutageResult(
            beforeMs: before, duringMs: during, trips: tripped, dropped: metrics.sum("fusebox_alerts_dropped_total"),
            failures: metrics.sum("fusebox_alert_delivery_failures_total")))
        await reporter.close()
        await tripper.close()
    }
    return (results[0], results[1])
}

/// A flag set once, read from another task.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
