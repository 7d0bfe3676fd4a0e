import NIOCore
import NIOHTTP2

/// Notes a GOAWAY from the server in the connection's `ConnectionFailure`, after
/// the `NIOHTTP2Handler` (which passes the connection's own frames on): the
/// server is shutting down or draining the connection, so calls already open
/// may finish on it, but new calls should go to a new connection, or, with
/// several endpoints, to the next endpoint (`RPCFailoverClient`).
final class GoAwayWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame

    private let failure: ConnectionFailure

    init(failure: ConnectionFailure) {
        self.failure = failure
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway(_, let code, _) = unwrapInboundIn(data).payload { failure.recordGoAway(code) }
        context.fireChannelRead(data)
    }
}
