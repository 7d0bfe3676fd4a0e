package import NIOCore
import NIOHTTP2

extension RPCServer {
    /// Configures a connection's pipeline above TLS: HTTP/2 with the server's
    /// settings, the inline stream multiplexer and connection management.
    /// Each stream channel the client opens is passed to `onStream`, on the
    /// event loop, as soon as it is set up (the server wraps it in an async
    /// channel there); nothing waits for streams per connection.
    ///
    /// `start()` calls it for every accepted connection after adding the TLS
    /// handler; the `http2-server` fuzz target (FuseboxFuzzing) calls it on an
    /// `EmbeddedChannel`, so what is fuzzed is what the server runs.
    package static func configureHTTP2(
        on channel: any Channel, configuration: RPCServerConfiguration, state: ConnectionState,
        onStream: @escaping @Sendable (any Channel) throws -> Void
    ) throws {
        let sync = channel.pipeline.syncOperations
        var h2 = NIOHTTP2Handler.Configuration()
        h2.connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.maximumConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16 * 1024),
            HTTP2Setting(parameter: .initialWindowSize, value: 1024 * 1024),
        ]
        // The management handler follows NIOHTTP2Handler in the pipeline, and
        // learns from it, as its frame delegate, what the calls write.
        let management = ConnectionManagementHandler(configuration: configuration, connection: state)
        // The multiplexer's own sequence of streams is dropped unread: its
        // stream ends when dropped, so what the initializer returns (nothing)
        // is discarded rather than kept for a reader that never comes.
        _ = try sync.configureAsyncHTTP2Pipeline(
            mode: .server, streamDelegate: StreamLifecycle(), frameDelegate: management.frameDelegate,
            configuration: h2
        ) { stream in
            stream.eventLoop.makeCompletedFuture { try onStream(stream) }
        }
        try sync.addHandler(management)
    }
}
