package import NIOCore
import NIOConcurrencyHelpers
import NIOHTTP2

extension RPCServer {
    /// Configures a connection's pipeline above TLS: HTTP/2 with the server's
    /// settings, the inline stream multiplexer and connection management.
    /// Each stream the client opens starts with a `CallDispatchHandler` for
    /// `dispatch`, added on the event loop as soon as the stream is set up;
    /// nothing waits for streams per connection.
    ///
    /// `start()` calls it for every accepted connection after adding the TLS
    /// handler; the `http2-server` fuzz target (FuseboxFuzzing) calls it on an
    /// `EmbeddedChannel`, so what is fuzzed is what the server runs.
    package static func configureHTTP2(on channel: any Channel, configuration: RPCServerConfiguration, dispatch: CallDispatch) throws {
        let state = dispatch.connection
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
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(CallDispatchHandler(dispatch: dispatch)) }
        }
        try sync.addHandler(management)
    }

    /// A call's stream on its way from its event loop to `serve()`. One that
    /// never gets there (the server stopped serving first) is closed, with
    /// its writer finished, when dropped: NIO requires that of every
    /// async channel it made.
    final class IncomingCall: Sendable {
        private let pending: NIOLockedValueBox<StreamChannel?>
        let connection: ConnectionState
        let remote: String?

        init(_ stream: StreamChannel, connection: ConnectionState, remote: String?) {
            pending = NIOLockedValueBox(stream)
            self.connection = connection
            self.remote = remote
        }

        /// The stream, to serve; nil if taken already.
        func take() -> StreamChannel? { pending.withLockedValue { s in defer { s = nil }; return s } }

        deinit {
            guard let stream = take() else { return }
            // Rare (a stream that opened as the server stopped) and brief: the
            // scoped close is async, and this is its only way to run from here.
            Task { try? await stream.executeThenClose { _, _ in } }
        }
    }
}
