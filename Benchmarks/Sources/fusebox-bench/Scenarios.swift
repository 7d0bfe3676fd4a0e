import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxWire
import NIOCore
import NIOPosix
import Synchronization

// MARK: - Fusebox helpers

func putPolicy(_ p: Policy, _ admin: RPCClient) async throws {
    var r = Fusebox_V1_PutPolicyRequest()
    r.registry = "default"
    r.policy = PolicyMapping.wire(p)
    _ = try await admin.unary("fusebox.v1.RegistryService", "PutPolicy", r, as: Fusebox_V1_PutPolicyResponse.self)
}

func tripPolicy(_ name: String, openMs: Int64 = 600_000, permits: Int = 1) -> Policy {
    var p = Policy(name: name)
    var cb = CircuitBreakerPolicy()
    cb.consecutiveFailuresThreshold = 1
    cb.minimumCalls = 1
    cb.openDuration.baseMs = openMs
    cb.halfOpen.permittedCalls = permits
    cb.halfOpen.maxWaitMs = 600_000
    p.circuitBreaker = cb
    return p
}

func outcomeBatch(client: String, sequence: UInt64, breakers: [(String, UInt64)], policy: String, success: UInt64, failure: UInt64) -> Fusebox_V1_OutcomeBatch {
    var b = Fusebox_V1_OutcomeBatch()
    b.clientId = client
    b.sequence = sequence
    b.breakers = breakers.map { name, generation in
        var e = Fusebox_V1_BreakerOutcomes()
        e.breaker = BreakerMapping.ref("default", name)
        e.policy = policy
        e.generation = generation
        var c = Fusebox_V1_OutcomeCounts()
        c.success = success
        c.failure = failure
        e.counts = c
        e.trailingConsecutiveFailures = failure > 0 && success == 0 ? UInt32(failure) : 0
        return e
    }
    return b
}

func breakerStatus(_ client: RPCClient, _ name: String) async throws -> Fusebox_V1_BreakerStatus {
    var r = Fusebox_V1_GetBreakerRequest()
    r.breaker = BreakerMapping.ref("default", name)
    return try await client.unary("fusebox.v1.BreakerService", "GetBreaker", r, as: Fusebox_V1_BreakerDetail.self).status ?? Fusebox_V1_BreakerStatus()
}

// MARK: - 1. Trip fan-out

struct FanOutResult {
    var p50: Double
    var p99: Double
    var trips: Int
    /// Median time to the first watcher: the fixed cost before fan-out starts.
    var firstP50: Double = .nan
    /// When the call that caused the event was answered (Fusebox: the
    /// tripping `ReportOutcomes`; Redis: `PUBLISH`'s reply), p50 and p99.
    var replyP50: Double = .nan
    var replyP99: Double = .nan
    /// The server's CPU time (user + system, /proc/PID/stat) over the trips,
    /// divided by the events it delivered.
    var cpuMicrosPerEvent: Double = .nan
}

/// Fusebox: `watchers` TLS connections each watching breaker "fanout"; a report trips it;
/// latency = report sent → last watcher sees OPEN. Reset between trips.
/// `eventLoopWatchers`: watchers read on the event loop (`EventLoopWatcher`),
/// as light as the peers' clients; otherwise each watcher is an `RPCClient`
/// call, as the SDK makes it.
func fanOutFusebox(_ env: Environment, watchers: Int, trips: Int, eventLoopWatchers: Bool, group: any EventLoopGroup) async throws -> FanOutResult {
    let server = try Fuseboxd(env, name: "fanout")
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    try await putPolicy(tripPolicy("fanout"), admin)
    // Create the breaker (CLOSED) so watchers' snapshots hold it.
    _ = try await admin.unary("fusebox.v1.BreakerService", "ReportOutcomes",
                              outcomeBatch(client: "bench", sequence: 0, breakers: [("fanout", 0)], policy: "fanout", success: 1, failure: 0),
                              as: Fusebox_V1_ReportOutcomesResponse.self)
    let seen = SeenLog()  // keyed by generation
    @Sendable func record(_ event: Fusebox_V1_BreakerEvent, watcher i: Int) {
        switch event.event {
        case .snapshot(let s): for b in s.breakers { seen.record(trip: Int(b.generation) * 10 + Int(b.state.rawValue), watcher: i) }
        case .transition(let t): if let b = t.status { seen.record(trip: Int(b.generation) * 10 + Int(b.state.rawValue), watcher: i) }
        case nil: break
        }
    }
    var request = Fusebox_V1_WatchBreakersRequest()
    request.namePrefix = "fanout"
    var clients: [RPCClient] = []
    var tasks: [Task<Void, Never>] = []
    var channels: [any Channel] = []
    if eventLoopWatchers {
        let tls = try TLSContext(configuration: server.clientTLS("reader"))
        for i in 0..<watchers {
            channels.append(try await EventLoopWatcher.open(port: server.port, tls: tls, group: group, request: request) { record($0, watcher: i) })
        }
    } else {
        clients = try (0..<watchers).map { _ in try server.client("reader", group: group) }
        for (i, c) in clients.enumerated() {
            tasks.append(Task {
                try? await c.serverStreaming("fusebox.v1.BreakerService", "WatchBreakers", request, as: Fusebox_V1_BreakerEvent.self) {
                    record($0, watcher: i)
                }
            })
        }
    }
    defer {
        for t in tasks { t.cancel() }
        for c in channels { c.close(promise: nil) }
    }
    let reporter = try server.client("reporter", group: group)
    var latencies: [Double] = []
    var firsts: [Double] = []
    var replies: [Double] = []
    var status = try await breakerStatus(admin, "fanout")
    guard await waitUntil(.seconds(120), { seen.count(Int(status.generation) * 10 + Int(status.state.rawValue)) == watchers }) else {
        throw BenchError("only \(seen.count(Int(status.generation) * 10 + 1)) of \(watchers) watchers connected")
    }
    let cpu0 = cpuSeconds(server.child.pid)
    for trip in 0..<trips {
        let generation = status.generation
        let openKey = Int(generation + 1) * 10 + Int(Fusebox_V1_BreakerState.open.rawValue)
        let start = ContinuousClock.now
        _ = try await reporter.unary("fusebox.v1.BreakerService", "ReportOutcomes",
                                     outcomeBatch(client: "bench", sequence: UInt64(trip + 1), breakers: [("fanout", generation)], policy: "fanout", success: 0, failure: 1),
                                     as: Fusebox_V1_ReportOutcomesResponse.self)
        replies.append(ms(ContinuousClock.now - start))
        guard await waitUntil(.seconds(30), { seen.count(openKey) == watchers }), let last = seen.last(openKey) else {
            throw BenchError("trip \(trip): \(seen.count(openKey)) of \(watchers) watchers saw OPEN")
        }
        latencies.append(ms(last - start))
        firsts.append(ms((seen.first(openKey) ?? last) - start))
        var reset = Fusebox_V1_ResetRequest()
        reset.breaker = BreakerMapping.ref("default", "fanout")
        reset.reason = "bench"
        _ = try await admin.unary("fusebox.v1.AdminService", "Reset", reset, as: Fusebox_V1_AdminActionResponse.self)
        status = try await breakerStatus(admin, "fanout")
        let closedKey = Int(status.generation) * 10 + Int(Fusebox_V1_BreakerState.closed.rawValue)
        _ = await waitUntil(.seconds(30)) { seen.count(closedKey) == watchers }
    }
    // Each trip delivered two events to every watcher: OPEN, and CLOSED after
    // the reset. The CPU also covers the report, reset and status calls.
    let cpu = cpuSeconds(server.child.pid) - cpu0
    for c in clients { await c.close() }
    await admin.close()
    await reporter.close()
    return FanOutResult(p50: percentile(latencies, 50), p99: percentile(latencies, 99), trips: latencies.count, firstP50: percentile(firsts, 50),
                        replyP50: percentile(replies, 50), replyP99: percentile(replies, 99),
                        cpuMicrosPerEvent: cpu * 1e6 / Double(2 * trips * watchers))
}

/// Redis pub/sub: `watchers` subscribers to one channel; latency = PUBLISH → last subscriber has the message.
/// `tls`: Redis listens only on `--tls-port`, with fuseboxd's certificates and
/// client certificates required (`--tls-auth-clients yes`), as fuseboxd's watchers
/// present theirs; subscribers and publisher read through the same TLS handler.
func fanOutRedis(_ env: Environment, watchers: Int, trips: Int, tls: Bool = false, group: any EventLoopGroup) async throws -> FanOutResult {
    let port = freePort()
    var args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "20000"]
    var context: TLSContext?
    if tls {
        args += ["--port", "0", "--tls-port", "\(port)", "--tls-cert-file", "\(env.certs)/server.pem", "--tls-key-file", "\(env.certs)/server.key",
                 "--tls-ca-cert-file", "\(env.certs)/ca.pem", "--tls-auth-clients", "yes"]
        var configuration = TLSConfiguration(role: .client)
        configuration.trustRootsPath = "\(env.certs)/ca.pem"
        configuration.certificateChainPath = "\(env.certs)/reader.pem"
        configuration.privateKeyPath = "\(env.certs)/reader.key"
        configuration.applicationProtocol = nil
        context = try TLSContext(configuration: configuration)
    } else {
        args += ["--port", "\(port)"]
    }
    let redis = try Child("/usr/bin/redis-server", args, log: "\(env.work)/redis-fanout\(tls ? "-tls" : "").log")
    defer { redis.stop() }
    try waitForPort(port)
    let seen = SeenLog()
    var subs: [RawConnection] = []
    let subscribed = Atomic(0)
    for i in 0..<watchers {
        let scanner = Mutex(MarkerScanner())
        let c = try await RawConnection(port: port, group: group, tls: context) { text in
            if text.contains("subscribe") { subscribed.add(1, ordering: .relaxed) }
            for n in scanner.withLock({ $0.scan(text) }) { seen.record(trip: n, watcher: i) }
        }
        try await c.send("SUBSCRIBE trips\r\n")
        subs.append(c)
    }
    guard await waitUntil(.seconds(60), { subscribed.load(ordering: .relaxed) >= watchers }) else { throw BenchError("redis subscribers did not subscribe") }
    let replied = Mutex<ContinuousClock.Instant?>(nil)
    let publisher = try await RawConnection(port: port, group: group, tls: context) { text in
        // PUBLISH answers ":<subscribers>"; the first reply of each publish is what counts.
        if text.hasPrefix(":") { replied.withLock { if $0 == nil { $0 = .now } } }
    }
    var latencies: [Double] = []
    var firsts: [Double] = []
    var replies: [Double] = []
    let cpu0 = cpuSeconds(redis.pid)
    for trip in 1...trips {
        replied.withLock { $0 = nil }
        let start = ContinuousClock.now
        try await publisher.send("PUBLISH trips \(marker(trip))\r\n")
        guard await waitUntil(.seconds(30), { seen.count(trip) == watchers }), let last = seen.last(trip) else {
            throw BenchError("redis trip \(trip): \(seen.count(trip)) of \(watchers)")
        }
        _ = await waitUntil(.seconds(5)) { replied.withLock { $0 != nil } }
        latencies.append(ms(last - start))
        firsts.append(ms((seen.first(trip) ?? last) - start))
        if let at = replied.withLock({ $0 }) { replies.append(ms(at - start)) }
        try await Task.sleep(for: .milliseconds(20))
    }
    let cpu = cpuSeconds(redis.pid) - cpu0
    for s in subs { await s.close() }
    await publisher.close()
    return FanOutResult(p50: percentile(latencies, 50), p99: percentile(latencies, 99), trips: latencies.count, firstP50: percentile(firsts, 50),
                        replyP50: percentile(replies, 50), replyP99: percentile(replies, 99),
                        cpuMicrosPerEvent: cpu * 1e6 / Double(trips * watchers))
}

/// etcd: `watchers` watches on one key through etcd's JSON gateway; latency = PUT → last watcher has the event.
func fanOutEtcd(_ env: Environment, watchers: Int, trips: Int, group: any EventLoopGroup) async throws -> FanOutResult {
    let port = freePort()
    let peerPort = freePort()
    let etcd = try Child("/usr/bin/etcd", [
        "--data-dir", "\(env.work)/etcd", "--listen-client-urls", "http://127.0.0.1:\(port)", "--advertise-client-urls", "http://127.0.0.1:\(port)",
        "--listen-peer-urls", "http://127.0.0.1:\(peerPort)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
        "--initial-cluster", "default=http://127.0.0.1:\(peerPort)", "--log-level", "error",
    ], log: "\(env.work)/etcd.log")
    defer { etcd.stop() }
    try waitForPort(port)
    let key = Data("trip".utf8).base64EncodedString()
    let seen = SeenLog()
    let created = Atomic(0)
    var conns: [RawConnection] = []
    for i in 0..<watchers {
        let scanner = Mutex("")
        let c = try await RawConnection(port: port, group: group) { text in
            if text.contains("\"created\":true") { created.add(1, ordering: .relaxed) }
            // Values arrive base64-encoded: decode each "value":"…" and look for the marker.
            let values: [Int] = scanner.withLock { carry in
                let all = carry + text
                var found: [Int] = []
                var rest = Substring(all)
                while let r = rest.range(of: "\"value\":\"") {
                    guard let end = rest[r.upperBound...].firstIndex(of: "\"") else { break }
                    if let d = Data(base64Encoded: String(rest[r.upperBound..<end])), let s = String(data: d, encoding: .utf8),
                        s.hasPrefix("trip-"), let n = Int(s.dropFirst(5))
                    {
                        found.append(n)
                    }
                    rest = rest[end...]
                }
                carry = String(rest.suffix(200))
                return found
            }
            for n in values { seen.record(trip: n, watcher: i) }
        }
        let body = "{\"create_request\":{\"key\":\"\(key)\"}}"
        try await c.send("POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        conns.append(c)
    }
    guard await waitUntil(.seconds(60), { created.load(ordering: .relaxed) >= watchers }) else {
        throw BenchError("etcd watches not created: \(created.load(ordering: .relaxed)) of \(watchers); \(etcd.output.suffix(500))")
    }
    let writer = try await RawConnection(port: port, group: group) { _ in }
    var latencies: [Double] = []
    var firsts: [Double] = []
    for trip in 1...trips {
        let value = Data(marker(trip).utf8).base64EncodedString()
        let body = "{\"key\":\"\(key)\",\"value\":\"\(value)\"}"
        let start = ContinuousClock.now
        try await writer.send("POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        guard await waitUntil(.seconds(30), { seen.count(trip) == watchers }), let last = seen.last(trip) else {
            throw BenchError("etcd trip \(trip): \(seen.count(trip)) of \(watchers)")
        }
        latencies.append(ms(last - start))
        firsts.append(ms((seen.first(trip) ?? last) - start))
        try await Task.sleep(for: .milliseconds(20))
    }
    for c in conns { await c.close() }
    await writer.close()
    return FanOutResult(p50: percentile(latencies, 50), p99: percentile(latencies, 99), trips: latencies.count, firstP50: percentile(firsts, 50))
}
