import FuseboxTLS
import FuseboxWire
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// One `WatchBreakers` call over its own TLS connection, read on the event
/// loop: a channel handler deframes and decodes each event as it arrives, with
/// no task per stream. As light as the raw clients the peers are measured with
/// (a handler scanning bytes), so the fan-out figure is the server's, not the
/// load generator's: 1,000 SDK clients in one process on the server's two cores
/// cost more than the server does.
enum EventLoopWatcher {
    /// Opens the connection and the call; `onEvent` runs on the event loop.
    static func open(
        port: Int, tls: TLSContext, group: any EventLoopGroup, request: Fusebox_V1_WatchBreakersRequest,
        onEvent: @escaping @Sendable (Fusebox_V1_BreakerEvent) -> Void
    ) async throws -> any Channel {
        let body = try request.encode()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverName: "127.0.0.1"))
                    let mux = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { $0.eventLoop.makeSucceededVoidFuture() }
                    mux.createStreamChannel(promise: nil) { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandler(WatchCallHandler(body: body, port: port, onEvent: onEvent))
                        }
                    }
                    return channel
                }
            }
        return channel
    }
}

extension EventLoopWatcher {
    /// `streams` `WatchBreakers` calls sharing one TLS connection (HTTP/2
    /// streams of one channel), read on the event loop like `open`;
    /// `onEvent` gets the stream's index (0..<streams) with each event.
    /// Keep `streams` under the server's `maxConcurrentStreams`.
    /// `windowBytes`: each stream's flow-control window (and the connection's,
    /// `streams` times it), as fuseboxd sets its own inbound windows (1 MiB);
    /// nil: swift-nio-http2's defaults (64 KiB per stream and per connection),
    /// which the SDK's RPC client uses.
    static func openShared(
        port: Int, tls: TLSContext, group: any EventLoopGroup, request: Fusebox_V1_WatchBreakersRequest, streams: Int, windowBytes: Int?,
        onEvent: @escaping @Sendable (Int, Fusebox_V1_BreakerEvent) -> Void
    ) async throws -> any Channel {
        let body = try request.encode()
        var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
        var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
        if let windowBytes {
            connectionConfiguration.initialSettings = nioDefaultSettings.filter { $0.parameter != .initialWindowSize }
                + [HTTP2Setting(parameter: .initialWindowSize, value: windowBytes)]
            connectionConfiguration.targetWindowSize = min(windowBytes * streams, Int(Int32.max))
            streamConfiguration.targetWindowSize = windowBytes
        }
        let (connectionSettings, streamSettings) = (connectionConfiguration, streamConfiguration)
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverName: "127.0.0.1"))
                    let mux = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: connectionSettings, streamConfiguration: streamSettings
                    ) { $0.eventLoop.makeSucceededVoidFuture() }
                    for index in 0..<streams {
                        mux.createStreamChannel(promise: nil) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try stream.pipeline.syncOperations.addHandler(
                                    WatchCallHandler(body: body, port: port) { onEvent(index, $0) })
                            }
                        }
                    }
                    return channel
                }
            }
        return channel
    }
}

/// Sends the request on activation, then decodes every gRPC message of the response.
private final class WatchCallHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let body: [UInt8]
    private let port: Int
    private let onEvent: @Sendable (Fusebox_V1_BreakerEvent) -> Void
    private var pending: ByteBuffer?

    init(body: [UInt8], port: Int, onEvent: @escaping @Sendable (Fusebox_V1_BreakerEvent) -> Void) {
        self.body = body
        self.port = port
        self.onEvent = onEvent
    }

    func channelActive(context: ChannelHandlerContext) {
        let headers = HPACKHeaders([
            (":method", "POST"), (":scheme", "https"), (":path", "/fusebox.v1.BreakerService/WatchBreakers"),
            (":authority", "127.0.0.1:\(port)"), ("content-type", "application/grpc"), ("te", "trailers"),
        ])
        var message = context.channel.allocator.buffer(capacity: body.count + 5)
        message.writeInteger(UInt8(0))
        message.writeInteger(UInt32(body.count))
        message.writeBytes(body)
        context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(message), endStream: true))), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .data(let frame) = unwrapInboundIn(data), case .byteBuffer(var bytes) = frame.data else { return }
        if var held = pending {
            held.writeBuffer(&bytes)
            bytes = held
        }
        while bytes.readableBytes >= 5, let length = bytes.getInteger(at: bytes.readerIndex + 1, as: UInt32.self),
            bytes.readableBytes >= 5 + Int(length)
        {
            bytes.moveReaderIndex(forwardBy: 5)
            if let message = bytes.readBytes(length: Int(length)), let event = try? Fusebox_V1_BreakerEvent(decoding: message) {
                onEvent(event)
            }
        }
        pending = bytes.readableBytes > 0 ? bytes : nil
    }
}
