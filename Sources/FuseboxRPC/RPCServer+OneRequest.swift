import NIOCore
import NIOHTTP2

/// What every call's stream on one connection needs to be dispatched: made
/// once per connection, shared by its streams. Package-visible for the
/// `http2-server` fuzz target.
package final class CallDispatch: Sendable {
    let router: RPCRouter
    let configuration: RPCServerConfiguration
    let connection: ConnectionState
    let remote: String?
    let calls: CallCounter
    /// Hands a call that is not served on its stream's event loop to `serve()`.
    let passOn: @Sendable (RPCServer.StreamChannel) -> Void

    package init(
        router: RPCRouter, configuration: RPCServerConfiguration, connection: ConnectionState, remote: String?, calls: CallCounter,
        passOn: @escaping @Sendable (RPCServer.StreamChannel) -> Void
    ) {
        self.router = router
        self.configuration = configuration
        self.connection = connection
        self.remote = remote
        self.calls = calls
        self.passOn = passOn
    }
}

/// The first handler of every call's stream. It reads the request headers
/// and serves a method whose client sends one request message (unary and
/// server-streaming) itself: it gathers the request on the event loop and
/// starts the handler's task. A unary handler starts there with
/// `Task.immediate`, so one that does not suspend (a permit decision) runs to
/// its end on this thread, and its response leaves as headers, message and
/// trailers in one flush. The call's
/// deadline and the stream's end are event-loop events of this handler. Such
/// a call costs one task, with no async channel; a watch waits in that one
/// task.
///
/// Every other call (client- and bidirectional-streaming methods, and
/// requests answered with an error before any handler: malformed headers,
/// unknown methods, a refused connection) is wrapped in an async channel and
/// handed, with its headers, to `serve()`.
final class CallDispatchHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private enum Phase {
        case awaitingHeaders
        /// The request message is arriving.
        case receiving
        /// The handler runs.
        case running
        /// The status went out, or the client went away.
        case ended
    }

    /// What a handler ended with.
    private enum Answer {
        /// A unary method's response message.
        case message([UInt8])
        /// A server-streaming method's trailers (its messages were sent).
        case trailers(RPCMetadata)
    }

    private enum Ending {
        case finished(Answer)
        case failed(RPCError)
        case peerGone
    }

    private let dispatch: CallDispatch
    private var phase = Phase.awaitingHeaders
    private var context: ChannelHandlerContext?
    private var path = ""
    private var method: RPCRouter.OneRequestMethod?
    private var callContext: RPCServerContext?
    private var deframer: GRPCMessageDeframer?
    private var request: [UInt8]?
    /// A server-streaming call's sender.
    private var sender: RPCResponseSender?
    private var clientEnded = false
    /// A server-streaming call counted against the connection's watches.
    private var isWatch = false
    private var started = ContinuousClock.now
    /// The handler's task, while it runs.
    private var task: Task<Void, Never>?
    private var taskStarted = false
    private var taskRunning = false
    private var deadlineTimer: Scheduled<Void>?
    private var settleTimer: Scheduled<Void>?

    init(dispatch: CallDispatch) {
        self.dispatch = dispatch
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch phase {
        case .awaitingHeaders:
            guard case .headers(let headers) = frame, case .success(let head) = RequestHead.parse(headers.headers),
                let method = dispatch.router.oneRequestMethod(for: head.path), dispatch.connection.refusal == nil,
                dispatch.calls.tryAdd()
            else { return passOn(context, data) }
            if case .serverStreaming = method {
                let limit = dispatch.configuration.maximumWatchesPerConnection
                guard dispatch.connection.openWatch(limit: limit) else {
                    dispatch.configuration.onLimitReached?("watches_per_connection")
                    return refuse(context, .watchLimit(limit))
                }
                isWatch = true
            }
            begin(context, head: head, method: method)
            if headers.endStream {
                clientEnded = true
                gather(context)
            }
        case .receiving:
            switch frame {
            case .data(let data):
                if case .byteBuffer(let bytes) = data.data { deframer?.append(bytes) }
                clientEnded = data.endStream
                gather(context)
            case .headers(let headers):
                clientEnded = clientEnded || headers.endStream  // trailers from a client carry nothing we use
                gather(context)
            case .rstStream:
                end(.peerGone)
            default:
                break
            }
        case .running:
            if case .rstStream = frame { end(.peerGone) }
        case .ended:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        settleTimer?.cancel()
        settleTimer = nil
        switch phase {
        case .receiving, .running: end(.peerGone)
        case .awaitingHeaders, .ended: break
        }
        context.fireChannelInactive()
    }

    /// Not a call served here: to `serve()`, in an async channel, with its first frame.
    private func passOn(_ context: ChannelHandlerContext, _ first: NIOAny) {
        do {
            dispatch.passOn(try RPCServer.StreamChannel(wrappingChannelSynchronously: context.channel))
        } catch {
            context.close(promise: nil)
            return
        }
        // The async channel's writer assumes a writable stream; tell it if
        // this one stopped being writable before it was there to hear it.
        if !context.channel.isWritable { context.fireChannelWritabilityChanged() }
        context.fireChannelRead(first)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Answers before any handler runs, with `error` as is (a limit reached).
    private func refuse(_ context: ChannelHandlerContext, _ error: RPCError) {
        phase = .ended
        context.writeAndFlush(wrapOutboundOut(ResponseFrames.status(error, trailers: RPCMetadata(), trailersOnly: true)), promise: nil)
        settle(context)
        dispatch.calls.remove(parts: 2)
    }

    private func begin(_ context: ChannelHandlerContext, head: RequestHead, method: RPCRouter.OneRequestMethod) {
        phase = .receiving
        started = .now
        path = head.path
        self.method = method
        deframer = GRPCMessageDeframer(maximumMessageBytes: dispatch.configuration.maximumReceiveMessageBytes)
        callContext = RPCServerContext(
            path: head.path, peer: dispatch.connection.peer, remoteAddress: dispatch.remote,
            deadline: head.timeoutNanoseconds.map { started + .nanoseconds($0) }, metadata: head.metadata)
        if let timeout = head.timeoutNanoseconds {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            deadlineTimer = context.eventLoop.scheduleTask(in: .nanoseconds(timeout)) {
                bound.value.end(.failed(RPCError(.deadlineExceeded, "the deadline passed before the call finished")))
            }
        }
    }

    /// Takes the request message from what arrived; runs the handler once the client has half-closed.
    private func gather(_ context: ChannelHandlerContext) {
        do {
            while let message = try deframer?.next() {
                guard request == nil else { return end(.failed(.extraRequestMessage)) }
                request = message
            }
        } catch {
            return end(.failed(RPCError(error)))
        }
        guard clientEnded else { return }
        if let left = deframer?.bufferedBytes, left > 0 { return end(.failed(.endedInsideMessage(leftOver: left))) }
        guard let request, let method, let callContext else { return end(.failed(.noRequestMessage)) }
        deframer = nil
        self.request = nil
        self.method = nil
        self.callContext = nil
        run(method, request, callContext, context)
    }

    /// Requests above this size start their handler on the global executor
    /// rather than on the event loop, so that decoding them holds no
    /// connection's loop.
    static let largestRequestDecodedOnTheEventLoop = 16 * 1024

    private func run(_ method: RPCRouter.OneRequestMethod, _ request: [UInt8], _ callContext: RPCServerContext, _ context: ChannelHandlerContext) {
        phase = .running
        taskStarted = true
        taskRunning = true
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let calls = dispatch.calls
        let body: @Sendable () async -> Void
        switch method {
        case .unary(let handler):
            body = {
                let outcome: Result<Answer, RPCError>
                do {
                    outcome = .success(.message(try await handler(request, callContext)))
                } catch {
                    outcome = .failure(.fromHandler(error))
                }
                if eventLoop.inEventLoop {
                    bound.value.handlerEnded(outcome)
                } else {
                    eventLoop.execute { bound.value.handlerEnded(outcome) }
                }
                calls.remove(parts: 1)  // the task's part: it ends here, whatever the loop does
            }
        case .serverStreaming(let handler):
            let sender = RPCResponseSender(outbound: nil, channel: context.channel)
            self.sender = sender
            let connection = dispatch.connection
            body = {
                let outcome: Result<Answer, RPCError>
                do {
                    outcome = .success(.trailers(try await handler(request, sender, callContext)))
                } catch {
                    outcome = .failure(.fromHandler(error))
                }
                connection.closeWatch()
                // Always queued: the messages the handler queued go out before its status.
                eventLoop.execute { bound.value.handlerEnded(outcome) }
                calls.remove(parts: 1)
            }
        }
        // Unstructured, with reason: the task belongs to the stream, whose
        // life is this handler's. The handler cancels it when the deadline
        // passes or the stream ends first, and `RPCServer.serve()` waits for
        // every call counted in `calls` before it returns, as it does for its
        // own child tasks. Immediate for a unary call: a handler that does
        // not suspend runs to its end here, on the event loop that read its
        // request. Not for a watch, whose start (a snapshot of up to a whole
        // registry, built and encoded) would hold the loop's other calls, nor
        // for a large request, whose decoding would.
        let onTheLoop = if case .unary = method { request.count <= Self.largestRequestDecodedOnTheEventLoop } else { false }
        let task = onTheLoop ? Task.immediate(operation: body) : Task(operation: body)
        if taskRunning { self.task = task }
    }

    private func handlerEnded(_ outcome: Result<Answer, RPCError>) {
        taskRunning = false
        task = nil
        // Otherwise the deadline or the client ended the call first.
        guard phase == .running else { return }
        switch outcome {
        case .success(let answer): end(.finished(answer))
        case .failure(let error): end(.failed(error))
        }
    }

    /// The first ending decides; later ones (the handler after the deadline) are dropped.
    private func end(_ ending: Ending) {
        guard phase == .receiving || phase == .running else { return }
        phase = .ended
        deadlineTimer?.cancel()
        deadlineTimer = nil
        let configuration = dispatch.configuration
        if let observer = configuration.onCallCompleted {
            let code: RPCStatusCode = switch ending {
            case .finished: .ok
            case .failed(let error): error.code
            case .peerGone: .cancelled
            }
            observer(path, code, ContinuousClock.now - started)
        }
        if let context, context.channel.isActive {
            let frames: [HTTP2Frame.FramePayload]
            switch ending {
            case .finished(.message(let response)):
                frames = [
                    ResponseFrames.headers(RPCMetadata()), ResponseFrames.message(response, allocator: context.channel.allocator),
                    ResponseFrames.status(nil, trailers: RPCMetadata(), trailersOnly: false),
                ]
            case .finished(.trailers(let trailers)):
                frames = sender?.finishingFrames(nil, trailers: trailers, clientStillSending: false) ?? []
            case .failed(let error):
                // The gRPC protocol: a server that ends before the client
                // half-closed resets the stream with NO_ERROR.
                let status = configuration.mapError?(error) ?? error
                frames = sender?.finishingFrames(status, trailers: RPCMetadata(), clientStillSending: !clientEnded)
                    ?? [ResponseFrames.status(status, trailers: RPCMetadata(), trailersOnly: true)] + (clientEnded ? [] : [.rstStream(.noError)])
            case .peerGone:
                frames = []
            }
            if !frames.isEmpty {
                for frame in frames { context.write(wrapOutboundOut(frame), promise: nil) }
                context.flush()
                settle(context)
            }
        }
        deframer = nil
        request = nil
        sender = nil
        if isWatch && !taskStarted { dispatch.connection.closeWatch() }  // else the task closes it
        if taskRunning { task?.cancel() }
        // The answer's part; the task, if there was one, ends its own.
        dispatch.calls.remove(parts: taskStarted ? 1 : 2)
    }

    /// The stream ends by itself once its last frames are out (the client's
    /// flow-control window allowing). One whose client gives no window is
    /// reset after 10 s rather than held.
    private func settle(_ context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        let channel = context.channel
        settleTimer = context.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
    }
}
