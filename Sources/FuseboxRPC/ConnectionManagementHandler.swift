import FuseboxTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2
import Synchronization

/// What the server tracks about one connection; shared with its streams.
package final class ConnectionState: Sendable {
    private let state = NIOLockedValueBox<(peer: TLSPeerIdentity?, handshaken: Bool)>((nil, false))
    /// Why the connection is served no call (it is beyond the connection limit); nil normally.
    private let refused = NIOLockedValueBox<String?>(nil)
    /// Watches open on the connection.
    private let watches = NIOLockedValueBox(0)

    var peer: TLSPeerIdentity? { state.withLockedValue { $0.peer } }

    /// Connections whose state is still in memory in this process. Back at 0
    /// once every connection has closed and been released: a higher count is
    /// a connection (channel, pipeline, HTTP/2 and TLS state) kept alive.
    static var inMemory: Int { count.load(ordering: .relaxed) }
    private static let count = Atomic<Int>(0)

    /// A connection not yet handshaken.
    package init() {
        Self.count.add(1, ordering: .relaxed)
    }

    deinit {
        Self.count.subtract(1, ordering: .relaxed)
    }

    var refusal: String? {
        get { refused.withLockedValue { $0 } }
        set { refused.withLockedValue { $0 = newValue } }
    }

    /// Counts one more watch, unless `limit` are open: then false.
    func openWatch(limit: Int) -> Bool {
        watches.withLockedValue { count in
            guard count < limit else { return false }
            count += 1
            return true
        }
    }

    func closeWatch() {
        watches.withLockedValue { $0 -= 1 }
    }

    func handshakeCompleted(_ event: TLSHandshakeCompleted) {
        state.withLockedValue {
            $0.peer = event.peer
            $0.handshaken = true
        }
    }
}

/// Asks a connection to finish gracefully (sent as a user outbound event).
struct GracefulShutdownEvent: Sendable {}

/// A stream of the connection opened or closed (from `StreamLifecycle`).
enum StreamLifecycleEvent: Sendable {
    case opened(HTTP2StreamID)
    case closed(HTTP2StreamID)
}

/// The inline multiplexer reports stream lifecycle only to a delegate; this
/// one turns it into events on the connection's pipeline.
struct StreamLifecycle: NIOHTTP2StreamDelegate {
    func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
        channel.parent?.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.opened(id))
    }

    func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
        channel.parent?.pipeline.fireUserInboundEventTriggered(StreamLifecycleEvent.closed(id))
    }
}

/// Manages one server connection at the HTTP/2 frame level, after the
/// `NIOHTTP2Handler`: idle timeout, keepalive PINGs, PING-abuse protection
/// (`PingStrikes`) and graceful shutdown with GOAWAY.
///
/// It sees the connection's own frames (PING, GOAWAY, SETTINGS) in the
/// pipeline. The frames of calls do not pass it: the inline multiplexer hands
/// them to and takes them from `NIOHTTP2Handler` directly. So what the server
/// writes on calls reaches it through `frameDelegate`, which
/// `NIOHTTP2Handler` tells about every frame it writes.
final class ConnectionManagementHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let configuration: RPCServerConfiguration
    private let connection: ConnectionState
    private var openStreams = 0
    private var lastStreamID = HTTP2StreamID(0)
    private var goingAway = false
    private var idleTimer: Scheduled<Void>?
    private var keepaliveTimer: Scheduled<Void>?
    private var pingTimeout: Scheduled<Void>?
    /// This handler's place in the pipeline while it is in one. Timers reach
    /// it through a weak reference to the handler: a timer still pending once
    /// the connection is gone must not keep the connection in memory.
    private var context: ChannelHandlerContext?
    /// When something last arrived from the client (any frame of any stream).
    private var lastRead = NIODeadline.now()
    private var pingStrikes: PingStrikes
    private static let keepalivePayload: UInt64 = 0x6675_7365_626f_78  // "fusebox"

    init(configuration: RPCServerConfiguration, connection: ConnectionState) {
        self.configuration = configuration
        self.connection = connection
        self.pingStrikes = PingStrikes(
            minimumInterval: TimeAmount(configuration.minimumPingIntervalWithoutCalls),
            maximumStrikes: configuration.maximumPingStrikes)
    }

    /// To pass to `NIOHTTP2Handler` of the same connection (it holds it on
    /// the same event loop).
    var frameDelegate: some NIOHTTP2FrameDelegate { FrameObserver(handler: self) }

    private struct FrameObserver: NIOHTTP2FrameDelegate {
        let handler: ConnectionManagementHandler

        func wroteFrame(_ frame: HTTP2Frame) {
            switch frame.payload {
            case .headers, .data: handler.pingStrikes.headersOrDataSent()
            default: break
            }
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        armIdle(context: context)
        armKeepalive(context: context, at: .now() + TimeAmount(configuration.keepaliveInterval))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        for timer in [idleTimer, keepaliveTimer, pingTimeout] { timer?.cancel() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case StreamLifecycleEvent.opened(let id):
            openStreams += 1
            lastStreamID = max(lastStreamID, id)
            idleTimer?.cancel()
        case StreamLifecycleEvent.closed:
            openStreams = max(0, openStreams - 1)
            if openStreams == 0 {
                if goingAway {
                    context.flush()  // the last stream's trailers
                    context.close(promise: nil)
                } else {
                    armIdle(context: context)
                }
            }
        case let handshake as TLSHandshakeCompleted:
            connection.handshakeCompleted(handshake)
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is GracefulShutdownEvent else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        goAway(context: context, code: .noError, reason: nil)
        if openStreams == 0 { context.close(promise: nil) }
        promise?.succeed()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastRead = .now()
        if case .ping(let payload, let ack) = frame.payload {
            if ack, payload == HTTP2PingData(withInteger: Self.keepalivePayload) {
                pingTimeout?.cancel()
                pingTimeout = nil
            } else if !ack {
                checkPingAbuse(context: context)
            }
        }
        context.fireChannelRead(data)
    }

    private func checkPingAbuse(context: ChannelHandlerContext) {
        switch pingStrikes.pingReceived(at: .now(), callsOpen: openStreams > 0) {
        case .allowed, .strike:
            break
        case .tooManyPings:
            goAway(context: context, code: .enhanceYourCalm, reason: "too_many_pings")
            context.close(promise: nil)
        }
    }

    private func goAway(context: ChannelHandlerContext, code: HTTP2ErrorCode, reason: String?) {
        guard !goingAway else { return }
        goingAway = true
        let data = reason.map { context.channel.allocator.buffer(string: $0) }
        let frame = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: code, opaqueData: data))
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    private func armIdle(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(configuration.idleTimeout)) { [weak self] in
            guard let self, let context = self.context, self.openStreams == 0 else { return }
            self.goAway(context: context, code: .noError, reason: "idle")
            context.close(promise: nil)
        }
    }

    /// Frames of calls do not pass this handler, but every read ends with
    /// `channelReadComplete`: the time of the last one says whether the
    /// connection has been silent.
    func channelReadComplete(context: ChannelHandlerContext) {
        lastRead = .now()
        context.fireChannelReadComplete()
    }

    /// Checks at `deadline` whether the connection has been silent for the
    /// keepalive interval; if so, PINGs it (one PING outstanding at a time),
    /// and closes it unless the ACK comes within the keepalive timeout. Reads
    /// only move `lastRead`; the timer is rescheduled when it fires.
    private func armKeepalive(context: ChannelHandlerContext, at deadline: NIODeadline) {
        keepaliveTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self, let context = self.context else { return }
            let interval = TimeAmount(configuration.keepaliveInterval)
            let due = lastRead + interval
            guard due <= .now() else {
                armKeepalive(context: context, at: due)
                return
            }
            if pingTimeout == nil {
                let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: Self.keepalivePayload), ack: false))
                context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
                pingTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(configuration.keepaliveTimeout)) {
                    [weak self] in
                    self?.context?.close(promise: nil)
                }
            }
            armKeepalive(context: context, at: .now() + interval)
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
