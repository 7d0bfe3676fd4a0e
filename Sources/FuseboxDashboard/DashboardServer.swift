import FuseboxAuthority
import FuseboxCore
public import FuseboxServer
public import FuseboxTLS
import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOHTTP1
import NIOPosix

/// fuseboxd's web dashboard (docs/DASHBOARD.md): HTTPS on a port of its own
/// with the server's certificate, through the same OpenSSL TLS handler as
/// the gRPC port; HTTP/1.1, sessions, the JSON API and Server-Sent Events.
public final class DashboardServer: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// At most this many event streams at once.
    static let maxEventStreams = 64
    /// At most this many connections at once; more are closed at once.
    static let maxConnections = 256
    /// A request's head and body must arrive within this time of its first byte.
    static let requestTimeout: TimeAmount = .seconds(15)
    /// Largest request body.
    static let maxBodyBytes = 65_536
    /// A connection with nothing read or written for this long is closed
    /// (event streams write a keepalive every 15 s).
    static let idleTimeout: TimeAmount = .seconds(60)

    private let listener: NIOAsyncChannel<Connection, Never>
    let routes: DashboardRoutes
    private let tls: TLSContextProvider
    private let connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>
    private let stopping = NIOLockedValueBox(false)
    private let logger = Logger(label: "fusebox.dashboard")

    /// Binds the dashboard's listener. `tls` is the server's own
    /// configuration: the dashboard uses its certificate and key, and asks
    /// browsers for no client certificate.
    public static func start(
        settings: DashboardSettings, app: FuseboxServerApp, tls: TLSConfiguration, group: any EventLoopGroup
    ) async throws -> DashboardServer {
        var configuration = tls
        configuration.requireClientCertificate = false
        configuration.trustRootsPath = nil
        configuration.applicationProtocol = nil
        let provider = try TLSContextProvider(configuration: configuration)
        let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: settings.host, port: settings.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let id = ObjectIdentifier(channel)
                    let admitted = connections.withLockedValue { open in
                        guard open.count < Self.maxConnections else { return false }
                        open[id] = channel
                        return true
                    }
                    if !admitted { channel.close(promise: nil) }
                    try sync.addHandler(TLSHandler(context: provider.current))
                    try sync.addHandler(IdleStateHandler(allTimeout: Self.idleTimeout))
                    try sync.addHandler(IdleCloser())
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(RequestDeadline(timeout: Self.requestTimeout))
                    channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0[id] = nil } }
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        let clock = app.clock
        let routes = DashboardRoutes(
            app: app, auth: DashboardAuth(settings: settings, now: { clock.now().milliseconds }), activity: BreakerActivity())
        return DashboardServer(listener: listener, routes: routes, tls: provider, connections: connections)
    }

    private init(
        listener: NIOAsyncChannel<Connection, Never>, routes: DashboardRoutes, tls: TLSContextProvider,
        connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>
    ) {
        self.listener = listener
        self.routes = routes
        self.tls = tls
        self.connections = connections
    }

    /// The bound port.
    public var port: Int { listener.channel.localAddress?.port ?? 0 }

    /// Re-reads the certificate and key (SIGHUP); new connections use them.
    public func reloadTLS() throws { try tls.reload() }

    /// Serves until `shutdown()`: accepts connections, follows the breakers'
    /// watch hub for transition history, and samples error rates every 5 s.
    public func serve() async {
        let watch = routes.app.authority.watch(BreakerSelector(), sink: routes.activity)
        defer { routes.app.authority.unwatch(watch) }
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled, !self.stopping.withLockedValue({ $0 }) {
                    self.routes.sample()
                    try? await Task.sleep(for: .seconds(5))
                }
            }
            do {
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.handle(connection) }
                    }
                }
            } catch {
                if !stopping.withLockedValue({ $0 }) { logger.error("dashboard listener failed: \(error)") }
            }
            routes.streams.finishAll()
            group.cancelAll()
        }
    }

    /// Stops listening, ends event streams and closes every connection.
    public func shutdown() async {
        stopping.withLockedValue { $0 = true }
        try? await listener.channel.close()
        routes.streams.finishAll()
        for channel in connections.withLockedValue({ Array($0.values) }) { channel.close(promise: nil) }
    }

    /// Reads requests one after another on one connection and answers each.
    private func handle(_ connection: Connection) async {
        let remote = connection.channel.remoteAddress?.ipAddress ?? "unknown"
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body: [UInt8] = []
                var tooLarge = false
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        head = h
                        body.removeAll(keepingCapacity: true)
                        tooLarge = false
                    case .body(let buffer):
                        if body.count + buffer.readableBytes > Self.maxBodyBytes {
                            tooLarge = true
                        } else {
                            body.append(contentsOf: buffer.readableBytesView)
                        }
                    case .end:
                        guard let h = head else { continue }
                        head = nil
                        let request = DashboardRequest(head: h, body: tooLarge ? nil : body, remote: remote)
                        let reply = await routes.respond(to: request)
                        switch reply {
                        case .whole(let response):
                            try await Self.write(response, keepAlive: h.isKeepAlive, version: h.version, to: outbound)
                            if !h.isKeepAlive { return }
                        case .events(let session, let registry, let slot):
                            defer { routes.streams.release(slot) }
                            try await routes.stream(
                                to: outbound, version: h.version, session: session, registry: registry, slot: slot,
                                closed: connection.channel.closeFuture)
                            return
                        }
                    }
                }
            }
        } catch {
            // The browser went away or the connection broke: nothing to answer.
        }
    }

    static func write(
        _ response: DashboardResponse, keepAlive: Bool, version: HTTPVersion, to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws {
        var headers = HTTPHeaders(response.headers)
        headers.replaceOrAdd(name: "content-length", value: "\(response.body.count)")
        SecurityHeaders.add(to: &headers)
        if !keepAlive { headers.replaceOrAdd(name: "connection", value: "close") }
        try await outbound.write(.head(HTTPResponseHead(version: version, status: response.status, headers: headers)))
        if !response.body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body)))) }
        try await outbound.write(.end(nil))
    }
}

/// Headers every answer carries: the page runs only its own script and
/// styles, cannot be framed, and HTTPS is remembered.
enum SecurityHeaders {
    static func add(to headers: inout HTTPHeaders) {
        headers.replaceOrAdd(
            name: "content-security-policy",
            value: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        headers.replaceOrAdd(name: "x-content-type-options", value: "nosniff")
        headers.replaceOrAdd(name: "x-frame-options", value: "DENY")
        headers.replaceOrAdd(name: "referrer-policy", value: "same-origin")
        // No Strict-Transport-Security: it would bind the whole host, and the
        // plain-HTTP /metrics port on it with it.
        if !headers.contains(name: "cache-control") { headers.add(name: "cache-control", value: "no-store") }
    }
}

/// Closes a connection whose request (head and body) does not arrive whole
/// within `timeout` of its first part: a client trickling bytes cannot hold
/// a connection. Between requests and while an answer streams, the idle
/// timeout applies instead.
private final class RequestDeadline: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        arm(context)  // the first request, from the connection's start
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: if timer == nil { arm(context) }
        case .body: break
        case .end:
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    private func arm(_ context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) { loopBound.value.close(promise: nil) }
    }
}

/// Closes a connection that was idle for the idle timeout.
private final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

extension DashboardServer {
    /// A new access token (`fbx_` and 64 hexadecimal digits: 256 random bits)
    /// and its SHA-256 in hex, as `dashboard.tokens[].sha256` holds it.
    public static func makeToken() -> (token: String, sha256: String) {
        let token = "fbx_" + DashboardAuth.randomHex(32)
        return (token, DashboardAuth.hex(DashboardAuth.sha256(Array(token.utf8))))
    }
}
