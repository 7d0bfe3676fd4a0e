public import FuseboxTLS
import NIOConcurrencyHelpers
public import NIOCore
import NIOHPACK
package import NIOHTTP2
import NIOPosix
import Synchronization

/// A gRPC server (grpc/grpc doc/PROTOCOL-HTTP2.md) over HTTP/2 over TLS.
///
/// `start()` binds; `serve()` accepts connections until `shutdown()`, which
/// stops accepting, sends GOAWAY to every connection, lets calls in flight
/// finish within the grace period and then closes what is left. Handlers are
/// async functions running in one task per call. Unary and server-streaming
/// calls are read on their stream's event loop and their tasks started from
/// there (a unary handler runs on the loop until it first suspends;
/// `CallDispatchHandler`); every other call runs in a child task of `serve()`.
public final class RPCServer: Sendable {
    /// One call's stream, as the handlers see it.
    package typealias StreamChannel = NIOAsyncChannel<HTTP2Frame.FramePayload, HTTP2Frame.FramePayload>

    /// The configuration.
    public let configuration: RPCServerConfiguration
    private let router: RPCRouter
    private let tls: TLSContextProvider
    private let group: any EventLoopGroup
    private let listener = NIOLockedValueBox<(any Channel)?>(nil)
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private let connectionCount = NIOLockedValueBox<Int>(0)
    private let acceptedCount = NIOLockedValueBox<Int>(0)
    private let shuttingDown = Atomic<Bool>(false)
    private let inFlight = CallCounter()
    /// Calls other than unary and server-streaming ones (and those that came
    /// before `serve()` ran), as their streams open, handed from the event
    /// loops to `serve()`, which runs each in a child task.
    private let calls: AsyncStream<IncomingCall>
    private let incoming: AsyncStream<IncomingCall>.Continuation

    /// A server for `router`'s methods, with TLS from `tls`.
    public init(configuration: RPCServerConfiguration, router: RPCRouter, tls: TLSContextProvider, group: any EventLoopGroup) {
        self.configuration = configuration
        self.router = router
        self.tls = tls
        self.group = group
        (calls, incoming) = AsyncStream.makeStream()
    }

    /// Binds the listening socket; returns the address (with the real port).
    ///
    /// Connections are set up on their event loop as they are accepted, with
    /// no task of their own: each call (HTTP/2 stream) gets one task, which
    /// runs its handler (`CallDispatchHandler`).
    @discardableResult
    public func start() async throws -> SocketAddress {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Int32(clamping: max(configuration.listenBacklog, 1)))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.configureConnection(channel) }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        listener.withLockedValue { $0 = channel }
        guard let address = channel.localAddress else { throw RPCError(.internal, "the listener has no address") }
        return address
    }

    /// The pipeline of one accepted connection: TLS, then HTTP/2 whose
    /// streams each start with a `CallDispatchHandler`, and connection management.
    private func configureConnection(_ channel: any Channel) throws {
        acceptedCount.withLockedValue { $0 += 1 }
        let state = ConnectionState()
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(TLSHandler(context: tls.current))
        if let observer = configuration.onTLSFailure {
            try sync.addHandler(TLSFailureObserver(observer: observer))
        }
        let remote = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }
        let dispatch = CallDispatch(
            router: router, configuration: configuration, connection: state, remote: remote, calls: inFlight
        ) { [incoming] stream in
            incoming.yield(IncomingCall(stream, connection: state, remote: remote))
        }
        try Self.configureHTTP2(on: channel, configuration: configuration, dispatch: dispatch)
        // Over the limit: every call is answered UNAVAILABLE naming
        // the limit (serveStream), and the connection closes soon.
        if connectionCount.withLockedValue({ count in
            count += 1
            return count
        }) > configuration.maximumConnections {
            state.refusal = "the server holds \(configuration.maximumConnections) connections, its limit "
                + "(limits.maxConnections); try another replica or again later"
            configuration.onLimitReached?("connections")
            channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        }
        let id = ObjectIdentifier(channel)
        connections.withLockedValue { $0[id] = channel }
        channel.closeFuture.whenComplete { [connectionCount, connections] _ in
            connectionCount.withLockedValue { $0 -= 1 }
            _ = connections.withLockedValue { $0.removeValue(forKey: id) }
        }
    }

    /// Connections open now.
    public var openConnections: Int { connections.withLockedValue { $0.count } }

    /// Connections accepted since `start()`, including those closed since and
    /// those refused for `maximumConnections`; it never goes down. A client
    /// that keeps one connection adds one, however many calls it makes.
    public var acceptedConnections: Int { acceptedCount.withLockedValue { $0 } }

    /// Calls being served now (each runs in a task of its own; watches
    /// included). Back at 0 once every client is gone: a higher count would
    /// be a leaked task.
    public var callsInFlight: Int { inFlight.value }

    /// Server connections still in memory, in this process (every server's):
    /// closed ones are released, so this follows `openConnections` and is
    /// back at 0 once every client is gone. A higher count is a connection
    /// kept alive after its close (a leak).
    public static var connectionsInMemory: Int { ConnectionState.inMemory }

    /// The bound port (0 before `start`).
    public var port: Int { listener.withLockedValue { $0?.localAddress?.port } ?? 0 }

    /// Serves calls until `shutdown()` has closed every connection and every
    /// call has ended. Cancelling the task that serves closes the listener and
    /// every connection at once, without a grace period.
    public func serve() async throws {
        guard let listener = listener.withLockedValue({ $0 }) else { throw RPCError(.failedPrecondition, "start() the server first") }
        inFlight.open()
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                for await call in calls {
                    guard let stream = call.take() else { continue }
                    group.addTask { await self.serveStream(stream, connection: call.connection, remote: call.remote) }
                }
            }
            // One-request calls run in tasks of their streams (CallDispatchHandler),
            // ended by their connections' close: start no more, and wait for the last.
            inFlight.close()
            await inFlight.waitUntilNone()
        } onCancel: { [connections] in
            listener.close(promise: nil)
            for channel in connections.withLockedValue({ Array($0.values) }) { channel.close(promise: nil) }
        }
    }

    /// Stops accepting, sends GOAWAY, lets calls in flight finish within the
    /// grace period, then closes every connection.
    public func shutdown() async {
        guard !shuttingDown.exchange(true, ordering: .relaxed) else { return }
        try? await listener.withLockedValue { $0 }?.close()
        let open = connections.withLockedValue { Array($0.values) }
        for channel in open {
            channel.triggerUserOutboundEvent(GracefulShutdownEvent(), promise: nil)
        }
        let deadline = ContinuousClock.now + configuration.shutdownGracePeriod
        while ContinuousClock.now < deadline, !connections.withLockedValue({ $0.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        for channel in connections.withLockedValue({ Array($0.values) }) {
            try? await channel.close()
        }
        // No more calls: serve() returns once those running have ended.
        incoming.finish()
    }

    private func serveStream(_ stream: StreamChannel, connection: ConnectionState, remote: String?) async {
        inFlight.add()
        defer { inFlight.remove() }
        let streamChannel = stream.channel
        let closeFuture = stream.channel.closeFuture
        try? await stream.executeThenClose { inbound, outbound in
            // The body, then: once it has written its last frame, wait for the stream to
            // end by itself (its frames flushed as the client's flow-control window allows,
            // the client's side ended). Closing it before would reset it (CANCEL) with a
            // large response still waiting for window: PolicyHistory of 1,000 changes was.
            try await { () async throws -> Void in
                var frames = inbound.makeAsyncIterator()
                guard case .headers(let first)? = try await frames.next() else { return }
                let sender = RPCResponseSender(outbound: outbound, channel: streamChannel)
                let head: RequestHead
                switch RequestHead.parse(first.headers) {
                case .failure(.http(let status)):
                    try await outbound.write(.headers(.init(headers: HPACKHeaders([(":status", status)]), endStream: true)))
                    return
                case .failure(.grpc(let error)):
                    try await sender.finish(configuration.mapError?(error) ?? error, trailers: RPCMetadata())
                    return
                case .success(let parsed):
                    head = parsed
                }
                if let refusal = connection.refusal {
                    try await sender.finish(RPCError(.unavailable, refusal), trailers: RPCMetadata())
                    streamChannel.parent?.triggerUserOutboundEvent(GracefulShutdownEvent(), promise: nil)
                    return
                }
                // A one-request method comes here only when it could not
                // start on its event loop: it arrived before serve() ran.
                let oneRequest = router.oneRequestMethod(for: head.path)
                guard let handler = router.handler(for: head.path) ?? oneRequest.map(RPCRouter.handler(for:)) else {
                    try await sender.finish(RPCError(.unimplemented, "method \(head.path) is not implemented"), trailers: RPCMetadata())
                    return
                }
                let isWatch = if case .serverStreaming? = oneRequest { true } else { false }
                if isWatch {
                    let limit = configuration.maximumWatchesPerConnection
                    guard connection.openWatch(limit: limit) else {
                        configuration.onLimitReached?("watches_per_connection")
                        try await sender.finish(.watchLimit(limit), trailers: RPCMetadata())
                        return
                    }
                }
                defer { if isWatch { connection.closeWatch() } }
                let deadline = head.timeoutNanoseconds.map { ContinuousClock.now + .nanoseconds($0) }
                let context = RPCServerContext(
                    path: head.path, peer: connection.peer, remoteAddress: remote, deadline: deadline, metadata: head.metadata)
                let started = ContinuousClock.now
                let inputEnded = NIOLockedValueBox(first.endStream)
                let reader = RPCRequestReader(
                    frames: frames, maximumMessageBytes: configuration.maximumReceiveMessageBytes, inputEnded: inputEnded)
                let ending = await Self.run(handler, reader: reader, sender: sender, context: context, closeFuture: closeFuture)
                let stillSending = !inputEnded.withLockedValue { $0 }
                if let observer = configuration.onCallCompleted {
                    let code: RPCStatusCode = switch ending {
                    case .finished: .ok
                    case .failed(let error): error.code
                    case .peerGone: .cancelled
                    }
                    observer(head.path, code, ContinuousClock.now - started)
                }
                switch ending {
                case .finished(let trailers): try await sender.finish(nil, trailers: trailers, clientStillSending: stillSending)
                case .failed(let error):
                    try await sender.finish(configuration.mapError?(error) ?? error, trailers: RPCMetadata(), clientStillSending: stillSending)
                case .peerGone: return
                }
            }()
            await Self.settle(streamChannel, within: .seconds(10))
        }
    }

    /// Waits until `channel` (a stream) has closed by itself, at most `limit`.
    private static func settle(_ channel: any Channel, within limit: TimeAmount) async {
        let resumed = NIOLockedValueBox(false)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resume: @Sendable () -> Void = {
                if resumed.withLockedValue({ r in defer { r = true }; return !r }) { continuation.resume() }
            }
            let timer = channel.eventLoop.scheduleTask(in: limit) { resume() }
            channel.closeFuture.whenComplete { _ in
                timer.cancel()
                resume()
            }
        }
    }

    fileprivate enum Ending: Sendable {
        case finished(RPCMetadata)
        case failed(RPCError)
        case peerGone
    }

    /// Runs a handler against its deadline and the stream's life: whichever
    /// ends first decides, and the handler is cancelled if it has not ended.
    ///
    /// Two child tasks: the handler, and one that waits for the stream to close
    /// or the deadline to pass (both event-loop callbacks, no sleeping task).
    private static func run(
        _ handler: @escaping RPCRouter.Handler, reader: sending RPCRequestReader, sender: RPCResponseSender,
        context: RPCServerContext, closeFuture: EventLoopFuture<Void>
    ) async -> Ending {
        // The reader goes to the handler's task alone; nothing else touches it.
        let transfer = UncheckedTransfer(value: reader)
        return await withTaskGroup(of: Ending.self) { group in
            group.addTask {
                do {
                    return .finished(try await handler(transfer.value, sender, context))
                } catch let error as RPCError {
                    return .failed(error)
                } catch is CancellationError {
                    return .failed(RPCError(.cancelled, "the call was cancelled"))
                } catch {
                    return .failed(RPCError(.unknown, "\(error)"))
                }
            }
            group.addTask {
                let interruption = CallInterruption()
                return await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        interruption.wait(continuation)
                        let timer = context.deadline.map { deadline in
                            let left = ContinuousClock.now.duration(to: deadline).components
                            let nanos = max(0, left.seconds * 1_000_000_000 + left.attoseconds / 1_000_000_000)
                            return closeFuture.eventLoop.scheduleTask(in: .nanoseconds(nanos)) {
                                interruption.end(.failed(RPCError(.deadlineExceeded, "the deadline passed before the call finished")))
                            }
                        }
                        closeFuture.whenComplete { _ in
                            timer?.cancel()
                            interruption.end(.peerGone)
                        }
                    }
                } onCancel: {
                    interruption.end(.peerGone)  // the handler finished first; this result is not used
                }
            }
            let first = await group.next() ?? .peerGone
            group.cancelAll()
            return first
        }
    }
}

/// What ends a call before its handler does: the stream closing or the
/// deadline passing. The first to come resumes the waiter; the rest do nothing.
private final class CallInterruption: Sendable {
    private let state = NIOLockedValueBox<(waiter: CheckedContinuation<RPCServer.Ending, Never>?, ended: RPCServer.Ending?)>((nil, nil))

    func wait(_ continuation: CheckedContinuation<RPCServer.Ending, Never>) {
        let ended = state.withLockedValue { s -> RPCServer.Ending? in
            if s.ended == nil { s.waiter = continuation }
            return s.ended
        }
        if let ended { continuation.resume(returning: ended) }
    }

    func end(_ ending: RPCServer.Ending) {
        let waiter = state.withLockedValue { s -> CheckedContinuation<RPCServer.Ending, Never>? in
            guard s.ended == nil else { return nil }
            s.ended = ending
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: ending)
    }
}


/// Passes a connection's TLS failures to the configured observer.
private final class TLSFailureObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let observer: @Sendable (TLSError, String?) -> Void

    init(observer: @escaping @Sendable (TLSError, String?) -> Void) {
        self.observer = observer
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let tls = error as? TLSError {
            observer(tls, context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" })
        }
        context.fireErrorCaught(error)
    }
}

/// Hands a non-Sendable value to exactly one other task.
private struct UncheckedTransfer<Value>: @unchecked Sendable {
    let value: Value
}
