import NIOConcurrencyHelpers
public import NIOCore
import NIOHTTP1
import NIOPosix

/// A small plain-HTTP listener for operators (default 127.0.0.1 only):
/// `GET /metrics` (Prometheus text), `GET /healthz` (the process is alive)
/// and `GET /readyz` (200 while serving, 503 otherwise).
public final class ObservabilityServer: Sendable {
    private let channel: any Channel

    /// Starts listening.
    public static func start(
        host: String, port: Int, group: any EventLoopGroup,
        metrics: @escaping @Sendable () -> [UInt8], ready: @escaping @Sendable () -> Bool
    ) async throws -> ObservabilityServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(Responder(metrics: metrics, ready: ready))
                }
            }
            .bind(host: host, port: port).get()
        return ObservabilityServer(channel: channel)
    }

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// The bound port.
    public var port: Int { channel.localAddress?.port ?? 0 }

    /// Stops listening.
    public func stop() async {
        try? await channel.close()
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let metrics: @Sendable () -> [UInt8]
        let ready: @Sendable () -> Bool
        private var head: HTTPRequestHead?

        init(metrics: @escaping @Sendable () -> [UInt8], ready: @escaping @Sendable () -> Bool) {
            self.metrics = metrics
            self.ready = ready
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let head else { return }
                let (status, type, body): (HTTPResponseStatus, String, [UInt8])
                switch (head.method, head.uri.split(separator: "?").first.map(String.init) ?? head.uri) {
                case (.GET, "/metrics"): (status, type, body) = (.ok, "text/plain; version=0.0.4", metrics())
                case (.GET, "/healthz"): (status, type, body) = (.ok, "text/plain", Array("ok\n".utf8))
                case (.GET, "/readyz"):
                    (status, type, body) = ready() ? (.ok, "text/plain", Array("ready\n".utf8)) : (.serviceUnavailable, "text/plain", Array("not ready\n".utf8))
                case (.GET, _): (status, type, body) = (.notFound, "text/plain", Array("try /metrics, /healthz or /readyz\n".utf8))
                default: (status, type, body) = (.methodNotAllowed, "text/plain", Array("GET only\n".utf8))
                }
                var headers = HTTPHeaders([("content-type", type), ("content-length", "\(body.count)")])
                if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
                let keepAlive = head.isKeepAlive
                context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    if !keepAlive { context.close(promise: nil) }
                }
                self.head = nil
            }
        }
    }
}
