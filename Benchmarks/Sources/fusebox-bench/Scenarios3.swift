import Foundation
import FuseboxAPI
import FuseboxClient
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxWire
import MallocInterposerSwift
import NIOCore
import NIOPosix
import Synchronization

// MARK: - 5. Memory per idle watching connection

/// Opens a TLS connection (handshake done) and leaves it idle.
func idleTLS(port: Int, context: TLSContext, group: any EventLoopGroup) async throws -> any Channel {
    let handshake = Mutex<EventLoopPromise<Void>?>(nil)
    final class Waiter: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<Void>
        init(_ p: EventLoopPromise<Void>) { promise = p }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is TLSHandshakeCompleted { promise.succeed() }
            context.fireUserInboundEventTriggered(event)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { promise.fail(error) }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }
    let channel = try await ClientBootstrap(group: group)
        .connectTimeout(.seconds(60))
        .channelInitializer { ch in
            ch.eventLoop.makeCompletedFuture {
                let p = ch.eventLoop.makePromise(of: Void.self)
                handshake.withLock { $0 = p }
                try ch.pipeline.syncOperations.addHandler(TLSHandler(context: context, serverName: "localhost"))
                try ch.pipeline.syncOperations.addHandler(Waiter(p))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    try await handshake.withLock { $0 }?.futureResult.get()
    return channel
}

/// fuseboxd: RSS growth per idle connection holding a WatchBreakers stream.
/// nginx: RSS growth per idle TLS connection.
func memoryPerConnection(_ env: Environment, connections: Int, group: any EventLoopGroup) async throws -> (fusebox: Double, nginx: Double) {
    let server = try Fuseboxd(env, name: "memory")
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    try await putPolicy(tripPolicy("idle"), admin)
    await admin.close()
    try await Task.sleep(for: .milliseconds(500))
    let before = rssKiB(server.child.pid)
    let opened = SharedCounter()
    var tasks: [Task<Void, Never>] = []
    var clients: [RPCClient] = []
    for _ in 0..<connections {
        let c = try server.client("reader", group: group)
        clients.append(c)
        tasks.append(Task {
            var request = Fusebox_V1_WatchBreakersRequest()
            request.registry = "default"
            try? await c.serverStreaming("fusebox.v1.BreakerService", "WatchBreakers", request, as: Fusebox_V1_BreakerEvent.self) { _ in
                opened.value.add(1, ordering: .relaxed)
            }
        })
        if tasks.count % 200 == 0 { _ = await waitUntil(.seconds(60)) { opened.value.load(ordering: .relaxed) >= tasks.count - 50 } }
    }
    guard await waitUntil(.seconds(300), { opened.value.load(ordering: .relaxed) >= connections }) else {
        throw BenchError("only \(opened.value.load(ordering: .relaxed)) of \(connections) watch streams opened")
    }
    try await Task.sleep(for: .seconds(2))
    let after = rssKiB(server.child.pid)
    for t in tasks { t.cancel() }
    for c in clients { await c.close() }
    let fuseboxPer = Double(after - before) / Double(connections)

    let dir = "\(env.work)/memory-nginx"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let nginx = try Nginx(env, dir: dir)
    defer { nginx.stop() }
    let port = nginx.port
    try await Task.sleep(for: .milliseconds(500))
    var tls = TLSConfiguration(role: .client)
    tls.trustRootsPath = "\(env.certs)/ca.pem"
    let context = try TLSContext(configuration: tls)
    let nginxBefore = processTree(nginx.pid).map(rssKiB).reduce(0, +)
    var channels: [any Channel] = []
    for _ in 0..<connections { channels.append(try await idleTLS(port: port, context: context, group: group)) }
    try await Task.sleep(for: .seconds(2))
    let nginxAfter = processTree(nginx.pid).map(rssKiB).reduce(0, +)
    for c in channels { try? await c.close() }
    return (fuseboxPer, Double(nginxAfter - nginxBefore) / Double(connections))
}

// MARK: - 4. Client hot path

@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

struct HotPath {
    var name: String
    var ns: Double
    var allocs: Double
}

func measureSync(_ name: String, iterations: Int, _ body: (Int) -> Void) -> HotPath {
    for i in 0..<min(iterations, 10_000) { body(i) }
    MallocInterposerSwift.reset()
    MallocInterposerSwift.hook()
    let start = ContinuousClock.now
    for i in 0..<iterations { body(i) }
    let elapsed = ContinuousClock.now - start
    MallocInterposerSwift.unhook()
    let stats = MallocInterposerSwift.getStatistics()
    return HotPath(name: name, ns: ms(elapsed) * 1e6 / Double(iterations), allocs: Double(stats.mallocCount) / Double(iterations))
}

func measureAsync(_ name: String, iterations: Int, _ body: (Int) async throws -> Void) async rethrows -> HotPath {
    for i in 0..<min(iterations, 10_000) { try await body(i) }
    MallocInterposerSwift.reset()
    MallocInterposerSwift.hook()
    let start = ContinuousClock.now
    for i in 0..<iterations { try await body(i) }
    let elapsed = ContinuousClock.now - start
    MallocInterposerSwift.unhook()
    let stats = MallocInterposerSwift.getStatistics()
    return HotPath(name: name, ns: ms(elapsed) * 1e6 / Double(iterations), allocs: Double(stats.mallocCount) / Double(iterations))
}

/// The SDK in CLOSED: the breaker check and record alone; a guard with only a
/// breaker; a guard with four call-path patterns (no timeout); one with all
/// five; a bare atomic increment.
func hotPath(_ env: Environment, iterations: Int, group: any EventLoopGroup) async throws -> [HotPath] {
    // First with nothing else running in the process, so the allocation count is this code's alone.
    var results: [HotPath] = []
    let gate = BreakerGate()
    let tally = OutcomeTally()
    results.append(measureSync("breaker check + record (BreakerGate admit, OutcomeTally record)", iterations: iterations) { i in
        if case .pass(let g) = gate.admit() { tally.record(i % 10 == 0 ? .failure : .success, generation: g) }
    })
    let counter = Atomic<UInt64>(0)
    results.append(measureSync("peer: bare atomic increment", iterations: iterations) { _ in
        counter.add(1, ordering: .relaxed)
    })
    let server = try Fuseboxd(env, name: "hotpath")
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    var breakerOnly = tripPolicy("breaker-only")
    breakerOnly.circuitBreaker?.consecutiveFailuresThreshold = 1_000_000
    try await putPolicy(breakerOnly, admin)
    var untimed = breakerOnly
    untimed.name = "four-patterns"
    var retry = RetryPolicy()
    retry.budget = RetryBudgetPolicy()
    untimed.retry = retry
    untimed.bulkhead = BulkheadPolicy(maxConcurrent: 100)
    untimed.rateLimit = RateLimitPolicy(limitPerPeriod: 1_000_000_000, periodMs: 1_000)
    try await putPolicy(untimed, admin)
    var full = untimed
    full.name = "five-patterns"
    full.timeout = TimeoutPolicy(attemptMs: 10_000)
    try await putPolicy(full, admin)
    await admin.close()
    var configuration = FuseboxConfiguration(
        host: "127.0.0.1", port: server.port,
        tls: .client(trustRootsPath: "\(env.certs)/ca.pem", certificateChainPath: "\(env.certs)/reporter.pem", privateKeyPath: "\(env.certs)/reporter.key"),
        clientID: "bench", cacheDirectory: "\(env.work)/hotpath-cache")
    configuration.reportBatchSize = 1_000_000_000
    let fusebox = try await Fusebox.start(configuration)
    defer { Task { await fusebox.shutdown() } }

    let b = fusebox.guard("hot-breaker", policy: "breaker-only")
    results.append(try await measureAsync("guard.run, breaker only", iterations: iterations / 10) { i in
        blackHole(try await b.run { i })
    })
    let u = fusebox.guard("hot-untimed", policy: "four-patterns")
    results.append(try await measureAsync("guard.run, retry + breaker + rate limiter + bulkhead (no timeout)", iterations: iterations / 10) { i in
        blackHole(try await u.run { i })
    })
    let f = fusebox.guard("hot-full", policy: "five-patterns")
    results.append(try await measureAsync("guard.run, retry + breaker + rate limiter + bulkhead + attempt timeout", iterations: iterations / 10) { i in
        blackHole(try await f.run { i })
    })
    return results
}

final class SharedCounter: Sendable {
    let value = Atomic(0)
}
