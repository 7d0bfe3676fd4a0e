public import FuseboxTLS
public import FuseboxWire
import NIOConcurrencyHelpers
public import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// A gRPC client over one HTTP/2 connection with TLS (ALPN h2, optional
/// mutual TLS), or over cleartext HTTP/2 when the configuration says
/// `plaintext` (for peers such as a local etcd in tests). It connects on first use; when the connection drops, calls
/// reconnect with exponential backoff and jitter. While the server is
/// unreachable, calls fail fast with UNAVAILABLE, or wait if asked to.
public final class RPCClient: Sendable {
    typealias StreamChannel = NIOAsyncChannel<HTTP2Frame.FramePayload, HTTP2Frame.FramePayload>
    typealias Multiplexer = NIOHTTP2Handler.AsyncStreamMultiplexer<Void>

    private enum State {
        case idle(failures: Int, retryAt: ContinuousClock.Instant?, lastError: RPCError?)
        case connecting(EventLoopFuture<Void>)
        case ready(any Channel, Multiplexer, ConnectionFailure)
        case closed
    }

    /// The configuration.
    public let configuration: RPCClientConfiguration
    /// nil when the configuration is `plaintext`.
    private let tlsContext: TLSContext?
    private let group: any EventLoopGroup
    private let state = NIOLockedValueBox<State>(.idle(failures: 0, retryAt: nil, lastError: nil))
    private let random = NIOLockedValueBox(JitterSource())

    /// A client; nothing connects until the first call.
    public init(configuration: RPCClientConfiguration, group: any EventLoopGroup) throws(TLSError) {
        self.configuration = configuration
        self.tlsContext = configuration.plaintext ? nil : try TLSContext(configuration: configuration.tls)
        self.group = group
    }

    /// True when the server sent GOAWAY on the connection in use: the
    /// endpoint is shutting down or shedding connections.
    var connectionGoingAway: Bool {
        state.withLockedValue { s in
            if case .ready(_, _, let failure) = s { return failure.goAway != nil }
            return false
        }
    }

    /// Closes the connection; later calls fail with UNAVAILABLE.
    public func close() async {
        let previous = state.withLockedValue { s -> State in
            defer { s = .closed }
            return s
        }
        if case .ready(let channel, _, _) = previous { try? await channel.close() }
    }

    // MARK: Connection

    private func multiplexer(waitForReady: Bool) async throws(RPCError) -> (Multiplexer, ConnectionFailure?) {
        while true {
            enum Next {
                case use(Multiplexer, ConnectionFailure)
                case await(EventLoopFuture<Void>)
                case connect(EventLoopPromise<Void>, failures: Int)
                case sleep(until: ContinuousClock.Instant)
                case fail(RPCError)
            }
            let next: Next = state.withLockedValue { s in
                switch s {
                case .ready(let channel, let mux, let failure):
                    // After a GOAWAY the connection drains its open calls; new ones need a new connection.
                    if channel.isActive, failure.goAway == nil { return .use(mux, failure) }
                    s = .idle(failures: 0, retryAt: nil, lastError: nil)
                    fallthrough
                case .idle:
                    guard case .idle(let failures, let retryAt, let lastError) = s else { return .fail(RPCError(.internal, "state")) }
                    if let retryAt, ContinuousClock.now < retryAt {
                        if waitForReady { return .sleep(until: retryAt) }
                        return .fail(RPCError(.unavailable, "\(lastError?.message ?? "server unreachable"); retrying in \(retryAt - ContinuousClock.now)"))
                    }
                    let promise = group.next().makePromise(of: Void.self)
                    s = .connecting(promise.futureResult)
                    return .connect(promise, failures: failures)
                case .connecting(let future):
                    return .await(future)
                case .closed:
                    return .fail(RPCError(.unavailable, "the client was closed"))
                }
            }
            switch next {
            case .use(let mux, let failure):
                return (mux, failure)
            case .fail(let error):
                throw error
            case .await(let future):
                // Another call is connecting; this one stops waiting when its deadline cancels it.
                do { try await future.valueUnlessCancelled() } catch is CancellationError {
                    throw RPCError(.cancelled, "cancelled while waiting for the connection to \(configuration.host):\(configuration.port)")
                } catch {}
            case .sleep(let until):
                do { try await Task.sleep(until: until, clock: .continuous) } catch { throw RPCError(.cancelled, "cancelled while waiting for the server") }
            case .connect(let promise, let failures):
                do {
                    let (channel, mux, failure) = try await connect()
                    state.withLockedValue { $0 = .ready(channel, mux, failure) }
                    channel.closeFuture.whenComplete { [state] _ in
                        state.withLockedValue { s in
                            if case .ready(let current, _, _) = s, current === channel {
                                s = .idle(failures: 0, retryAt: nil, lastError: nil)
                            }
                        }
                    }
                    promise.succeed()
                    return (mux, failure)
                } catch {
                    let delay = random.withLockedValue { configuration.backoff(attempt: failures + 1, using: &$0) }
                    state.withLockedValue { $0 = .idle(failures: failures + 1, retryAt: .now + delay, lastError: error) }
                    promise.succeed()
                    if !waitForReady { throw error }
                }
            }
        }
    }

    /// HTTP/2 settings of client connections. A gRPC server may PING after
    /// every request it reads (grpc-go's and grpc-core's flow-control
    /// probes: etcd does), so NIO's default limit on received PINGs, 200 in
    /// 30 s, would close a busy connection to it every 200 calls: a client
    /// trusts its server more than that.
    static let http2: NIOHTTP2Handler.Configuration = {
        var c = NIOHTTP2Handler.Configuration()
        c.connection.controlFrameRateLimit.maximumCount = 1_000_000
        return c
    }()

    private func connect() async throws(RPCError) -> (any Channel, Multiplexer, ConnectionFailure) {
        let target = "\(configuration.host):\(configuration.port)"
        let tlsContext = self.tlsContext
        let serverName = configuration.serverName ?? configuration.host
        let keepalive = configuration.keepaliveInterval.map { ($0, configuration.keepaliveTimeout) }
        do {
            let failure = ConnectionFailure()
            let (channel, mux, handshake) = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        let handshake = channel.eventLoop.makePromise(of: Void.self)
                        if let tlsContext {
                            try sync.addHandler(TLSHandler(context: tlsContext, serverName: serverName))
                            try sync.addHandler(HandshakeWaiter(promise: handshake, failure: failure))
                        } else {
                            // Cleartext HTTP/2 with prior knowledge: the preface goes out at once.
                            handshake.succeed()
                        }
                        // Keepalive counts open calls, which the stream delegate reports.
                        let mux = try sync.configureAsyncHTTP2Pipeline(
                            mode: .client, streamDelegate: keepalive == nil ? nil : StreamLifecycle(), configuration: Self.http2
                        ) { stream in
                            stream.eventLoop.makeSucceededVoidFuture()
                        }
                        try sync.addHandler(GoAwayWatcher(failure: failure))
                        if case .some((let interval, let timeout)) = keepalive {
                            let handler = ClientKeepaliveHandler(interval: interval, timeout: timeout) { reason in
                                failure.recordClose(reason)
                            }
                            try sync.addHandler(handler)
                        }
                        return (channel, mux, handshake.futureResult)
                    }
                }
            // The handshake is bounded like the TCP connect (`connectTimeout`), and by the
            // call that asked for the connection: a frozen server accepts the TCP connection
            // (its kernel does) but never answers the ClientHello.
            let timedOut = NIOLockedValueBox(false)
            let limit = channel.eventLoop.scheduleTask(in: TimeAmount(configuration.connectTimeout)) {
                timedOut.withLockedValue { $0 = true }
                channel.close(promise: nil)
            }
            defer { limit.cancel() }
            do {
                try await handshake.valueUnlessCancelled()
            } catch is CancellationError {
                channel.close(promise: nil)
                throw RPCError(.cancelled, "the call ended (deadline or cancellation) during the TLS handshake with \(target)")
            } catch {
                channel.close(promise: nil)
                if timedOut.withLockedValue({ $0 }) {
                    throw RPCError(
                        .unavailable,
                        "the TLS handshake with \(target) did not finish within \(configuration.connectTimeout); is the server stopped or overloaded?")
                }
                throw error
            }
            return (channel, mux, failure)
        } catch let error as RPCError {
            throw error
        } catch let error as TLSError {
            throw RPCError(.unavailable, "TLS with \(target) failed: \(error.message)")
        } catch let error as ChannelError {
            if case .connectTimeout = error {
                throw RPCError(.unavailable, "connecting to \(target) timed out; check the address (--server)")
            }
            throw RPCError(.unavailable, "cannot connect to \(target): \(error)")
        } catch {
            throw RPCError(.unavailable, "cannot connect to \(target) (\(error)); is the server running? check the address (--server)")
        }
    }

    // MARK: Calls

    /// Runs one call on a new stream: `body` sends requests and reads
    /// responses through the `RPCClientCall`. The timeout covers everything.
    public func call<Result: Sendable>(
        path: String, options: RPCCallOptions = RPCCallOptions(),
        _ body: @escaping @Sendable (RPCClientCall) async throws -> Result
    ) async throws(RPCError) -> Result {
        try await call(path: path, options: options, progress: RPCCallProgress(), body)
    }

    /// `call`, recording in `progress` how far the call got, so that a
    /// failover client can tell a call that never reached the server.
    func call<Result: Sendable>(
        path: String, options: RPCCallOptions, progress: RPCCallProgress,
        _ body: @escaping @Sendable (RPCClientCall) async throws -> Result
    ) async throws(RPCError) -> Result {
        let deadline = options.timeout.map { ContinuousClock.now + $0 }
        let connection = NIOLockedValueBox<ConnectionFailure?>(nil)
        func failure() -> String? {
            guard let failure = connection.withLockedValue({ $0 }) else { return nil }
            if let reason = failure.closeReason {
                return "the connection to \(configuration.host):\(configuration.port) was closed: \(reason)"
            }
            return failure.error.map { "TLS with \(configuration.host):\(configuration.port) failed: \($0.message)" }
        }
        do {
            return try await withThrowingTaskGroup(of: Result?.self) { group in
                group.addTask {
                    let (mux, failure) = try await self.multiplexer(waitForReady: options.waitForReady)
                    connection.withLockedValue { $0 = failure }
                    let stream: StreamChannel
                    do {
                        stream = try await mux.openStream { channel in
                            channel.eventLoop.makeCompletedFuture { try StreamChannel(wrappingChannelSynchronously: channel) }
                        }
                    } catch {
                        throw RPCError(.unavailable, "could not open a stream: \(error)")
                    }
                    progress.streamOpened()
                    return try await stream.executeThenClose { inbound, outbound in
                        let call = RPCClientCall(
                            frames: inbound.makeAsyncIterator(), outbound: outbound, allocator: stream.channel.allocator,
                            maximumMessageBytes: self.configuration.maximumReceiveMessageBytes, progress: progress,
                            connection: failure)
                        do {
                            try await call.start(
                                path: path, scheme: self.configuration.plaintext ? "http" : "https",
                                authority: "\(self.configuration.host):\(self.configuration.port)", deadline: deadline, metadata: options.metadata)
                        } catch {
                            // The request headers were not written (a GOAWAY came, the connection
                            // is closing): no server saw the call.
                            progress.refused()
                            throw error
                        }
                        return try await body(call)
                    }
                }
                if let deadline {
                    group.addTask {
                        try await Task.sleep(until: deadline, clock: .continuous)
                        return nil
                    }
                }
                guard let first = try await group.next() else { throw RPCError(.internal, "no result") }
                group.cancelAll()
                guard let result = first else {
                    throw RPCError(.deadlineExceeded, "the deadline passed before the call finished")
                }
                return result
            }
        } catch let error as RPCError {
            // The caller cancelled: whatever the stream's end looked like, that is the cause.
            if Task.isCancelled { throw RPCError(.cancelled, "the call was cancelled") }
            throw failure().map { RPCError(.unavailable, $0) } ?? error
        } catch is CancellationError {
            throw RPCError(.cancelled, "the call was cancelled")
        } catch {
            throw RPCError(.unavailable, failure() ?? "the call failed: \(error)")
        }
    }

    /// A unary call with typed messages.
    public func unary<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ request: Request, as: Response.Type = Response.self,
        options: RPCCallOptions = RPCCallOptions()
    ) async throws(RPCError) -> Response {
        let bytes = try encodeRequest(request)
        let limits = WireLimits(maxMessageBytes: configuration.maximumReceiveMessageBytes)
        return try await call(path: "/\(service)/\(method)", options: options) { call in
            try await call.send(bytes, end: true)
            guard let reply = try await call.next() else { throw RPCError(.internal, "the server sent no response message") }
            guard try await call.next() == nil else { throw RPCError(.internal, "the server sent more than one response message") }
            return try decodeResponse(Response.self, reply, limits: limits)
        }
    }

    /// A server-streaming call: `onMessage` sees each response.
    public func serverStreaming<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ request: Request, as: Response.Type = Response.self,
        options: RPCCallOptions = RPCCallOptions(), onMessage: @escaping @Sendable (Response) async throws -> Void
    ) async throws(RPCError) {
        let bytes = try encodeRequest(request)
        let limits = WireLimits(maxMessageBytes: configuration.maximumReceiveMessageBytes)
        try await call(path: "/\(service)/\(method)", options: options) { call in
            try await call.send(bytes, end: true)
            while let reply = try await call.next() {
                try await onMessage(try decodeResponse(Response.self, reply, limits: limits))
            }
        }
    }

    /// A client-streaming call: sends every request, returns the single response.
    public func clientStreaming<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ requests: [Request], as: Response.Type = Response.self,
        options: RPCCallOptions = RPCCallOptions()
    ) async throws(RPCError) -> Response {
        var encoded: [[UInt8]] = []
        for request in requests { encoded.append(try encodeRequest(request)) }
        let all = encoded
        let limits = WireLimits(maxMessageBytes: configuration.maximumReceiveMessageBytes)
        return try await call(path: "/\(service)/\(method)", options: options) { call in
            for (i, bytes) in all.enumerated() { try await call.send(bytes, end: i == all.count - 1) }
            if all.isEmpty { try await call.finishSending() }
            guard let reply = try await call.next() else { throw RPCError(.internal, "the server sent no response message") }
            _ = try await call.next()
            return try decodeResponse(Response.self, reply, limits: limits)
        }
    }
}

/// Why a connection ended, if the client knows: the TLS error, or the reason
/// the client closed it itself (keepalive).
final class ConnectionFailure: Sendable {
    private let box = NIOLockedValueBox<(error: TLSError?, closeReason: String?, goAway: HTTP2ErrorCode?)>((nil, nil, nil))
    var error: TLSError? { box.withLockedValue { $0.error } }
    var closeReason: String? { box.withLockedValue { $0.closeReason } }
    /// The server sent GOAWAY (with this code): no new calls on this connection.
    var goAway: HTTP2ErrorCode? { box.withLockedValue { $0.goAway } }
    func record(_ error: TLSError) { box.withLockedValue { $0.error = $0.error ?? error } }
    func recordClose(_ reason: String) { box.withLockedValue { $0.closeReason = $0.closeReason ?? reason } }
    func recordGoAway(_ code: HTTP2ErrorCode) { box.withLockedValue { $0.goAway = $0.goAway ?? code } }
}

/// Passes the TLS handshake's result to a promise, and remembers a later TLS failure.
private final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any
    private var promise: EventLoopPromise<Void>?
    private let failure: ConnectionFailure

    init(promise: EventLoopPromise<Void>, failure: ConnectionFailure) {
        self.promise = promise
        self.failure = failure
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { promise.take()?.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let tls = error as? TLSError { failure.record(tls) }
        promise.take()?.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.take()?.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A connect that fails never makes the channel active.
        promise.take()?.fail(ChannelError.ioOnClosedChannel)
    }
}

func encodeRequest<M: WireMessage>(_ message: M) throws(RPCError) -> [UInt8] {
    do { return try message.encode() } catch { throw RPCError(.invalidArgument, "cannot encode the request: \(error)") }
}

func decodeResponse<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8], limits: WireLimits) throws(RPCError) -> M {
    do { return try M(decoding: bytes, limits: limits) } catch { throw RPCError(.internal, "malformed response: \(error)") }
}
