import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxWire
import NIOCore
import NIOPosix
import Synchronization

// MARK: - 2. Outcome ingestion

struct IngestResult {
    var reportsPerSecond: Double
    var callsPerSecond: Double
    var cpuMicrosPerReport: Double
    var errors: Int
}

/// `connections` TLS connections, each with `inFlight` concurrent ReportOutcomes loops,
/// for `seconds`; each batch: 10 breakers × `outcomes` outcomes.
func ingestFusebox(_ env: Environment, connections: Int, inFlight: Int, seconds: Double, outcomes: UInt64, group: any EventLoopGroup) async throws -> IngestResult {
    try await ingest(env, name: "ingest", connections: connections, inFlight: inFlight, seconds: seconds, outcomes: outcomes, group: group) {
        client, batch, end in
        var counted = (sent: 0, failed: 0)
        while ContinuousClock.now < end {
            do {
                _ = try await client.unary("fusebox.v1.BreakerService", "ReportOutcomes", batch, as: Fusebox_V1_ReportOutcomesResponse.self)
                counted.sent += 1
            } catch {
                counted.failed += 1
            }
        }
        return counted
    }
}

/// Like `ingestFusebox`, but each connection keeps `StreamOutcomes` calls open
/// (`inFlight` per connection) and sends batch after batch on them: no
/// per-report stream setup, headers or task.
func ingestFuseboxStreaming(_ env: Environment, connections: Int, inFlight: Int, seconds: Double, outcomes: UInt64, group: any EventLoopGroup) async throws -> IngestResult {
    try await ingest(env, name: "ingest-stream", connections: connections, inFlight: inFlight, seconds: seconds, outcomes: outcomes, group: group) {
        client, batch, end in
        let bytes = try batch.encode()
        let response: Fusebox_V1_ReportOutcomesResponse = try await client.call(path: "/fusebox.v1.BreakerService/StreamOutcomes") { call in
            while ContinuousClock.now < end {
                for _ in 0..<16 { try await call.send(bytes) }
            }
            try await call.finishSending()
            guard let reply = try await call.next() else { throw BenchError("no StreamOutcomes response") }
            return try Fusebox_V1_ReportOutcomesResponse(decoding: reply)
        }
        return (Int(response.accepted) / batch.breakers.count, 0)
    }
}

/// The shared part of both ingestion runs: a server with a policy that never
/// trips, `connections` reporter connections (each used once so every breaker
/// exists), then `connections × inFlight` jobs until `seconds` pass. A job
/// sends its batch until the end and returns how many reports were counted
/// and how many calls failed.
private func ingest(
    _ env: Environment, name: String, connections: Int, inFlight: Int, seconds: Double, outcomes: UInt64, group: any EventLoopGroup,
    job: @escaping @Sendable (RPCClient, Fusebox_V1_OutcomeBatch, ContinuousClock.Instant) async throws -> (sent: Int, failed: Int)
) async throws -> IngestResult {
    let server = try Fuseboxd(env, name: name)
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    var p = tripPolicy("ingest")
    p.circuitBreaker?.consecutiveFailuresThreshold = 0
    p.circuitBreaker?.failureRateThreshold = 99
    p.circuitBreaker?.minimumCalls = 1_000_000
    try await putPolicy(p, admin)
    let clients = try (0..<connections).map { _ in try server.client("reporter", group: group) }
    let names = (0..<100).map { "svc-\($0)" }
    func breakers(_ i: Int) -> [(String, UInt64)] { (0..<10).map { (names[(i * 10 + $0) % names.count], 0) } }
    for (i, c) in clients.enumerated() {
        let b = outcomeBatch(client: "c\(i)", sequence: 0, breakers: breakers(i), policy: "ingest", success: 1, failure: 0)
        _ = try await c.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
    }
    let done = Atomic(0)
    let errors = Atomic(0)
    let cpu0 = cpuSeconds(server.child.pid)
    let start = ContinuousClock.now
    let end = start + .milliseconds(Int64(seconds * 1000))
    let batches = (0..<connections * inFlight).map {
        outcomeBatch(client: "j\($0)", sequence: 0, breakers: breakers($0), policy: "ingest", success: outcomes - 1, failure: 1)
    }
    try await concurrently(connections * inFlight, width: connections * inFlight) { i in
        do {
            let counted = try await job(clients[i % connections], batches[i], end)
            done.add(counted.sent, ordering: .relaxed)
            errors.add(counted.failed, ordering: .relaxed)
        } catch {
            errors.add(1, ordering: .relaxed)
        }
    }
    let elapsed = ms(ContinuousClock.now - start) / 1000
    let cpu = cpuSeconds(server.child.pid) - cpu0
    let reports = Double(done.load(ordering: .relaxed))
    for c in clients { await c.close() }
    await admin.close()
    return IngestResult(
        reportsPerSecond: reports / elapsed, callsPerSecond: reports * 10 * Double(outcomes) / elapsed,
        cpuMicrosPerReport: cpu * 1e6 / max(reports, 1), errors: errors.load(ordering: .relaxed))
}

/// The hand-rolled Redis breaker: one HINCRBY per outcome, pipelined `depth` deep on each connection.
func ingestRedis(_ env: Environment, connections: Int, depth: Int, seconds: Double, group: any EventLoopGroup) async throws -> IngestResult {
    let port = freePort()
    let redis = try Child("/usr/bin/redis-server", ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                          log: "\(env.work)/redis-ingest.log")
    defer { redis.stop() }
    try waitForPort(port)
    let replies = Atomic(0)
    let cpu0Box = Mutex(0.0)
    cpu0Box.withLock { $0 = cpuSeconds(redis.pid) }
    let start = ContinuousClock.now
    let end = start + .milliseconds(Int64(seconds * 1000))
    try await concurrently(connections, width: connections) { i in
        let pending = Atomic(0)
        let conn = try await RawConnection(port: port, group: group) { text in
            var n = 0
            for byte in text.utf8 where byte == UInt8(ascii: "\n") { n += 1 }
            pending.subtract(n, ordering: .relaxed)
            replies.add(n, ordering: .relaxed)
        }
        var pipeline = ""
        for k in 0..<depth { pipeline += "HINCRBY breaker:svc-\((i * depth + k) % 100) \(k % 10 == 0 ? "failure" : "success") 1\r\n" }
        while ContinuousClock.now < end {
            pending.add(depth, ordering: .relaxed)
            try await conn.send(pipeline)
            while pending.load(ordering: .relaxed) > 0, ContinuousClock.now < end + .seconds(5) {
                try await Task.sleep(for: .microseconds(50))
            }
        }
        await conn.close()
    }
    let elapsed = ms(ContinuousClock.now - start) / 1000
    let cpu = cpuSeconds(redis.pid) - cpu0Box.withLock { $0 }
    let n = Double(replies.load(ordering: .relaxed))
    return IngestResult(reportsPerSecond: n / elapsed, callsPerSecond: n / elapsed, cpuMicrosPerReport: cpu * 1e6 / max(n, 1), errors: 0)
}

// MARK: - 6. Half-open permits

/// AcquirePermit latency: `requesters` concurrent callers over `connections` connections,
/// `each` requests per caller, against a breaker held HALF_OPEN.
func permitLatency(_ env: Environment, connections: Int, requesters: Int, each: Int, group: any EventLoopGroup) async throws -> (p50: Double, p99: Double, granted: Int, total: Int) {
    let server = try Fuseboxd(env, name: "permits")
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    try await putPolicy(tripPolicy("probe", openMs: 50, permits: 5), admin)
    _ = try await admin.unary("fusebox.v1.BreakerService", "ReportOutcomes",
                              outcomeBatch(client: "bench", sequence: 0, breakers: [("probe", 0)], policy: "probe", success: 0, failure: 1),
                              as: Fusebox_V1_ReportOutcomesResponse.self)
    try await Task.sleep(for: .milliseconds(200))
    let clients = try (0..<connections).map { _ in try server.client("reporter", group: group) }
    for c in clients { _ = try await breakerStatus(c, "probe") }  // connect first
    let status = try await breakerStatus(admin, "probe")
    let latencies = Mutex<[Double]>([])
    let granted = Atomic(0)
    try await concurrently(requesters, width: requesters) { r in
        let c = clients[r % connections]
        var request = Fusebox_V1_AcquirePermitRequest()
        request.breaker = BreakerMapping.ref("default", "probe")
        request.clientId = "r\(r)"
        request.generation = status.generation
        var mine: [Double] = []
        for _ in 0..<each {
            let t = ContinuousClock.now
            let response = try await c.unary("fusebox.v1.BreakerService", "AcquirePermit", request, as: Fusebox_V1_AcquirePermitResponse.self)
            mine.append(ms(ContinuousClock.now - t))
            if response.granted { granted.add(1, ordering: .relaxed) }
        }
        latencies.withLock { $0 += mine }
    }
    for c in clients { await c.close() }
    await admin.close()
    let all = latencies.withLock { $0 }
    return (percentile(all, 50), percentile(all, 99), granted.load(ordering: .relaxed), all.count)
}

/// Trips breaker "probe" (5 permits, OPEN for 50 ms) and waits until it is
/// HALF_OPEN; returns a permit request for it (as `client`) and one answer
/// to it, whose size the peers' files copy.
func holdHalfOpen(_ server: Fuseboxd, admin identity: String?, client: String, group: any EventLoopGroup)
    async throws -> (Fusebox_V1_AcquirePermitRequest, Fusebox_V1_AcquirePermitResponse)
{
    let admin = try server.client(identity, group: group)
    try await putPolicy(tripPolicy("probe", openMs: 50, permits: 5), admin)
    _ = try await admin.unary("fusebox.v1.BreakerService", "ReportOutcomes",
                              outcomeBatch(client: "bench", sequence: 0, breakers: [("probe", 0)], policy: "probe", success: 0, failure: 1),
                              as: Fusebox_V1_ReportOutcomesResponse.self)
    try await Task.sleep(for: .milliseconds(200))
    var request = Fusebox_V1_AcquirePermitRequest()
    request.breaker = BreakerMapping.ref("default", "probe")
    request.clientId = client
    request.generation = try await breakerStatus(admin, "probe").generation
    let sample = try await admin.unary("fusebox.v1.BreakerService", "AcquirePermit", request, as: Fusebox_V1_AcquirePermitResponse.self)
    await admin.close()
    return (request, sample)
}

/// AcquirePermit driven by h2load with 1,000 requests in flight (100 TLS
/// connections × 10 streams), and nginx serving a file of the response's size
/// with the same h2load settings: one independent client for both servers, so
/// the ratio compares the servers alone.
func permitLatencyH2load(_ env: Environment, requests: Int) async throws -> (fusebox: H2load.Run, nginx: H2load.Run) {
    let group = MultiThreadedEventLoopGroup.singleton
    let server = try Fuseboxd(env, name: "permits-h2load", anonymous: true)
    defer { server.stop() }
    let (request, sample) = try await holdHalfOpen(server, admin: nil, client: "h2load", group: group)
    let dir = "\(env.work)/permits-h2load"
    try Data(grpcFramed(try request.encode())).write(to: URL(fileURLWithPath: "\(dir)/request.bin"))
    try Data(grpcFramed(try sample.encode())).write(to: URL(fileURLWithPath: "\(dir)/permit.bin"))
    let load = ["-n", "\(requests)", "-c", "100", "-m", "10"]
    let fusebox = try H2load.run(load + [
        "-d", "\(dir)/request.bin", "-H", "content-type: application/grpc", "-H", "te: trailers",
        "https://127.0.0.1:\(server.port)/fusebox.v1.BreakerService/AcquirePermit",
    ], requests: requests, dir: dir)
    let nginx = try Nginx(env, dir: dir)
    defer { nginx.stop() }
    let peer = try H2load.run(load + ["https://127.0.0.1:\(nginx.port)/permit.bin"], requests: requests, dir: dir)
    return (fusebox, peer)
}

// MARK: - 3. Fleet cold start

/// 1,000 clients each open a TLS connection and fetch a 100-policy registry;
/// h2load drives fuseboxd (gRPC) and nginx (the same bytes as a static file).
/// Also the servers' CPU time for the run (nginx: master and workers), to
/// separate the server's work from h2load's, which shares the two cores.
func coldStart(_ env: Environment, clients: Int) async throws -> (fusebox: Double, nginx: Double, bytes: Int, fuseboxCPU: Double, nginxCPU: Double) {
    let group = MultiThreadedEventLoopGroup.singleton
    let server = try Fuseboxd(env, name: "coldstart", anonymous: true)
    defer { server.stop() }
    let (request, snapshot) = try await hundredPolicyRegistry(server, admin: nil, group: group)
    // The same bytes nginx will serve: the gRPC-framed response message.
    let framed = grpcFramed(try snapshot.encode())
    let dir = "\(env.work)/coldstart"
    try Data(framed).write(to: URL(fileURLWithPath: "\(dir)/registry.bin"))
    try Data(grpcFramed(try request.encode())).write(to: URL(fileURLWithPath: "\(dir)/request.bin"))

    let fuseboxCPU0 = treeCPUSeconds(server.child.pid)
    let fuseboxMs = try H2load.run([
        "-n", "\(clients)", "-c", "\(clients)", "-m", "1", "-d", "\(dir)/request.bin",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "https://127.0.0.1:\(server.port)/fusebox.v1.RegistryService/GetRegistry",
    ], requests: clients, dir: dir).totalMs
    let fuseboxCPU = treeCPUSeconds(server.child.pid) - fuseboxCPU0

    let nginx = try Nginx(env, dir: dir)
    defer { nginx.stop() }
    let nginxCPU0 = treeCPUSeconds(nginx.pid)
    let nginxMs = try H2load.run(["-n", "\(clients)", "-c", "\(clients)", "-m", "1", "https://127.0.0.1:\(nginx.port)/registry.bin"],
                                 requests: clients, dir: dir).totalMs
    let nginxCPU = treeCPUSeconds(nginx.pid) - nginxCPU0
    return (fuseboxMs, nginxMs, framed.count, fuseboxCPU, nginxCPU)
}

/// Puts 100 policies (the presets, renamed) into `default`; returns the
/// `GetRegistry` request for it and its answer, whose bytes nginx serves.
func hundredPolicyRegistry(_ server: Fuseboxd, admin identity: String?, group: any EventLoopGroup)
    async throws -> (Fusebox_V1_GetRegistryRequest, Fusebox_V1_RegistrySnapshot)
{
    let admin = try server.client(identity, group: group)
    for i in 0..<100 {
        var p = Presets.all[i % Presets.all.count]
        p.name = "policy-\(String(format: "%03d", i))"
        p.description = "service \(i): \(p.description)"
        try await putPolicy(p, admin)
    }
    var request = Fusebox_V1_GetRegistryRequest()
    request.registry = "default"
    let snapshot = try await admin.unary("fusebox.v1.RegistryService", "GetRegistry", request, as: Fusebox_V1_RegistrySnapshot.self)
    await admin.close()
    return (request, snapshot)
}

/// The gRPC framing of one message (uncompressed).
func grpcFramed(_ message: [UInt8]) -> [UInt8] {
    let n = UInt32(message.count)
    return [0, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + message
}

/// nginx serving the files in `dir` over TLS and HTTP/2, two workers, idle
/// connections kept for an hour (the memory scenario holds 10,000).
struct Nginx {
    let port: Int
    private let child: Child
    /// The master process; the workers are its children.
    var pid: Int32 { child.pid }

    /// `verifyClients`: require and verify a client certificate from the
    /// development CA (`ssl_verify_client on`), as fuseboxd does.
    init(_ env: Environment, dir: String, verifyClients: Bool = false) throws {
        port = freePort()
        let verify = verifyClients ? "ssl_client_certificate \(env.certs)/ca.pem;\n    ssl_verify_client on;" : ""
        let conf = """
            worker_processes 2;
            worker_rlimit_nofile 40000;
            pid \(dir)/nginx.pid;
            error_log \(dir)/nginx-error.log;
            events { worker_connections 20000; }
            http {
              access_log off;
              keepalive_timeout 3600s;
              client_header_timeout 3600s;
              server {
                listen 127.0.0.1:\(port) ssl http2;
                ssl_certificate \(env.certs)/server.pem;
                ssl_certificate_key \(env.certs)/server.key;
                ssl_protocols TLSv1.2 TLSv1.3;
                \(verify)
                root \(dir);
              }
            }
            """
        try conf.write(toFile: "\(dir)/nginx.conf", atomically: true, encoding: .utf8)
        child = try Child("/usr/sbin/nginx", ["-c", "\(dir)/nginx.conf", "-p", dir, "-g", "daemon off;"], log: "\(dir)/nginx.log")
        try waitForPort(port)
    }

    func stop() { child.stop() }
}

/// One h2load run: its total time, and each request's latency from its log file.
enum H2load {
    struct Run {
        var totalMs: Double
        var latenciesMs: [Double]
    }

    static func run(_ args: [String], requests: Int, dir: String) throws -> Run {
        let id = UUID().uuidString
        let out = "\(dir)/h2load-\(id).out"
        let log = "\(dir)/h2load-\(id).log"
        let p = try Child("/usr/bin/h2load", ["--log-file=\(log)"] + args, log: out)
        p.process.waitUntilExit()
        let text = p.output
        guard let r = text.range(of: "finished in "), let secs = Double(text[r.upperBound...].prefix { $0.isNumber || $0 == "." }) else {
            throw BenchError("h2load: \(text.suffix(1500))")
        }
        let unit = text[r.upperBound...].drop { $0.isNumber || $0 == "." }.prefix(2)
        guard text.contains("\(requests) succeeded") else { throw BenchError("h2load: not every request succeeded:\n\(text.suffix(1500))") }
        // Columns: start (µs since the epoch), HTTP status, µs until the end of the response.
        let latencies = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { line in
            line.split(separator: "\t").dropFirst(2).first.flatMap { Double($0) }.map { $0 / 1000 }
        }
        return Run(totalMs: unit.hasPrefix("ms") ? secs : secs * 1000, latenciesMs: latencies)
    }
}
