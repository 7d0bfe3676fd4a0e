import NIOCore

extension ConnectionManagementHandler {
    /// Server keepalive enforcement, as grpc-core does it (grpc/grpc
    /// doc/keepalive.md): a PING that comes sooner than `minimumInterval`
    /// after the previous one while no call is open is a strike, and more
    /// than `maximumStrikes` strikes end the connection with GOAWAY
    /// ENHANCE_YOUR_CALM "too_many_pings".
    ///
    /// Sending HEADERS or DATA to the client clears the strikes and forgets
    /// the previous PING, so a PING that follows data the server sent is never
    /// a strike. That is what keeps ordinary clients in good standing: grpcio
    /// and grpc-java probe the bandwidth-delay product with a PING after
    /// response data, and do so on every unary call.
    ///
    /// Pure: the caller passes the time.
    struct PingStrikes {
        /// What to do about a PING the client sent.
        enum Verdict: Equatable {
            /// Within the rules.
            case allowed
            /// Too soon; the connection may go on.
            case strike
            /// Too soon once too often: GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
            case tooManyPings
        }

        let minimumInterval: TimeAmount
        let maximumStrikes: Int
        /// Strikes collected since the server last sent HEADERS or DATA.
        private(set) var strikes = 0
        private var lastPing: NIODeadline?

        init(minimumInterval: TimeAmount, maximumStrikes: Int) {
            self.minimumInterval = minimumInterval
            self.maximumStrikes = maximumStrikes
        }

        /// The client sent a PING (not an ACK) at `now`; `callsOpen` says
        /// whether any call is open on the connection.
        mutating func pingReceived(at now: NIODeadline, callsOpen: Bool) -> Verdict {
            defer { lastPing = now }
            guard !callsOpen, let last = lastPing, now - last < minimumInterval else { return .allowed }
            strikes += 1
            return strikes > maximumStrikes ? .tooManyPings : .strike
        }

        /// The server wrote HEADERS or DATA of a call.
        mutating func headersOrDataSent() {
            strikes = 0
            lastPing = nil
        }
    }
}
