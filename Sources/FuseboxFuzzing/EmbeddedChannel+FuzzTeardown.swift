import NIOCore
import NIOEmbedded

extension EmbeddedChannel {
    /// Ends a fuzzed connection as time would: the handlers' timers fire
    /// (handshake timeout, idle timeout, keepalive), then the channel closes.
    /// An `EmbeddedChannel` that is never closed keeps itself alive through its
    /// pipeline, which LeakSanitizer would report against the input.
    func fuzzTeardown() {
        embeddedEventLoop.advanceTime(by: .minutes(10))
        while (try? readOutbound(as: ByteBuffer.self)) != nil {}
        _ = try? close().wait()
        embeddedEventLoop.run()
        _ = try? finish(acceptAlreadyClosed: true)
    }
}
