import FuseboxTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2

/// What the server tracks about one connection; shared with its streams.
final class ConnectionState: Sendable {
    private let state = NIOLockedValueBox<(peer: TLSPeerIdentity?, handshaken: Bool)>((nil, false))

    var peer: TLSPeerIdentity? { state.withLockedValue { $0.peer } }

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
/// and graceful shutdown with GOAWAY.
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
    private var lastPingReceived: NIODeadline?
    private var pingStrikes = 0
    private static let keepalivePayload: UInt64 = 0x6675_7365_626f_78  // "fusebox"

    init(configuration: RPCServerConfiguration, connection: ConnectionState) {
        self.configuration = configuration
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armIdle(context: context)
        armKeepalive(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
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
        armKeepalive(context: context)
        if case .ping(let payload, let ack) = frame.payload {
            if ack, payload == HTTP2PingData(withInteger: Self.keepalivePayload) {
                pingTimeout?.cancel()
            } else if !ack {
                checkPingAbuse(context: context)
            }
        }
        context.fireChannelRead(data)
    }

    private func checkPingAbuse(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        defer { lastPingReceived = now }
        guard openStreams == 0, let last = lastPingReceived else { return }
        let minimum = TimeAmount(configuration.minimumPingIntervalWithoutCalls)
        guard now - last < minimum else { return }
        pingStrikes += 1
        if pingStrikes > configuration.maximumPingStrikes {
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
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(configuration.idleTimeout)) { [self] in
            guard openStreams == 0 else { return }
            goAway(context: context, code: .noError, reason: "idle")
            context.close(promise: nil)
        }
    }

    private func armKeepalive(context: ChannelHandlerContext) {
        keepaliveTimer?.cancel()
        keepaliveTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(configuration.keepaliveInterval)) { [self] in
            let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: Self.keepalivePayload), ack: false))
            context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
            pingTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(configuration.keepaliveTimeout)) {
                context.close(promise: nil)
            }
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
