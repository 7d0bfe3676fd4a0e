extension TLSHandler {
    /// The protocol logic of one TLS connection, without I/O: the handler
    /// reports events and performs the actions returned.
    struct StateMachine {
        enum State: Equatable {
            case idle
            case handshaking
            case active
            case closing
            case closed
        }

        enum StartAction: Equatable {
            /// Begin the handshake and arm the timeout.
            case startHandshake(timeoutMilliseconds: Int64)
            case none
        }

        enum FirstBytesAction: Equatable {
            case proceed
            case reject(TLSError)
        }

        enum HandshakeAction: Equatable {
            /// Deliver buffered application data and pending writes.
            case becomeActive
            case failAndClose(TLSError)
        }

        enum CloseAction: Equatable {
            /// Send close_notify, then close.
            case sendCloseNotifyThenClose
            /// Close at once (nothing was established, or already closing).
            case closeNow
            case alreadyClosed
        }

        enum PeerCloseAction: Equatable {
            /// Answer with our close_notify and close.
            case replyAndClose
            case closeNow
        }

        let role: TLSConfiguration.Role
        let handshakeTimeoutMilliseconds: Int64
        private(set) var state: State = .idle
        private var sawInput = false

        init(role: TLSConfiguration.Role, handshakeTimeoutMilliseconds: Int64) {
            self.role = role
            self.handshakeTimeoutMilliseconds = handshakeTimeoutMilliseconds
        }

        mutating func channelActive() -> StartAction {
            guard state == .idle else { return .none }
            state = .handshaking
            return .startHandshake(timeoutMilliseconds: handshakeTimeoutMilliseconds)
        }

        /// A server looks at the very first byte: a TLS connection starts with a
        /// handshake record (0x16). Printable ASCII means a plaintext client
        /// (HTTP/1 methods, the HTTP/2 preface "PRI"); anything else is garbage.
        mutating func firstBytes(_ first: UInt8?) -> FirstBytesAction {
            guard role == .server, !sawInput, let first else { return .proceed }
            sawInput = true
            if first == 0x16 { return .proceed }
            state = .closed
            if (0x41...0x5A).contains(first) || (0x61...0x7A).contains(first) {
                return .reject(TLSError(
                    .plaintextOnTLSPort,
                    "a plaintext client connected to the TLS port (it began with \"\(Character(Unicode.Scalar(first)))\"); connect with TLS"))
            }
            return .reject(TLSError(
                .malformedInput, "the client's first byte 0x\(String(first, radix: 16)) does not start a TLS handshake record"))
        }

        /// The handshake finished; `negotiated` is the ALPN result.
        mutating func handshakeCompleted(negotiated: String?, required: String?) -> HandshakeAction {
            guard state == .handshaking else { return .failAndClose(TLSError(.handshakeFailed, "handshake completed twice")) }
            if let required, negotiated != required {
                state = .closed
                return .failAndClose(TLSError(
                    .alpnMismatch,
                    "the server did not agree to ALPN \"\(required)\" (it chose \(negotiated.map { "\"\($0)\"" } ?? "none")); is it a gRPC server?"))
            }
            state = .active
            return .becomeActive
        }

        /// A handshake or read failed.
        mutating func failed() {
            state = .closed
        }

        mutating func handshakeTimedOut() -> TLSError? {
            guard state == .handshaking else { return nil }
            state = .closed
            return TLSError(.handshakeTimeout, "the handshake did not finish within \(handshakeTimeoutMilliseconds) ms")
        }

        mutating func closeRequested() -> CloseAction {
            switch state {
            case .active:
                state = .closing
                return .sendCloseNotifyThenClose
            case .idle, .handshaking:
                state = .closed
                return .closeNow
            case .closing:
                return .closeNow
            case .closed:
                return .alreadyClosed
            }
        }

        mutating func closeNotifyReceived() -> PeerCloseAction {
            let wasActive = state == .active
            state = .closed
            return wasActive ? .replyAndClose : .closeNow
        }

        /// The transport closed. Returns the error to report if that cut the
        /// TLS session short.
        mutating func channelInactive() -> TLSError? {
            defer { state = .closed }
            switch state {
            case .active:
                return TLSError(.uncleanShutdown, "the peer closed the connection without a TLS close_notify; data may be truncated")
            case .handshaking:
                return TLSError(.handshakeFailed, "the peer closed the connection during the handshake")
            case .idle, .closing, .closed:
                return nil
            }
        }

        var isActive: Bool { state == .active }
    }
}
