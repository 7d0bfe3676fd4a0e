import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxTLS
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

// MARK: - 14. Open-loop load: requests sent at a constant rate, whatever the answers do

/// An open-loop HTTP/2 load over TLS, read on the event loop: each connection
/// opens one stream every `interval`, at times fixed in advance (connection
/// `c` at `start + c × interval / connections + k × interval`), and a
/// request's latency counts from that intended time, not from when it was
/// actually sent: a server (or a load generator) that falls behind shows it as
/// latency instead of quietly lowering the rate (no coordinated omission).
enum OpenLoop {
    struct Result {
        /// Latency of each request from its intended send time, ms, after the warm-up.
        var latenciesMs: [Double]
        var failures: Int
        /// Requests sent more than 1 ms after their intended time (the load generator was behind).
        var late: Int
        var seconds: Double
        var rate: Double { Double(latenciesMs.count) / seconds }
    }

    /// What one request is.
    struct Request: Sendable {
        var path: String
        var method: String
        /// gRPC-framed message (POST), or nil (GET).
        var body: [UInt8]?
        /// A gRPC call: success is `grpc-status: 0` in the trailers; otherwise `:status` 200.
        var grpc: Bool

        /// Writes the request on a new stream (headers, then the body if any).
        func write(to context: ChannelHandlerContext, port: Int) {
            var headers = HPACKHeaders([
                (":method", method), (":scheme", "https"), (":path", path), (":authority", "127.0.0.1:\(port)"),
            ])
            if grpc { headers.add(contentsOf: [("content-type", "application/grpc"), ("te", "trailers")]) }
            if let body {
                context.write(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: headers))), promise: nil)
                let buffer = context.channel.allocator.buffer(bytes: body)
                context.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(buffer), endStream: true))), promise: nil)
            } else {
                context.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: true))), promise: nil)
            }
        }

        /// Notes a response frame's `:status` and `grpc-status`; true when it ends the response.
        static func read(_ frame: HTTP2Frame.FramePayload, http: inout String?, grpc: inout String?) -> Bool {
            switch frame {
            case .headers(let h):
                if let v = h.headers.first(name: ":status") { http = v }
                if let v = h.headers.first(name: "grpc-status") { grpc = v }
                return h.endStream
            case .data(let d): return d.endStream
            default: return false
            }
        }
    }

    /// Opens `connections` TLS connections (ALPN h2) to `port`, then sends
    /// `rate` requests per second over all of them for `warmup + seconds`;
    /// requests whose intended time falls in the warm-up are not counted.
    static func run(
        port: Int, tls: TLSContext, connections: Int, rate: Int, seconds: Double, warmup: Double, request: Request, group: any EventLoopGroup
    ) async throws -> Result {
        let log = Log()
        var muxes: [(any Channel, NIOLoopBound<NIOHTTP2Handler.StreamMultiplexer>)] = []
        for _ in 0..<connections {
            muxes.append(try await open(port: port, tls: tls, group: group))
        }
        defer { for (channel, _) in muxes { channel.close(promise: nil) } }
        let interval = Int64(1_000_000_000) * Int64(connections) / Int64(rate)  // per connection, ns
        let perConnection = Int((warmup + seconds) * Double(rate) / Double(connections))
        let begin = NIODeadline.now() + .milliseconds(50)
        let counted = begin + .nanoseconds(Int64(warmup * 1e9))
        for (c, (channel, mux)) in muxes.enumerated() {
            let offset = interval * Int64(c) / Int64(connections)
            let first = begin + .nanoseconds(offset)
            let send = Sender(mux: mux, channel: channel, request: request, port: port,
                              interval: interval, count: perConnection, counted: counted, log: log)
            channel.eventLoop.execute { send.schedule(0, at: first) }
        }
        let expected = perConnection * connections
        let total = warmup + seconds
        _ = await waitUntil(.seconds(Int64(total) + 15)) { log.finished >= expected }
        let (latencies, failures, late) = log.results()
        return Result(latenciesMs: latencies, failures: failures + max(0, expected - log.finished), late: late, seconds: seconds)
    }

    private static func open(port: Int, tls: TLSContext, group: any EventLoopGroup) async throws -> (any Channel, NIOLoopBound<NIOHTTP2Handler.StreamMultiplexer>) {
        try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverName: "127.0.0.1"))
                    let mux = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { $0.eventLoop.makeSucceededVoidFuture() }
                    return (channel, NIOLoopBound(mux, eventLoop: channel.eventLoop))
                }
            }
    }

    /// Every request's result, gathered from the event loops.
    final class Log: Sendable {
        private struct State {
            var latencies: [Double] = []
            var failures = 0
            var late = 0
            var finished = 0
        }
        private let state = NIOLockedValueBox(State())
        func record(ok: Bool, latencyMs: Double, counted: Bool, late: Bool) {
            state.withLockedValue { s in
                s.finished += 1
                guard counted else { return }
                if ok { s.latencies.append(latencyMs) } else { s.failures += 1 }
                if late { s.late += 1 }
            }
        }
        var finished: Int { state.withLockedValue { $0.finished } }
        func results() -> ([Double], Int, Int) { state.withLockedValue { ($0.latencies, $0.failures, $0.late) } }
    }

    /// Opens one connection's streams at their intended times, on its event loop.
    private final class Sender: Sendable {
        let mux: NIOLoopBound<NIOHTTP2Handler.StreamMultiplexer>
        let channel: any Channel
        let request: Request
        let port: Int
        let interval: Int64
        let count: Int
        let counted: NIODeadline
        let log: Log

        init(mux: NIOLoopBound<NIOHTTP2Handler.StreamMultiplexer>, channel: any Channel, request: Request, port: Int,
             interval: Int64, count: Int, counted: NIODeadline, log: Log) {
            (self.mux, self.channel, self.request, self.port, self.interval, self.count, self.counted, self.log) =
                (mux, channel, request, port, interval, count, counted, log)
        }

        func schedule(_ k: Int, at intended: NIODeadline) {
            guard k < count else { return }
            channel.eventLoop.scheduleTask(deadline: intended) {
                self.fire(k, intended: intended)
            }
        }

        private func fire(_ k: Int, intended: NIODeadline) {
            let late = NIODeadline.now() - intended > .milliseconds(1)
            let handler = StreamHandler(request: request, port: port, intended: intended, counted: intended >= counted, late: late, log: log)
            mux.value.createStreamChannel(promise: nil) { stream in
                stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(handler) }
            }
            schedule(k + 1, at: intended + .nanoseconds(interval))
        }
    }

    /// Writes the request, then waits for the response's end.
    private final class StreamHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload

        let request: Request
        let port: Int
        let intended: NIODeadline
        let counted: Bool
        let late: Bool
        let log: Log
        private let outcome = NIOLockedValueBox<(status: String?, grpcStatus: String?, done: Bool)>((nil, nil, false))

        init(request: Request, port: Int, intended: NIODeadline, counted: Bool, late: Bool, log: Log) {
            (self.request, self.port, self.intended, self.counted, self.late, self.log) = (request, port, intended, counted, late, log)
        }

        func channelActive(context: ChannelHandlerContext) {
            request.write(to: context, port: port)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let ended = outcome.withLockedValue { o in Request.read(unwrapInboundIn(data), http: &o.status, grpc: &o.grpcStatus) }
            if ended { finish(context) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !outcome.withLockedValue({ $0.done }) { record(ok: false) }
        }

        private func finish(_ context: ChannelHandlerContext) {
            let o = outcome.withLockedValue { o in
                defer { o.done = true }
                return o
            }
            guard !o.done else { return }
            record(ok: request.grpc ? (o.status == "200" && o.grpcStatus == "0") : o.status == "200")
        }

        private func record(ok: Bool) {
            outcome.withLockedValue { $0.done = true }
            let latency = Double((NIODeadline.now() - intended).nanoseconds) / 1e6
            log.record(ok: ok, latencyMs: latency, counted: counted, late: late)
        }
    }
}

/// Scenario 14's two runs: fuseboxd answering `AcquirePermit` for a breaker held
/// HALF_OPEN (mutual TLS, the reporter's certificate), and nginx serving a file
/// of the permit response's size, under the same open-loop load. Also the
/// server's own time per `AcquirePermit` from its `fusebox_rpc_duration_seconds`
/// histogram (request headers parsed → response encoded), over the counted run.
struct OpenLoopPermits {
    var fusebox: OpenLoop.Result
    var nginx: OpenLoop.Result
    /// The same two at `lowerRate`, below what the shared cores sustain.
    var fuseboxLower: OpenLoop.Result
    var nginxLower: OpenLoop.Result
    /// (bucket bound in µs, share of calls at or below it) from /metrics.
    var decisionBuckets: [(Double, Double)]
    var decisionCalls: Double
}

func openLoopPermits(_ env: Environment, connections: Int, rate: Int, lowerRate: Int, seconds: Double, group: any EventLoopGroup) async throws -> OpenLoopPermits {
    let server = try Fuseboxd(env, name: "permits-open-loop")
    defer { server.stop() }
    let (request, sample) = try await holdHalfOpen(server, admin: "admin", client: "open-loop", group: group)
    let tls = try TLSContext(configuration: server.clientTLS("reporter"))
    let permit = OpenLoop.Request(path: "/fusebox.v1.BreakerService/AcquirePermit", method: "POST", body: grpcFramed(try request.encode()), grpc: true)
    // The first second is not counted in the latencies (connections and
    // handshakes settle); the histogram, read before and after, covers it too.
    let warmup = 1.0
    let before = try await server.metrics(group: group)
    let fusebox = try await OpenLoop.run(port: server.port, tls: tls, connections: connections, rate: rate, seconds: seconds, warmup: warmup, request: permit, group: group)
    let after = try await server.metrics(group: group)
    let fuseboxLower = try await OpenLoop.run(
        port: server.port, tls: tls, connections: connections, rate: lowerRate, seconds: seconds, warmup: warmup, request: permit, group: group)
    let method = "/fusebox.v1.BreakerService/AcquirePermit"
    let calls = after.sum("fusebox_rpc_duration_seconds_count", labelContains: method) - before.sum("fusebox_rpc_duration_seconds_count", labelContains: method)
    var buckets: [(Double, Double)] = []
    for bound in ["0.00001", "0.00002", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.002", "0.005"] {
        let label = "le=\"\(bound)\""
        let n = after.sum("fusebox_rpc_duration_seconds_bucket", labelsContaining: [method, label])
            - before.sum("fusebox_rpc_duration_seconds_bucket", labelsContaining: [method, label])
        if let b = Double(bound) { buckets.append((b * 1e6, calls > 0 ? n / calls : .nan)) }
    }

    let dir = "\(env.work)/permits-open-loop"
    try Data(grpcFramed(try sample.encode())).write(to: URL(fileURLWithPath: "\(dir)/permit.bin"))
    let nginx = try Nginx(env, dir: dir)
    defer { nginx.stop() }
    var plain = TLSConfiguration(role: .client)
    plain.trustRootsPath = "\(env.certs)/ca.pem"
    let file = OpenLoop.Request(path: "/permit.bin", method: "GET", body: nil, grpc: false)
    let peerTLS = try TLSContext(configuration: plain)
    let peer = try await OpenLoop.run(port: nginx.port, tls: peerTLS, connections: connections, rate: rate, seconds: seconds, warmup: warmup, request: file, group: group)
    let peerLower = try await OpenLoop.run(
        port: nginx.port, tls: peerTLS, connections: connections, rate: lowerRate, seconds: seconds, warmup: warmup, request: file, group: group)
    return OpenLoopPermits(
        fusebox: fusebox, nginx: peer, fuseboxLower: fuseboxLower, nginxLower: peerLower, decisionBuckets: buckets, decisionCalls: calls)
}

// MARK: - 16. Cold start with client certificates

extension OpenLoop {
    /// `count` new connections, at most `concurrency` at once: each makes the
    /// TLS handshake (presenting whatever client certificate `tls` holds),
    /// sends `request` on one stream, waits for the response's end and closes.
    /// Returns the wall time and how many failed.
    static func connectOnceEach(
        port: Int, tls: TLSContext, count: Int, concurrency: Int, request: Request, group: any EventLoopGroup
    ) async throws -> (seconds: Double, failures: Int) {
        let failures = NIOLockedValueBox(0)
        let start = ContinuousClock.now
        try await concurrently(count, width: concurrency) { _ in
            do {
                let (channel, mux) = try await open(port: port, tls: tls, group: group)
                let done = channel.eventLoop.makePromise(of: Bool.self)
                let handler = OneShotHandler(request: request, port: port, done: done)
                channel.eventLoop.execute {
                    mux.value.createStreamChannel(promise: nil) { stream in
                        stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(handler) }
                    }
                }
                let ok = try await done.futureResult.get()
                try? await channel.close()
                if !ok { failures.withLockedValue { $0 += 1 } }
            } catch {
                failures.withLockedValue { $0 += 1 }
            }
        }
        let elapsed = ContinuousClock.now - start
        return (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, failures.withLockedValue { $0 })
    }

    /// Sends one request and completes `done` with whether it succeeded.
    private final class OneShotHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload
        let request: Request
        let port: Int
        let done: EventLoopPromise<Bool>
        private let status = NIOLockedValueBox<(http: String?, grpc: String?)>((nil, nil))

        init(request: Request, port: Int, done: EventLoopPromise<Bool>) {
            (self.request, self.port, self.done) = (request, port, done)
        }

        func channelActive(context: ChannelHandlerContext) {
            request.write(to: context, port: port)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let ended = status.withLockedValue { s in Request.read(unwrapInboundIn(data), http: &s.http, grpc: &s.grpc) }
            guard ended else { return }
            let s = status.withLockedValue { $0 }
            done.succeed(request.grpc ? (s.http == "200" && s.grpc == "0") : s.http == "200")
        }

        func channelInactive(context: ChannelHandlerContext) {
            done.succeed(false)  // ignored if already completed
        }
    }
}

/// Scenario 16: fuseboxd's and nginx's CPU per new mutual-TLS connection
/// (handshake with a client certificate both verify, then one request for
/// a 100-policy registry's bytes), from `/proc/PID/stat` around the run.
func coldStartMutualTLS(_ env: Environment, connections: Int, concurrency: Int, group: any EventLoopGroup)
    async throws -> (fuseboxCPU: Double, nginxCPU: Double, fuseboxSeconds: Double, nginxSeconds: Double, failures: Int)
{
    let server = try Fuseboxd(env, name: "coldstart-mtls")
    defer { server.stop() }
    let (request, snapshot) = try await hundredPolicyRegistry(server, admin: "admin", group: group)
    let dir = "\(env.work)/coldstart-mtls"
    try Data(grpcFramed(try snapshot.encode())).write(to: URL(fileURLWithPath: "\(dir)/registry.bin"))
    let tls = try TLSContext(configuration: server.clientTLS("reader"))
    let get = OpenLoop.Request(path: "/fusebox.v1.RegistryService/GetRegistry", method: "POST", body: grpcFramed(try request.encode()), grpc: true)
    let f0 = treeCPUSeconds(server.child.pid)
    let f = try await OpenLoop.connectOnceEach(port: server.port, tls: tls, count: connections, concurrency: concurrency, request: get, group: group)
    let fuseboxCPU = treeCPUSeconds(server.child.pid) - f0

    let nginx = try Nginx(env, dir: dir, verifyClients: true)
    defer { nginx.stop() }
    let file = OpenLoop.Request(path: "/registry.bin", method: "GET", body: nil, grpc: false)
    let n0 = treeCPUSeconds(nginx.pid)
    let n = try await OpenLoop.connectOnceEach(port: nginx.port, tls: tls, count: connections, concurrency: concurrency, request: file, group: group)
    let nginxCPU = treeCPUSeconds(nginx.pid) - n0
    return (fuseboxCPU, nginxCPU, f.seconds, n.seconds, f.failures + n.failures)
}
