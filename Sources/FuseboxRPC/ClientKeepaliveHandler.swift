import NIOCore
import NIOHTTP2

/// Client keepalive on one connection, after the `NIOHTTP2Handler`: PINGs a
/// connection that has gone silent while calls are open, and closes it when
/// the PING goes unanswered (see `StateMachine`), so its calls fail with
/// UNAVAILABLE instead of waiting for a peer that is gone (a stopped process,
/// a dropped route: TCP alone may not notice for many minutes).
///
/// Anything read counts as an answer: `channelReadComplete` follows every
/// read from the socket, whatever stream its frames belong to (the frames of
/// calls do not pass this handler; the inline multiplexer takes them).
/// Time is the event loop's (`EventLoop.now`), so tests can move it.
final class ClientKeepaliveHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private var machine: StateMachine
    private let onDead: (String) -> Void
    private var timer: Scheduled<Void>?
    private static let payload = HTTP2PingData(withInteger: 0x6b65_6570_616c_6976)  // "keepaliv"

    /// `onDead` is told the reason before the connection is closed.
    init(interval: Duration, timeout: Duration, onDead: @escaping (String) -> Void) {
        // Zero or negative settings would PING without pause: at least 1 ms.
        let floor = TimeAmount.milliseconds(1)
        self.machine = StateMachine(
            interval: max(TimeAmount(interval), floor), timeout: max(TimeAmount(timeout), floor))
        self.onDead = onDead
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case StreamLifecycleEvent.opened:
            perform(machine.callOpened(at: context.eventLoop.now), context: context)
        case StreamLifecycleEvent.closed:
            machine.callClosed()
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        machine.received(at: context.eventLoop.now)
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        machine.received(at: context.eventLoop.now)
        context.fireChannelReadComplete()
    }

    private func perform(_ action: StateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .scheduleCheck(let deadline):
            schedule(at: deadline, context: context)
        case .sendPing(let answerBy):
            let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(Self.payload, ack: false))
            context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
            schedule(at: answerBy, context: context)
        case .closeConnection:
            onDead("no answer to keepalive PING within \(machine.timeout.prettyDescription)")
            context.close(promise: nil)
        }
    }

    private func schedule(at deadline: NIODeadline, context: ChannelHandlerContext) {
        timer?.cancel()
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            perform(machine.checkDue(at: context.eventLoop.now), context: context)
        }
    }
}

extension TimeAmount {
    /// "1.5 s", "200 ms": for messages.
    var prettyDescription: String {
        let ms = nanoseconds / 1_000_000
        if ms < 1_000 { return "\(ms) ms" }
        return ms % 1_000 == 0 ? "\(ms / 1_000) s" : "\(Double(ms) / 1_000) s"
    }
}
