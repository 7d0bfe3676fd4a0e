import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2
import Synchronization

/// What every call's stream on one connection needs to be dispatched: made
/// once per connection, shared by its streams.
final class CallDispatch: Sendable {
    let router: RPCRouter
    let configuration: RPCServerConfiguration
    let connection: ConnectionState
    let remote: String?
    let calls: CallCounter
    /// Hands a call that is not served on its stream's event loop to `serve()`.
    let passOn: @Sendable (RPCServer.StreamChannel) -> Void

    init(
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

/// Calls being served, a wait for the moment none is, and whether unary
/// calls may start on their streams' event loops: only while `serve()` runs.
/// Before, and once it has stopped, their streams go where every other call's
/// go: queued for `serve()`, or closed with it.
final class CallCounter: Sendable {
    /// Bit 0: closed to unary calls. Above it, in steps of 2: parts still
    /// open, two per call. A unary call's answer and its handler's task each
    /// end one part, on their own threads, so that neither waits for the other.
    private let state = Atomic<Int>(1)
    private let waiters = NIOLockedValueBox<[CheckedContinuation<Void, Never>]>([])

    /// Calls being served.
    var value: Int { ((state.load(ordering: .relaxed) >> 1) + 1) / 2 }

    /// Lets unary calls start (`serve()` runs).
    func open() { state.bitwiseAnd(~1, ordering: .relaxed) }

    /// Stops unary calls from starting (`serve()` is ending).
    func close() { state.bitwiseOr(1, ordering: .relaxed) }

    /// Counts a unary call, unless closed to them.
    func tryAdd() -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & 1 == 0 {
            let (exchanged, original) = state.compareExchange(expected: current, desired: current + 4, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Counts a call (`serve()`'s own).
    func add() { state.add(4, ordering: .relaxed) }

    /// Ends `parts` of a call (2: the whole call).
    func remove(parts: Int = 2) {
        guard state.subtract(2 * parts, ordering: .acquiringAndReleasing).newValue >> 1 == 0 else { return }
        for waiter in waiters.withLockedValue({ w in defer { w = [] }; return w }) { waiter.resume() }
    }

    /// Returns once no call is being served.
    func waitUntilNone() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let none = waiters.withLockedValue { w in
                if state.load(ordering: .acquiring) >> 1 == 0 { return true }
                w.append(continuation)
                return false
            }
            if none { continuation.resume() }
        }
    }
}

/// The first handler of every call's stream. It reads the request headers
/// and serves a unary method itself: it gathers the request message on the
/// event loop, starts the handler there with `Task.immediate` (a handler that
/// does not suspend, such as a permit decision, runs to its end on this
/// thread), and writes headers, message and trailers in one flush. The
/// call's deadline and the stream's end are event-loop events of this
/// handler. So a unary call costs one task, with no async channel and no
/// hop to another thread when its handler does not suspend.
///
/// Every other call (streaming methods, and requests answered with an error
/// before any handler: malformed headers, unknown methods, a refused
/// connection) is wrapped in an async channel and handed, with its headers,
/// to `serve()`.
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

    private let dispatch: CallDispatch
    private var phase = Phase.awaitingHeaders
    private var context: ChannelHandlerContext?
    private var path = ""
    private var handler: RPCRouter.UnaryHandler?
    private var callContext: RPCServerContext?
    private var deframer: GRPCMessageDeframer?
    private var request: [UInt8]?
    private var clientEnded = false
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
                let handler = dispatch.router.unaryHandler(for: head.path), dispatch.connection.refusal == nil,
                dispatch.calls.tryAdd()
            else { return passOn(context, data) }
            begin(context, head: head, handler: handler)
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

    private func begin(_ context: ChannelHandlerContext, head: RequestHead, handler: @escaping RPCRouter.UnaryHandler) {
        phase = .receiving
        started = .now
        path = head.path
        self.handler = handler
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
        guard let request, let handler, let callContext else { return end(.failed(.noRequestMessage)) }
        deframer = nil
        self.request = nil
        self.handler = nil
        self.callContext = nil
        run(handler, request, callContext, on: context.eventLoop)
    }

    /// Requests above this size start their handler on the global executor
    /// rather than on the event loop, so that decoding them holds no
    /// connection's loop.
    static let largestRequestDecodedOnTheEventLoop = 16 * 1024

    private func run(_ handler: @escaping RPCRouter.UnaryHandler, _ request: [UInt8], _ callContext: RPCServerContext, on eventLoop: any EventLoop) {
        phase = .running
        taskStarted = true
        taskRunning = true
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let calls = dispatch.calls
        let body: @Sendable () async -> Void = {
            let outcome: Result<[UInt8], RPCError>
            do {
                outcome = .success(try await handler(request, callContext))
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
        // Unstructured, with reason: the task belongs to the stream, whose
        // life is this handler's. The handler cancels it when the deadline
        // passes or the stream ends first, and `RPCServer.serve()` waits for
        // every call counted in `calls` before it returns, as it does for its
        // own child tasks. Immediate: a handler that does not suspend runs
        // to its end here, on the event loop that read its request.
        let task = request.count > Self.largestRequestDecodedOnTheEventLoop ? Task(operation: body) : Task.immediate(operation: body)
        if taskRunning { self.task = task }
    }

    private func handlerEnded(_ outcome: Result<[UInt8], RPCError>) {
        taskRunning = false
        task = nil
        // Otherwise the deadline or the client ended the call first.
        guard phase == .running else { return }
        switch outcome {
        case .success(let response): end(.finished(response))
        case .failure(let error): end(.failed(error))
        }
    }

    private enum Ending {
        case finished([UInt8])
        case failed(RPCError)
        case peerGone
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
            switch ending {
            case .finished(let response):
                context.write(wrapOutboundOut(ResponseFrames.headers(RPCMetadata())), promise: nil)
                context.write(wrapOutboundOut(ResponseFrames.message(response, allocator: context.channel.allocator)), promise: nil)
                context.write(wrapOutboundOut(ResponseFrames.status(nil, trailers: RPCMetadata(), trailersOnly: false)), promise: nil)
            case .failed(let error):
                let status = configuration.mapError?(error) ?? error
                context.write(wrapOutboundOut(ResponseFrames.status(status, trailers: RPCMetadata(), trailersOnly: true)), promise: nil)
                // The gRPC protocol: a server that ends before the client
                // half-closed resets the stream with NO_ERROR.
                if !clientEnded { context.write(wrapOutboundOut(.rstStream(.noError)), promise: nil) }
            case .peerGone:
                break
            }
            context.flush()
            // The stream ends by itself once its last frames are out (the
            // client's flow-control window allowing). One whose client gives
            // no window is reset after 10 s rather than held.
            if context.channel.isActive {
                let channel = context.channel
                settleTimer = context.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
            }
        }
        deframer = nil
        request = nil
        if taskRunning { task?.cancel() }
        // The answer's part; the task, if there was one, ends its own.
        dispatch.calls.remove(parts: taskStarted ? 1 : 2)
    }
}
