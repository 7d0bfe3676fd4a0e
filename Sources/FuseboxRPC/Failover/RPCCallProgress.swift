import NIOConcurrencyHelpers

/// How far one call attempt got, as `RPCClient` saw it: whether it opened a
/// stream (so the request may have reached the server) and whether the
/// server turned it away unprocessed. `RPCFailoverClient` retries an attempt
/// on another endpoint only when `reachedNoServer` is true.
final class RPCCallProgress: Sendable {
    private struct Marks {
        var opened = false
        var refused = false
    }

    private let marks = NIOLockedValueBox(Marks())

    /// A stream was opened on a connection: from here on, the request may reach the server.
    func streamOpened() { marks.withLockedValue { $0.opened = true } }

    /// No server processed the stream: its request headers could not be
    /// written (the stream was opened after a GOAWAY, the connection was
    /// closing), or the server turned it away (RST_STREAM REFUSED_STREAM, a
    /// GOAWAY below the stream's id, a trailers-only UNAVAILABLE before any response).
    func refused() { marks.withLockedValue { $0.refused = true } }

    /// True when no server processed the call: no stream was ever opened (the
    /// connection or the TLS handshake failed, the connection was going away),
    /// or the server refused it.
    var reachedNoServer: Bool { marks.withLockedValue { !$0.opened || $0.refused } }
}
